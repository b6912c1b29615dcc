"""LoRA SFT at the colab settings under a T4's memory, and fp16 against bf16, through ``dasd_utils.sft.fit``.

Sections 2 and 4 of issue 28, run by ``bench/gpu_checks.sh`` on a lent GPU. Every run goes through
the project's own training path: a Qwen3-4B-shaped model with **random weights** (the Hub is out
of reach there), LoRA from ``dasd_utils.sft.add_lora`` (course defaults: r=16, alpha=32, dropout
0.05, all linear layers), trained by ``dasd_utils.sft.fit`` (TRL's SFTTrainer, gradient
checkpointing, the non-finite-loss guard always on) on random token sequences of exactly the
given length (no padding; the first ``--prompt-fraction`` of each is masked out of the loss).

``--mode cap``  (section 2) the colab settings: per-device batch 2 x accumulation 4, fp16 as on a
    T4 (``--precision``), under a memory cap of ``--cap-gib`` (default 15 GiB, a T4's whole memory;
    ``torch.cuda.set_per_process_memory_fraction``, which caps PyTorch's allocator, not the CUDA
    context a real T4 also holds), for each of ``--seqs`` (512 1024 2048): whether it fits (an
    out-of-memory error is caught and recorded), peak allocated / reserved memory, tokens/s.
    When 2 x 4 runs out of memory, the split the project's own backoff would retry (1 x 8, same
    effective batch) is measured too. ``--four-bit``: the base model is loaded 4-bit (NF4,
    double quantization) through ``dasd_utils.sft.load_base_model`` with ``sft.load_in_4bit``
    (``prepare_model_for_kbit_training`` included), from a random checkpoint saved first; when
    bitsandbytes cannot be imported, that is recorded and nothing else is tried (a failed NF4
    matmul check is recorded and the loading path is tried anyway).
``--mode stability``  (section 4) ``--stability-steps`` optimizer steps at the colab settings
    (2 x 4, seq ``--stability-seq``, lr 2e-4, cosine, warmup 3%) in fp16 then in bf16, no cap:
    the loss and gradient norm of every step, whether a non-finite loss stopped training
    (``NonFiniteLoss``), and the fp16 loss scale at the end. Random weights have none of the
    large activations a trained Qwen3 has, so a clean fp16 run here does not show that fp16 is
    safe with the real weights; it shows that the fp16 path itself runs.

The JSON is rewritten after every run, so a section stopped by its time limit keeps what it
measured. ``--tiny`` checks the script on the CPU (tiny Qwen3 shape, short sequences, fp32 / bf16;
the 4-bit mode then saves and reloads through ``load_base_model`` unquantized and checks that
``load_in_4bit`` is refused without CUDA)::

    python bench/sft_t4.py --mode cap --tiny --out /tmp/sft_cap.json
    python bench/sft_t4.py --mode cap --precision fp16 --out $OUT/sft_cap_fp16.json      # GPU
    python bench/sft_t4.py --mode cap --precision fp16 --four-bit --out $OUT/sft_cap_4bit.json
    python bench/sft_t4.py --mode stability --out $OUT/fp16_bf16_steps.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sft_throughput import (  # noqa: E402 - after the path set-up above
    QWEN3_4B_SHAPE,
    TINY_SHAPE,
    _memory_gb,
    _reset_memory,
    build_model,
    minimal_tokenizer,
    random_dataset,
)

RANDOM_WEIGHTS_NOTE = ("random weights (transformers init, seed 0) and random tokens: memory and speed are those of "
                       "the real model's shape; losses (about ln(vocab)) and fp16 behaviour are NOT those of the "
                       "trained Qwen3-4B")


class Recorder:
    """Trainer callback: wall time at the end of every optimizer step (device synchronised) and every log entry."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer.times.append(time.perf_counter())

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    outer.logs.append({"step": state.global_step, **{k: _num(v) for k, v in logs.items()}})

        self.times: list[float] = []
        self.logs: list[dict] = []
        self.callback = _CB()

    def steady_tokens_per_s(self, tokens_per_step: int) -> float | None:
        """Return tokens/s from the end of the first optimizer step to the end of the last one."""
        if len(self.times) < 2:
            return None
        return tokens_per_step * (len(self.times) - 1) / (self.times[-1] - self.times[0])


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else str(f)  # JSON has no NaN / inf: keep them readable


