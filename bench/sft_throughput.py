"""LoRA SFT throughput through the project's own training path (``dasd_utils.sft.fit``).

Three modes:

``--gpu``  A Qwen3-4B-shaped model with random weights (vocab 151936, hidden 2560, intermediate
           9728, 36 layers, 32 heads, 8 KV heads, head_dim 128, tied embeddings), LoRA r=16 on all
           linear layers, gradient checkpointing, bf16, trained by TRL's SFTTrainer exactly as
           ``train_stage`` does. Reports
           (a) the colab profile's settings (per-device batch 2 x accumulation 4, sequence length
               1024; a T4 would run fp16, this runs bf16, same bytes): peak GPU memory (must stay
               under 14 GB for a 16 GB T4) and tokens/s;
           (b) 16 x 1024 tokens per step: tokens/s against the 8.6k tokens/s anchor of the design
               notes (H200, same LoRA settings);
           and, as a baseline measured in the same run, a plain PyTorch loop (PEFT model, AdamW,
           the model's own loss on full logits, same shapes and checkpointing) at 16 x 1024, so the
           ratio ours / plain loop is printed.
``--tiny`` Same as ``--gpu`` with a tiny Qwen3 shape and short sequences, on the CPU: checks the
           script's logic without a GPU.
``--cpu-demo``  The demo profile's real SFT phase (``sft.run_phase``) on SmolLM2-135M-Instruct on the
           CPU, on SFT files built from validation questions with plausible reasoning responses of
           ~150-250 tokens (sizes of the demo's DAS output): steps, losses, tokens/s, wall time.

Every measured number is printed and written as JSON (``--out``). Commands::

    python bench/sft_throughput.py --tiny
    python bench/sft_throughput.py --cpu-demo --n-stage1 45 --n-stage2 25
    python bench/sft_throughput.py --gpu --out $OUT/sft_gpu.json     # needs trl on the GPU machine
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ANCHOR_TOKENS_PER_S = 8600.0  # H200, Qwen3-4B shape, LoRA r=16 all-linear, checkpointing, bf16, 16 x 1024
T4_BUDGET_GB = 14.0

QWEN3_4B_SHAPE = dict(
    vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
    max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
)
TINY_SHAPE = dict(
    vocab_size=8192, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
    max_position_embeddings=2048,
)


# ----------------------------------------------------------------------------- synthetic model
def minimal_tokenizer():
    """Return a tiny fast tokenizer: the random-weight model only needs a pad token id from it."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<|im_end|>": 2}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>")


def build_model(shape: dict, device: str, dtype):
    """Return a Qwen3 causal LM with random weights, built directly on ``device`` in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(**shape, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    return model


def random_dataset(n_sequences: int, seq_len: int, vocab_size: int, prompt_fraction: float, seed: int = 0):
    """Return a tokenized dataset of random sequences; the first ``prompt_fraction`` of each is masked."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (n_sequences, seq_len), generator=g).tolist()
    n_prompt = int(seq_len * prompt_fraction)
    rows = [{"input_ids": seq, "labels": [-100] * n_prompt + seq[n_prompt:]} for seq in ids]
    return Dataset.from_list(rows)


