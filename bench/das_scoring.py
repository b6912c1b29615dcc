"""Student scoring for DAS: batched teacher forcing against the course's per-example loop.

Modes:

(default)  CPU, SmolLM2-135M-Instruct, the same 64 responses for both methods:
           * baseline, the course's loop: for each example, tokenize chat prompt + response as one
             string, one forward pass, a full-vocabulary log-softmax, then decode the response
             tokens one by one to find their character positions;
           * ours, ``dasd_utils.scoring``: prompt and response tokenized separately in one batched
             call (offsets from the fast tokenizer), length-sorted padded batches, log-probabilities
             gathered in chunks.
           Both feed the same sentence spans and token-to-sentence rule, so the per-sentence P_S
           must agree; the script prints the speed ratio (target >= 3x) and the largest P_S gap.
           Responses: the quality-kept records of ``--teacher-records`` when those files hold
           enough of them (default: both stages of runs/h-teacher, the demo's stand-in teacher),
           else sampled from SmolLM2 on validation questions (seeded); the output says which.
``--gpu``  A Qwen3-4B-shaped model with random weights (transformers Qwen3Config: vocab 151936,
           hidden 2560, intermediate 9728, 36 layers, 32 heads, 8 KV heads, head_dim 128, tied
           embeddings), bf16, sdpa, random token ids at batch 32 x 512 (prompt 64 + response 448).
           Reports tokens/s, TFLOP/s (formula below) and peak GPU memory for the batched path
           (targets on an H200: >= 40k tokens/s, < 16 GB), the peak memory of a full-vocabulary
           log-softmax on the same batch as the baseline, and the bf16 gap to a per-example
           reference on two sequences.
``--gpu --tiny``  The same code path with a tiny shape (runs on the CPU when no GPU is visible).
``--ceilings FILE``  with --gpu: the JSON of ``bench/gpu_ceilings.py`` from the same run; the
           TFLOP/s are then also given as a share of the bf16 matmul rate measured there. The
           full-vocabulary baseline is timed too (``--full-iters``), not only its peak memory.

FLOPs of one forward pass, counted as matrix multiplications only: ``2 * N * tokens`` for the
non-embedding weights N, plus ``2 * 2 * layers * heads * head_dim * T^2 * batch`` for attention
(QK^T and AV over the full T x T, as PaLM's MFU counts them), plus ``2 * vocab * hidden`` per
response token for the output projection (only response positions go through it).

Commands::

    python bench/das_scoring.py                         # CPU, SmolLM2, 64 responses
    python bench/das_scoring.py --gpu --tiny            # check the GPU path on the CPU
    python bench/das_scoring.py --gpu --out $OUT/das_gpu.json   # on the GPU machine (no trl needed)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

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
TARGET_TOKENS_PER_S = 40000.0
TARGET_PEAK_GB = 16.0
TARGET_CPU_RATIO = 3.0


# --------------------------------------------------------------------------- CPU comparison
def _questions(n: int, offset: int = 50):
    from dasd_utils.data import load_split

    rows = load_split("bundled", "validation")
    return [dict(r, split="validation", index=offset + i) for i, r in enumerate(rows[offset : offset + n])]


def _responses_from_teacher(paths: list[Path], n: int):
    """Return up to n (row, content) pairs from quality-kept teacher records (one per question and file)."""
    from dasd_utils.data import load_split
    from dasd_utils.jsonl import iter_records

    by_id = {r["id"]: r for r in load_split("bundled", "validation")}
    out = []
    for path in paths:
        if not path.is_file():
            continue
        seen = set()
        for rec in iter_records(path):
            if not (rec.get("quality") or {}).get("ok") or not rec.get("content"):
                continue
            qid = rec.get("question_id")
            if qid in seen or qid not in by_id:
                continue
            seen.add(qid)
            out.append((by_id[qid], rec["content"]))
            if len(out) == n:
                return out
    return out


def _sample_responses(model, tokenizer, n: int, max_new_tokens: int, seed: int):
    """Return n (row, content) pairs sampled from the model on validation questions 50+ (seeded)."""
    import torch
    from tqdm.auto import tqdm

    from dasd_utils.prompts import build_messages
    from dasd_utils.scoring import chat_prompt

    rows = _questions(n)
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    out = []
    for start in tqdm(range(0, n, 16), desc="sampling responses"):
        batch = rows[start : start + 16]
        prompts = [chat_prompt(tokenizer, build_messages(r)) for r in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**enc, do_sample=True, temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        for row, ids in zip(batch, gen[:, enc["input_ids"].shape[1] :]):
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            out.append((row, text or "Final Answer: A"))
    tokenizer.padding_side = "right"
    return out


def course_loop(model, tokenizer, pairs, sentence_lists):
    """Return per-example sentence P_S the course's way: one forward each, then per-token decoding."""
    import torch

    from dasd_utils.align import assign_tokens, sentence_stats
    from dasd_utils.prompts import build_messages
    from dasd_utils.scoring import chat_prompt

    out = []
    for (row, content), sentences in zip(pairs, sentence_lists):
        prompt = chat_prompt(tokenizer, build_messages(row))
        prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = tokenizer(prompt + content, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        response_ids = ids[0, prompt_len:].tolist()
        token_lp = [float(logprobs[prompt_len - 1 + k, tid]) for k, tid in enumerate(response_ids)]
        # Per-token decoding to find where each token sits in the response text.
        starts, ends, pos = [], [], 0
        for tid in response_ids:
            piece = tokenizer.decode([tid])
            starts.append(pos)
            pos += len(piece)
            ends.append(pos)
        assign = assign_tokens([s.start for s in sentences], [s.end for s in sentences], np.array(starts), np.array(ends))
        _, means = sentence_stats(assign, np.array(token_lp), len(sentences))
        out.append(np.exp(means))
    return out


def batched_path(model, tokenizer, pairs, sentence_lists, batch_size: int):
    """Return per-example sentence P_S through dasd_utils.scoring (batched, offsets, chunked log-softmax)."""
    from dasd_utils.align import assign_tokens, sentence_stats
    from dasd_utils.prompts import build_messages
    from dasd_utils.scoring import batched_token_logprobs, encode_for_scoring, response_token_spans

    examples = encode_for_scoring(tokenizer, [build_messages(r) for r, _ in pairs], [c for _, c in pairs])
    logprobs = batched_token_logprobs(model, examples, batch_size=batch_size, chunk_tokens=1024,
                                      pad_token_id=tokenizer.pad_token_id, progress=False)
    out = []
    for ex, lp, sentences in zip(examples, logprobs, sentence_lists):
        starts, ends = response_token_spans(ex)
        assign = assign_tokens([s.start for s in sentences], [s.end for s in sentences], starts, ends)
        _, means = sentence_stats(assign, lp, len(sentences))
        out.append(np.exp(means))
    return out, sum(ex.length for ex in examples)


def run_cpu(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dasd_utils.models import ensure_pad_token, ensure_smollm2
    from dasd_utils.segment import sentence_spans

    path = ensure_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    pairs = _responses_from_teacher([Path(p) for p in args.teacher_records], args.n)
    source = f"quality-kept teacher records of {', '.join(args.teacher_records)}"
    cache = Path(args.responses_cache) if args.responses_cache else None
    if len(pairs) < args.n and cache is not None and cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if len(saved["pairs"]) >= args.n:
            pairs = [tuple(p) for p in saved["pairs"][: args.n]]
            source = saved["source"] + f" (read back from {cache})"
    if len(pairs) < args.n:
        print(f"{args.teacher_records}: {len(pairs)} usable records (< {args.n}); sampling responses from SmolLM2")
        pairs = _sample_responses(model, tokenizer, args.n, args.max_new_tokens, args.seed)
        source = f"sampled from SmolLM2-135M-Instruct (temperature 0.7, top_p 0.95, <= {args.max_new_tokens} tokens, seed {args.seed})"
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"source": source, "pairs": pairs}, ensure_ascii=False), encoding="utf-8")
    sentence_lists = [sentence_spans(c) for _, c in pairs]
    keep = [i for i, s in enumerate(sentence_lists) if s]
    pairs = [pairs[i] for i in keep]
    sentence_lists = [sentence_lists[i] for i in keep]
    print(f"{len(pairs)} responses ({source}), {sum(map(len, sentence_lists))} sentences; torch threads: {torch.get_num_threads()}")

    # Warm up both paths once on two examples (allocator, kernels), not timed.
    course_loop(model, tokenizer, pairs[:2], sentence_lists[:2])
    batched_path(model, tokenizer, pairs[:2], sentence_lists[:2], args.batch_size)

    timings = {"course_loop_s": [], "batched_s": []}
    course = batched = None
    n_tokens = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        course = course_loop(model, tokenizer, pairs, sentence_lists)
        timings["course_loop_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        batched, n_tokens = batched_path(model, tokenizer, pairs, sentence_lists, args.batch_size)
        timings["batched_s"].append(time.perf_counter() - t0)
    gaps = np.concatenate([np.abs(a - b) for a, b in zip(course, batched)])
    finite = np.isfinite(gaps)
    course_s, batched_s = min(timings["course_loop_s"]), min(timings["batched_s"])
    result = {
        "mode": "cpu",
        "model": "SmolLM2-135M-Instruct (fp32)",
        "responses": len(pairs),
        "responses_source": source,
        "sentences": int(gaps.size),
        "tokens_scored": int(n_tokens),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "course_loop_s": course_s,
        "batched_s": batched_s,
        "all_timings_s": timings,
        "speed_ratio": course_s / batched_s,
        "target_ratio": TARGET_CPU_RATIO,
        "p_s_max_abs_gap": float(gaps[finite].max()) if finite.any() else None,
        "p_s_sentences_within_1e-4": int((gaps[finite] < 1e-4).sum()),
        "p_s_sentences_compared": int(finite.sum()),
        "sentences_without_student_token": {"course": int(sum(np.isnan(c).sum() for c in course)),
                                            "batched": int(sum(np.isnan(b).sum() for b in batched))},
    }
    print(f"course loop: {course_s:.2f} s   batched: {batched_s:.2f} s   ratio: {result['speed_ratio']:.2f}x "
          f"(target >= {TARGET_CPU_RATIO:.0f}x: {'PASS' if result['speed_ratio'] >= TARGET_CPU_RATIO else 'FAIL'})")
    print(f"P_S agreement: max |gap| {result['p_s_max_abs_gap']:.2e} over {result['p_s_sentences_compared']} sentences, "
          f"{result['p_s_sentences_within_1e-4']} within 1e-4")
    return result


# --------------------------------------------------------------------------- GPU throughput
def _flops(shape: dict, batch: int, seq: int, response: int) -> float:
    h, layers = shape["hidden_size"], shape["num_hidden_layers"]
    heads, kv, hd = shape["num_attention_heads"], shape["num_key_value_heads"], shape["head_dim"]
    per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * shape["intermediate_size"]
    non_embedding = layers * per_layer
    tokens = batch * seq
    attention = 2 * 2 * layers * heads * hd * seq * seq * batch
    head = 2 * shape["vocab_size"] * h * batch * response
    return 2 * non_embedding * tokens + attention + head


def run_gpu(args) -> dict:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from dasd_utils.scoring import EncodedExample, batched_token_logprobs, reference_token_logprobs

    shape = TINY_SHAPE if args.tiny else QWEN3_4B_SHAPE
    batch, seq, prompt = (4, 64, 8) if args.tiny else (args.batch, args.seq, args.prompt)
    response = seq - prompt
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        raise SystemExit("--gpu needs a CUDA GPU (use --gpu --tiny to check the code path on the CPU)")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16
    config = Qwen3Config(**shape, dtype=dtype, attn_implementation="sdpa")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with device:
        model = Qwen3ForCausalLM(config)
    torch.set_default_dtype(previous)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Qwen3 shape {'tiny' if args.tiny else '4B'}, {n_params / 1e9:.3f} B parameters, {dtype}, "
          f"sdpa, on {device}; batch {batch} x {seq} (prompt {prompt} + response {response})")
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(batch):
        ids = torch.randint(0, shape["vocab_size"], (seq,), generator=gen).tolist()
        examples.append(EncodedExample(ids[:prompt], ids[prompt:], np.zeros((response, 2), dtype=np.int64)))

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def score():
        return batched_token_logprobs(model, examples, batch_size=batch, chunk_tokens=args.chunk_tokens,
                                      pad_token_id=0, progress=False)

    for _ in range(args.warmup):
        score()
    sync()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        sync()
        t0 = time.perf_counter()
        out = score()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    best = min(times)
    median = float(np.median(times))
    tokens_per_s = batch * seq / best
    flops = _flops(shape, batch, seq, response)
    tflops = flops / best / 1e12
    peak_tflops = None
    if args.ceilings and Path(args.ceilings).is_file():
        peak_tflops = json.loads(Path(args.ceilings).read_text())["matmul_bf16"]["tflops_median"]

    # Baseline memory: the whole batch's logits through a full-vocabulary fp32 log-softmax.
    # Timed too (same batch, --full-iters runs after one warm-up): the same tokens scored the plain way.
    full_peak = None
    full_times: list[float] = []
    if not args.skip_full_baseline:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        ids = torch.tensor([ex.prompt_ids + ex.response_ids for ex in examples], device=device)

        def full_vocab():
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
                lp = torch.log_softmax(logits.float(), dim=-1)
                return torch.gather(lp[:, prompt - 1 : -1], 2, ids[:, prompt:, None])

        try:
            full_vocab()
            sync()
            for _ in range(args.full_iters):
                t0 = time.perf_counter()
                full_vocab()
                sync()
                full_times.append(time.perf_counter() - t0)
            full_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        except torch.cuda.OutOfMemoryError:
            full_peak = float("inf")
        finally:
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()

    # bf16 agreement with the per-example reference on two sequences.
    gaps = [float(np.mean(np.abs(out[i] - reference_token_logprobs(model, examples[i])))) for i in range(2)]
    result = {
        "mode": "gpu-tiny" if args.tiny else "gpu",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "shape": shape,
        "parameters": n_params,
        "dtype": "bf16",
        "batch": batch,
        "seq": seq,
        "prompt": prompt,
        "chunk_tokens": args.chunk_tokens,
        "iters": args.iters,
        "times_s": times,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_median": batch * seq / median,
        "flops_per_pass": flops,
        "tflops_per_s": tflops,
        "tflops_per_s_median": flops / median / 1e12,
        "matmul_peak_tflops_same_run": peak_tflops,
        "share_of_matmul_peak": tflops / peak_tflops if peak_tflops else None,
        "peak_gb": peak,
        "peak_gb_unit": "GiB (torch.cuda.max_memory_allocated / 2**30)",
        "full_vocab_logsoftmax_peak_gb": full_peak,
        "full_vocab_times_s": full_times,
        "full_vocab_tokens_per_s": batch * seq / min(full_times) if full_times else None,
        "weights": "random (transformers init, seed 0)",
        "bf16_mean_abs_logprob_gap_vs_reference": gaps,
        "targets": {"tokens_per_s": TARGET_TOKENS_PER_S, "peak_gb": TARGET_PEAK_GB},
    }
    print(f"batched scoring: {tokens_per_s:,.0f} tokens/s, {tflops:.1f} TFLOP/s, best of {args.iters}: {best * 1e3:.1f} ms"
          + (f", {100 * tflops / peak_tflops:.1f}% of the {peak_tflops:.0f} TFLOP/s bf16 matmul measured in this run"
             if peak_tflops else ""))
    if full_times:
        print(f"full-vocab log-softmax on the same batch: {batch * seq / min(full_times):,.0f} tokens/s "
              f"(best of {len(full_times)}: {min(full_times) * 1e3:.1f} ms)")
    if peak is not None:
        print(f"peak GPU memory: {peak:.2f} GB (chunked) vs {full_peak if full_peak is None else round(full_peak, 2)} GB "
              f"(full-vocab fp32 log-softmax)")
    if not args.tiny:
        ok_speed = tokens_per_s >= TARGET_TOKENS_PER_S
        ok_mem = peak is not None and peak < TARGET_PEAK_GB
        print(f"targets: >= {TARGET_TOKENS_PER_S:,.0f} tokens/s: {'PASS' if ok_speed else 'FAIL'}; "
              f"< {TARGET_PEAK_GB:.0f} GB: {'PASS' if ok_mem else 'FAIL'}")
    print(f"bf16 mean |logprob gap| vs per-example reference: {gaps}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen3-4B-shaped throughput / memory benchmark")
    parser.add_argument("--tiny", action="store_true", help="with --gpu: tiny shape, runs on the CPU")
    parser.add_argument("--n", type=int, default=64, help="CPU mode: number of responses")
    parser.add_argument("--batch-size", type=int, default=8, help="CPU mode: batch size of the batched path")
    parser.add_argument("--repeats", type=int, default=2, help="CPU mode: timed repetitions (best is reported)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="CPU mode: length of sampled responses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-records", nargs="+",
                        default=["runs/h-teacher/teacher/stage1.jsonl", "runs/h-teacher/teacher/stage2.jsonl"],
                        help="CPU mode: teacher record files to take the responses from (first quality-kept "
                             "record per question and file); responses are sampled when they hold fewer than --n")
    parser.add_argument("--responses-cache", default=None,
                        help="CPU mode: JSON file to save sampled responses to / read them back from")
    parser.add_argument("--batch", type=int, default=32, help="GPU mode: sequences per batch")
    parser.add_argument("--seq", type=int, default=512, help="GPU mode: tokens per sequence")
    parser.add_argument("--prompt", type=int, default=64, help="GPU mode: prompt tokens per sequence")
    parser.add_argument("--chunk-tokens", type=int, default=1024, help="GPU mode: rows per log-softmax chunk")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--skip-full-baseline", action="store_true", help="GPU mode: skip the full-vocab memory baseline")
    parser.add_argument("--full-iters", type=int, default=3, help="GPU mode: timed runs of the full-vocab baseline")
    parser.add_argument("--ceilings", default=None, help="GPU mode: bench/gpu_ceilings.py JSON of this run (share of peak)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.tiny and not args.gpu:
        parser.error("--tiny goes with --gpu")
    result = run_gpu(args) if args.gpu else run_cpu(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=lambda x: None if x != x or x in (math.inf,) else x) + "\n")
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