def _is_oom(exc: BaseException) -> bool:
    import torch
    from accelerate.utils.memory import should_reduce_batch_size

    return isinstance(exc, torch.cuda.OutOfMemoryError) or should_reduce_batch_size(exc)


def run_fit(model, tokenizer, *, label: str, batch: int, accum: int, seq_len: int, steps: int, precision: str,
            use_cpu: bool, vocab: int, prompt_fraction: float, workdir: str, schedule: str = "constant",
            warmup_ratio: float = 0.0, lr: float = 2e-4) -> dict:
    """Return one training run's measurement through ``dasd_utils.sft.fit``; OOM and non-finite losses are results."""
    from dasd_utils.config import FineTuneConfig
    from dasd_utils.sft import NonFiniteLoss, TrainingRun, fit

    dataset = random_dataset(batch * accum * steps, seq_len, vocab, prompt_fraction)
    settings = FineTuneConfig(epochs=1, per_device_batch_size=batch, grad_accum=accum, gradient_checkpointing=True,
                              max_steps=steps, lr_scheduler=schedule, warmup_ratio=warmup_ratio, logging_steps=1,
                              checkpoint_steps=0, oom_backoff=False)
    run = TrainingRun(settings, output_dir=str(Path(workdir) / label), learning_rate=lr, precision=precision,
                      use_cpu=use_cpu, max_length=seq_len)
    recorder = Recorder()
    tokens_per_step = batch * accum * seq_len
    out = {"label": label, "precision": precision, "per_device_batch": batch, "grad_accum": accum, "seq_len": seq_len,
           "tokens_per_step": tokens_per_step, "steps_planned": steps, "lr": lr, "lr_scheduler": schedule}
    _reset_memory()
    start = time.perf_counter()
    result = None
    try:
        result = fit(model, tokenizer, dataset, run, callbacks=[recorder.callback])
    except NonFiniteLoss as exc:
        out.update(status="non-finite loss (NonFiniteLoss raised by the guard)", fits=True, error=str(exc)[:500])
    except Exception as exc:  # noqa: BLE001 - an OOM is a result; anything else is recorded and reported
        if _is_oom(exc):
            out.update(status="OOM", fits=False, error=str(exc).splitlines()[0][:300])
        else:
            out.update(status="error", fits=None, error=f"{type(exc).__name__}: {exc}"[:500],
                       traceback=traceback.format_exc()[-2000:])
    else:
        out.update(status="ok", fits=True, steps=result.global_step,
                   tokens_per_s_steady=_round(recorder.steady_tokens_per_s(tokens_per_step)),
                   tokens_per_s_trl=_round(result.tokens_per_s), num_tokens_trl=result.num_tokens)
        scaler = getattr(getattr(result.trainer, "accelerator", None), "scaler", None)
        if scaler is not None and hasattr(scaler, "get_scale"):
            out["fp16_loss_scale_final"] = float(scaler.get_scale())
    out["wall_s"] = round(time.perf_counter() - start, 1)
    out["losses"] = [e.get("loss") for e in recorder.logs]
    out["grad_norms"] = [e.get("grad_norm") for e in recorder.logs]
    out["non_finite_losses"] = sum(1 for e in recorder.logs if isinstance(e.get("loss"), str)) + (
        1 if str(out.get("status", "")).startswith("non-finite") else 0)
    out.update(_memory_gb())
    del result
    _reset_memory()
    return out