class StepTimer:
    """Trainer callback recording the wall time at the end of every optimizer step (device synchronised)."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                outer._sync()
                outer.times.append(time.perf_counter())

        self.times: list[float] = []
        self.callback = _CB()

    @staticmethod
    def _sync():
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def steady_tokens_per_s(self, tokens_per_step: int) -> float | None:
        """Return tokens/s between the end of the first step and the end of the last one."""
        if len(self.times) < 2:
            return None
        return tokens_per_step * (len(self.times) - 1) / (self.times[-1] - self.times[0])


def _memory_gb() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
    }


def _reset_memory():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure_ours(model, tokenizer, label, batch, accum, seq_len, steps, precision, use_cpu, vocab, prompt_fraction, workdir):
    """Return the measurement of ``steps`` optimizer steps through ``dasd_utils.sft.fit``."""
    from dasd_utils.config import FineTuneConfig
    from dasd_utils.sft import TrainingRun, fit

    dataset = random_dataset(batch * accum * steps, seq_len, vocab, prompt_fraction)
    settings = TrainingRun(
        FineTuneConfig(epochs=1, per_device_batch_size=batch, grad_accum=accum, gradient_checkpointing=True,
                       max_steps=steps, lr_scheduler="constant", warmup_ratio=0.0, logging_steps=1, oom_backoff=False),
        output_dir=str(Path(workdir) / label), learning_rate=2e-4, precision=precision, use_cpu=use_cpu,
        max_length=seq_len,
    )
    timer = StepTimer()
    _reset_memory()
    start = time.perf_counter()
    result = fit(model, tokenizer, dataset, settings, callbacks=[timer.callback])
    elapsed = time.perf_counter() - start
    tokens_per_step = batch * accum * seq_len
    out = {
        "label": label, "path": "dasd_utils.sft.fit (TRL SFTTrainer)", "per_device_batch": batch, "grad_accum": accum,
        "seq_len": seq_len, "steps": result.global_step, "tokens_per_step": tokens_per_step,
        "tokens_per_s_steady": _round(timer.steady_tokens_per_s(tokens_per_step)),
        "tokens_per_s_trl": _round(result.tokens_per_s), "wall_s": round(elapsed, 1),
        "final_loss": train_loss(result), **_memory_gb(),
    }
    del result
    _reset_memory()
    return out


def train_loss(result):
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    return round(losses[-1], 4) if losses else None


def measure_plain_loop(model, batch, seq_len, steps, precision, vocab, prompt_fraction, device):
    """Return tokens/s of a hand-written loop (AdamW, the model's own loss) on the same PEFT model: the baseline."""
    import torch

    dataset = random_dataset(batch * steps, seq_len, vocab, prompt_fraction, seed=1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    _reset_memory()
    times = []
    for step in range(steps):
        rows = dataset[step * batch : (step + 1) * batch]
        input_ids = torch.tensor(rows["input_ids"], device=device)
        labels = torch.tensor(rows["labels"], device=device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        StepTimer._sync()
        times.append(time.perf_counter())
    tokens_per_step = batch * seq_len
    steady = tokens_per_step * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
    del optimizer
    out = {"label": "baseline_plain_loop", "path": "hand-written PyTorch loop, model(labels=...).loss",
           "per_device_batch": batch, "grad_accum": 1, "seq_len": seq_len, "steps": steps,
           "tokens_per_s_steady": _round(steady), **_memory_gb()}
    _reset_memory()
    return out


def _round(x):
    return None if x is None else round(float(x), 1)


def run_synthetic(args) -> dict:
    """Return the GPU (or --tiny CPU) measurements described in the module docstring."""
    import torch

    from dasd_utils.config import Config
    from dasd_utils.sft import add_lora

    tiny = args.tiny
    if not tiny and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU (use --tiny to check the script on the CPU)")
    device = "cpu" if tiny else "cuda"
    precision = "fp32" if tiny else "bf16"
    shape = dict(TINY_SHAPE if tiny else QWEN3_4B_SHAPE)
    seq_len = args.seq_len or (128 if tiny else 1024)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    report = {
        "mode": "tiny-cpu" if tiny else "gpu",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "shape": shape, "precision": precision, "lora": "r=16 alpha=32 all-linear", "gradient_checkpointing": True,
        "prompt_fraction_masked": args.prompt_fraction,
        "versions": _versions(),
    }
    t0 = time.perf_counter()
    model = build_model(shape, device, dtype)
    cfg = Config()  # course defaults: r=16, alpha=32, all-linear
    model = add_lora(model, cfg)
    report["build_s"] = round(time.perf_counter() - t0, 1)
    report["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tokenizer = minimal_tokenizer()
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        runs.append(measure_ours(model, tokenizer, "colab_2x4x%d" % seq_len, 2, 4, seq_len, args.steps_colab,
                                 precision, tiny, shape["vocab_size"], args.prompt_fraction, workdir))
        runs.append(measure_ours(model, tokenizer, "anchor_16x%d" % seq_len, 16, 1, seq_len, args.steps_anchor,
                                 precision, tiny, shape["vocab_size"], args.prompt_fraction, workdir))
        if args.baseline_steps > 1:
            runs.append(measure_plain_loop(model, 16, seq_len, args.baseline_steps, precision, shape["vocab_size"],
                                           args.prompt_fraction, device))
    report["runs"] = runs
    colab, anchor = runs[0], runs[1]
    verdict = {}
    if "peak_allocated_gb" in colab:
        verdict["colab_peak_allocated_gb"] = colab["peak_allocated_gb"]
        verdict["colab_fits_t4_budget_14gb"] = colab["peak_allocated_gb"] < T4_BUDGET_GB
    verdict["colab_tokens_per_s"] = colab["tokens_per_s_steady"]
    verdict["anchor_tokens_per_s"] = anchor["tokens_per_s_steady"]
    if not tiny and anchor["tokens_per_s_steady"]:
        verdict["ratio_vs_anchor_8600"] = round(anchor["tokens_per_s_steady"] / ANCHOR_TOKENS_PER_S, 3)
    if len(runs) > 2 and runs[2]["tokens_per_s_steady"] and anchor["tokens_per_s_steady"]:
        verdict["ratio_vs_plain_loop_same_run"] = round(anchor["tokens_per_s_steady"] / runs[2]["tokens_per_s_steady"], 3)
    report["verdict"] = verdict
    return report


# ----------------------------------------------------------------------------- CPU demo
_REASONS_BAD = [
    "does not fit what the question describes",
    "is possible but much less likely than another option",
    "is unrelated to {concept}",
    "would not usually be where this happens",
    "contradicts a detail of the question",
    "is too general to be the best answer",
]
_REASONS_GOOD = [
    "matches the situation described, so it is the most natural answer",
    "is exactly what people associate with {concept} in everyday life",
    "fits every detail of the question better than the other options",
]
_OPENINGS = [
    "The question asks which option best completes the situation about {concept}.",
    "We need to find the most sensible answer about {concept} using common sense.",
    "Let us look at what the question describes and check each option in turn.",
]


def plausible_response(row: dict, rng: random.Random) -> str:
    """Return a reasoning response in the course format (~150-250 tokens) concluding on the gold answer."""
    concept = row.get("question_concept") or "the situation"
    lines = ["<reasoning>", rng.choice(_OPENINGS).format(concept=concept)]
    lines.append(f"The question says: \"{row['question']}\" The key idea is {concept}.")
    for label, text in zip(row["choices"]["label"], row["choices"]["text"]):
        if label == row["answerKey"]:
            reason = rng.choice(_REASONS_GOOD).format(concept=concept)
        else:
            reason = " and ".join(rng.sample(_REASONS_BAD, rng.choice((1, 2)))).format(concept=concept)
        lines.append(f"- Option {label} ({text}) {reason}.")
    lines.append(
        f"Comparing the options, {row['answerKey']} ({row['choices']['text'][row['choices']['label'].index(row['answerKey'])]}) "
        "is the one a person would pick without hesitation, while the others need an unusual reading of the question."
    )
    lines.append("</reasoning>")
    lines.append(f"Final Answer: {row['answerKey']}")
    return "\n".join(lines)


def write_demo_sft_files(cfg, n_stage1: int, n_stage2: int, seed: int = 0) -> dict:
    """Write ``das/stage{1,2}_sft.jsonl`` for ``cfg`` from validation items 50+; return their sizes."""
    from dasd_utils.data import load_split, write_jsonl
    from dasd_utils.prompts import build_sft_example

    rows = load_split("bundled", "validation")[50 : 50 + max(n_stage1, n_stage2)]
    rng = random.Random(seed)
    sizes = {}
    for stage, n in ((1, n_stage1), (2, n_stage2)):
        records = [
            {"question_id": row["id"], "stage": stage,
             "messages": build_sft_example(row, plausible_response(row, rng), cfg.system_prompt)}
            for row in rows[:n]
        ]
        write_jsonl(cfg.run_dir / "das" / f"stage{stage}_sft.jsonl", records)
        sizes[f"stage{stage}"] = len(records)
    return sizes


def run_cpu_demo(args) -> dict:
    """Return steps, losses, tokens/s and wall time of the demo profile's SFT phase on SmolLM2 (CPU)."""
    from dasd_utils import sft
    from dasd_utils.config import load_config

    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="sft-demo-bench-"))
    overrides = list(args.set or [])
    cfg = load_config("demo", run_dir=run_dir, overrides=overrides)
    sizes = write_demo_sft_files(cfg, args.n_stage1, args.n_stage2)
    start = time.perf_counter()
    summary = sft.run_phase(cfg, force=True)
    wall = time.perf_counter() - start
    per_stage = {}
    for stage in sft.STAGES:
        manifest = sft.read_manifest(cfg, stage)
        per_stage[f"stage{stage}"] = {
            "examples": manifest["dataset"]["n_examples"],
            "mean_len_tokens": manifest["dataset"]["mean_len"],
            "supervised_tokens": manifest["dataset"]["n_supervised_tokens"],
            "steps": manifest["steps"], "first_loss": _round4(manifest["first_loss"]),
            "final_loss": _round4(manifest["final_loss"]), "tokens_per_s": manifest["tokens_per_s"],
            "train_runtime_s": manifest["train_runtime_s"], "wall_time_s": manifest["wall_time_s"],
        }
    return {
        "mode": "cpu-demo", "model": cfg.student.model, "run_dir": str(run_dir), "sft_files": sizes,
        "sft_config": {k: v for k, v in vars(cfg.sft).items()}, "stages": per_stage,
        "phase_wall_s": round(wall, 1), "figure": summary.get("figure"), "versions": _versions(),
        "torch_threads": _threads(),
    }


def _round4(x):
    return None if x is None else round(float(x), 4)


def _threads():
    import torch

    return torch.get_num_threads()


def _versions():
    """Return the versions of the training stack (the packages the SFT manifests record)."""
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gpu", action="store_true", help="Qwen3-4B shape, random weights, on the GPU")
    mode.add_argument("--tiny", action="store_true", help="tiny Qwen3 shape on the CPU (checks the script)")
    mode.add_argument("--cpu-demo", action="store_true", help="the demo profile's SFT phase on SmolLM2 (CPU)")
    parser.add_argument("--seq-len", type=int, default=None, help="sequence length (default 1024; 128 with --tiny)")
    parser.add_argument("--steps-colab", type=int, default=5, help="optimizer steps for the colab-settings run")
    parser.add_argument("--steps-anchor", type=int, default=5, help="optimizer steps for the 16 x seq_len run")
    parser.add_argument("--baseline-steps", type=int, default=5, help="steps of the plain-loop baseline (0: skip)")
    parser.add_argument("--prompt-fraction", type=float, default=0.0,
                        help="share of each sequence masked as prompt (0: loss on every token, like the anchor)")
    parser.add_argument("--n-stage1", type=int, default=45, help="--cpu-demo: stage-1 examples")
    parser.add_argument("--n-stage2", type=int, default=25, help="--cpu-demo: stage-2 examples")
    parser.add_argument("--run-dir", default=None, help="--cpu-demo: run directory (default: a temporary one)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="--cpu-demo: config override")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)

    report = run_cpu_demo(args) if args.cpu_demo else run_synthetic(args)
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