def _round(x):
    return None if x is None else round(float(x), 1)


def _write(report: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _set_cap(cap_gib: float) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"cap_gib": cap_gib, "applied": False, "why": "no CUDA device (--tiny)"}
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, cap_gib * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return {"cap_gib": cap_gib, "applied": True, "fraction": round(fraction, 5), "device_total_gib": round(total / 2**30, 2),
            "how": "torch.cuda.set_per_process_memory_fraction (caps PyTorch's allocator; a real T4 also loses "
                   "a few hundred MiB to the CUDA context)"}


def _bitsandbytes_check() -> tuple[bool, str]:
    """Return (importable, what a 4-bit NF4 matmul on this GPU gave) for bitsandbytes."""
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # noqa: BLE001
        return False, f"bitsandbytes not available: {type(exc).__name__}: {str(exc)[:300]}"
    try:
        import torch

        w = torch.randn(512, 256, device="cuda", dtype=torch.float16)
        q, state = bnb.functional.quantize_4bit(w, quant_type="nf4")
        x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
        y = bnb.matmul_4bit(x, q, quant_state=state)  # as bnb.nn.Linear4bit calls it: x @ w.T
        ref = x @ w.t()
        rel = float((y.float() - ref.float()).norm() / ref.float().norm())
        return True, f"bitsandbytes {bnb.__version__}: NF4 matmul relative error {rel:.3f} (about 0.09 expected)"
    except Exception as exc:  # noqa: BLE001 - recorded; the real loading path is still tried
        return True, f"bitsandbytes {bnb.__version__} imports, but the NF4 matmul check failed: {type(exc).__name__}: {str(exc)[:300]}"


def _scratch_dir(min_free_gib: float) -> str:
    """Return a scratch folder with room for the saved checkpoint: /dev/shm (RAM) when it has it, else the temp dir."""
    for base in ("/dev/shm", tempfile.gettempdir()):
        try:
            if shutil.disk_usage(base).free / 2**30 > min_free_gib:
                return tempfile.mkdtemp(prefix="qwen3-random-", dir=base)
        except OSError:
            continue
    return tempfile.mkdtemp(prefix="qwen3-random-")


def mode_cap(args, report: dict) -> None:
    import torch

    from dasd_utils.config import Config
    from dasd_utils.sft import SFTSetupError, add_lora, load_base_model

    tiny = args.tiny
    device = "cpu" if tiny else "cuda"
    precision = args.precision or ("fp32" if tiny else "fp16")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    shape = dict(TINY_SHAPE if tiny else QWEN3_4B_SHAPE)
    seqs = args.seqs or ([64, 128] if tiny else [512, 1024, 2048])
    report.update(section="sft_cap", precision=precision, four_bit=args.four_bit, seqs=seqs,
                  settings="LoRA r=16 alpha=32 all-linear (dasd_utils.sft.add_lora, course defaults), gradient "
                           "checkpointing, per-device batch 2 x accumulation 4, lr 2e-4 constant, "
                           f"{args.steps} optimizer steps per length; tokens/s from the end of step 1 to the last",
                  cap=_set_cap(args.cap_gib))
    cfg = Config()  # course defaults: r=16, alpha=32, all-linear, gradient checkpointing
    t0 = time.perf_counter()
    if args.four_bit:
        cfg.sft.load_in_4bit = True
        if tiny:
            try:  # the project refuses 4-bit without CUDA before loading anything
                load_base_model(cfg, precision, "cpu")
                report["qlora_refused_on_cpu"] = False
            except SFTSetupError as exc:
                report["qlora_refused_on_cpu"] = str(exc)[:200]
            cfg.sft.load_in_4bit = False  # the CPU cannot quantize: check the save / load path unquantized
        else:
            importable, what = _bitsandbytes_check()
            report["bitsandbytes"] = what
            print(what, flush=True)
            if not importable:
                report["status"] = what
                _write(report, args.out)
                return
        folder = _scratch_dir(min_free_gib=0.1 if tiny else 12)
        try:
            model = build_model(shape, device, dtype)
            model.save_pretrained(folder)
            del model
            _reset_memory()
            report["checkpoint_saved_s"] = round(time.perf_counter() - t0, 1)
            cfg.student.model = folder
            t1 = time.perf_counter()
            model = load_base_model(cfg, precision, device)
            report["load_base_model_s"] = round(time.perf_counter() - t1, 1)
            report["load_path"] = ("dasd_utils.sft.load_base_model, sft.load_in_4bit=true (NF4, double quantization, "
                                   f"compute dtype {precision}, prepare_model_for_kbit_training)" if cfg.sft.load_in_4bit
                                   else "dasd_utils.sft.load_base_model, unquantized (--tiny: the CPU cannot quantize)")
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the weights now live on the device; free the RAM
    else:
        model = build_model(shape, device, dtype)
        report["load_path"] = f"random Qwen3 built on {device} in {precision} (transformers from_config)"
    model = add_lora(model, cfg)
    report["build_s"] = round(time.perf_counter() - t0, 1)
    report["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report["model_memory_gib"] = _memory_gb().get("peak_allocated_gb")
    if torch.cuda.is_available():
        report["allocated_after_build_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    tokenizer = minimal_tokenizer()
    report["runs"] = []
    _write(report, args.out)
    with tempfile.TemporaryDirectory() as workdir:
        queue = list(seqs)
        while queue:
            seq = queue.pop(0)
            label = f"{'4bit' if args.four_bit else precision}_2x4x{seq}"
            result = run_fit(model, tokenizer, label=label, batch=2, accum=4, seq_len=seq, steps=args.steps,
                             precision=precision, use_cpu=tiny, vocab=shape["vocab_size"],
                             prompt_fraction=args.prompt_fraction, workdir=workdir)
            _print_run(result)
            report["runs"].append(result)
            _write(report, args.out)
            if (result["status"] == "error" and not args.four_bit and args.fallback_precision
                    and precision != args.fallback_precision and "fallback" not in report):
                # Training itself broke in this precision (not an OOM): measure the memory in the fallback
                # precision (bf16 stores the same bytes as fp16) rather than nothing.
                report["fallback"] = (f"{precision} training failed with an error (see that run); this length and the "
                                      f"next ones are measured in {args.fallback_precision}, which stores the same bytes")
                print(report["fallback"], flush=True)
                precision = args.fallback_precision
                del model
                _reset_memory()
                dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
                model = add_lora(build_model(shape, device, dtype), cfg)
                queue.insert(0, seq)
                continue
            if result["status"] == "OOM" and args.backoff:
                result = run_fit(model, tokenizer, label=label.replace("2x4", "1x8"), batch=1, accum=8, seq_len=seq,
                                 steps=args.steps, precision=precision, use_cpu=tiny, vocab=shape["vocab_size"],
                                 prompt_fraction=args.prompt_fraction, workdir=workdir)
                result["note"] = "the split dasd_utils.sft.fit's OOM backoff retries (same effective batch 8)"
                _print_run(result)
                report["runs"].append(result)
                _write(report, args.out)
    report["status"] = "done"
    _write(report, args.out)


def mode_stability(args, report: dict) -> None:
    import torch

    from dasd_utils.config import Config
    from dasd_utils.sft import add_lora

    tiny = args.tiny
    device = "cpu" if tiny else "cuda"
    shape = dict(TINY_SHAPE if tiny else QWEN3_4B_SHAPE)
    seq = args.stability_seq or (128 if tiny else 1024)
    precisions = ["fp32", "bf16"] if tiny else ["fp16", "bf16"]
    cfg = Config()
    report.update(section="fp16_vs_bf16", seq_len=seq, precisions=precisions,
                  settings=f"colab settings: 2 x 4, seq {seq}, lr {cfg.sft.lr_stage1} cosine warmup "
                           f"{cfg.sft.warmup_ratio}, LoRA r={cfg.sft.lora_r} all-linear, gradient checkpointing, "
                           f"{args.stability_steps} optimizer steps, non-finite-loss guard on (dasd_utils.sft.fit)",
                  runs=[])
    with tempfile.TemporaryDirectory() as workdir:
        for precision in precisions:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
            model = add_lora(build_model(shape, device, dtype), cfg)
            result = run_fit(model, minimal_tokenizer(), label=f"{precision}_2x4x{seq}", batch=2, accum=4, seq_len=seq,
                             steps=args.stability_steps, precision=precision, use_cpu=tiny, vocab=shape["vocab_size"],
                             prompt_fraction=args.prompt_fraction, workdir=workdir, schedule=cfg.sft.lr_scheduler,
                             warmup_ratio=cfg.sft.warmup_ratio, lr=cfg.sft.lr_stage1)
            _print_run(result)
            report["runs"].append(result)
            _write(report, args.out)
            del model
            _reset_memory()
    report["status"] = "done"
    _write(report, args.out)


def _print_run(r: dict) -> None:
    losses = r.get("losses") or []
    shown = ", ".join(f"{x:.4f}" if isinstance(x, float) else str(x) for x in losses[:12])
    print(f"[{r['label']}] {r['status']}: peak alloc {r.get('peak_allocated_gb')} GiB, reserved "
          f"{r.get('peak_reserved_gb')} GiB, {r.get('tokens_per_s_steady')} tokens/s, wall {r['wall_s']} s; "
          f"losses [{shown}]" + (f"; {r['error'][:160]}" if r.get("error") else ""), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cap", "stability"), required=True)
    parser.add_argument("--tiny", action="store_true", help="tiny Qwen3 shape on the CPU (checks the script)")
    parser.add_argument("--precision", choices=("fp16", "bf16", "fp32"), default=None,
                        help="--mode cap: default fp16 (a T4), fp32 with --tiny")
    parser.add_argument("--four-bit", action="store_true", help="--mode cap: 4-bit base model via sft.load_in_4bit")
    parser.add_argument("--cap-gib", type=float, default=15.0, help="--mode cap: memory cap in GiB")
    parser.add_argument("--seqs", type=int, nargs="+", default=None, help="--mode cap: sequence lengths")
    parser.add_argument("--steps", type=int, default=4, help="--mode cap: optimizer steps per length")
    parser.add_argument("--no-backoff", dest="backoff", action="store_false",
                        help="--mode cap: do not measure 1 x 8 after a 2 x 4 out-of-memory")
    parser.add_argument("--fallback-precision", default="bf16",
                        help="--mode cap: when training errors (not OOM) in --precision, measure in this one instead ('' : no)")
    parser.add_argument("--stability-steps", type=int, default=10)
    parser.add_argument("--stability-seq", type=int, default=None, help="default 1024 (128 with --tiny)")
    parser.add_argument("--prompt-fraction", type=float, default=0.25,
                        help="share of each sequence masked as prompt (the course's prompts are about a quarter)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible (use --tiny to check the script on the CPU)")
    report = {"mode": "tiny-cpu" if args.tiny else "gpu",
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.tiny else "cpu",
              "weights": RANDOM_WEIGHTS_NOTE, "shape": "tiny" if args.tiny else "Qwen3-4B (36 layers, hidden 2560, vocab 151936)"}
    try:
        (mode_cap if args.mode == "cap" else mode_stability)(args, report)
    except Exception as exc:  # noqa: BLE001 - keep what was measured, say what broke
        report["status"] = f"error: {type(exc).__name__}: {str(exc)[:400]}"
        report["traceback"] = traceback.format_exc()[-3000:]
        _write(report, args.out)
        print(report["traceback"], flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
