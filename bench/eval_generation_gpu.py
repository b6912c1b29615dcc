"""Evaluation-phase greedy decoding at the Qwen3-4B shape: tokens/s per batch size against the memory-bandwidth bound.

Section 3 of issue 28, run by ``bench/gpu_checks.sh``. A Qwen3-4B-shaped model with **random
weights**, bf16, sdpa, built on the GPU; batches of ``--prompt-len`` random prompt tokens decoded
with the evaluation's own loop, :func:`dasd_utils.evaluation.greedy_batch` (argmax with a key/value
cache, the path ``generate_greedy`` runs per batch), for each of ``--batch-sizes`` (1 16 50).

Random weights never emit a stop token on purpose, but they could by chance: the stop set is
passed empty, so every row decodes exactly ``--new-tokens`` tokens, and the script checks it.

Per batch size: the time of prompt processing plus one token (``max_new_tokens=1``, best of 2) and
of the whole decode (``--new-tokens``, best of ``--repeats``); decode tokens/s is
``batch * (N - 1) / (t_N - t_1)``. The bound: each decoding step must read every weight once
(non-embedding weights plus the tied output projection, vocab x hidden; the input embedding is
only gathered) and the key/value cache of every row (2 x layers x KV heads x head_dim x 2 bytes
per cached position), at the device-to-device copy bandwidth measured in the same run (bytes
read + written, ``bench/gpu_ceilings.py``, ``--ceilings``; measured here when absent). The
bound's tokens/s is ``batch * (N - 1)`` over the sum of those step times. The evaluation's
DynamicCache also copies the whole cache at every step (``torch.cat``), which the bound does not
count: the gap shows what that and the per-step launches cost.

``--tiny`` runs the same code on the CPU with a tiny shape::

    python bench/eval_generation_gpu.py --tiny --out /tmp/eval_gen.json
    python bench/eval_generation_gpu.py --ceilings $OUT/env.json --out $OUT/eval_gen.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from das_scoring import QWEN3_4B_SHAPE, TINY_SHAPE  # noqa: E402


def build(shape: dict, device, dtype):
    """Return a random Qwen3 causal LM built directly on ``device`` in ``dtype`` (no CPU copy)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**shape, dtype=dtype, attn_implementation="sdpa")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def bytes_per_step(model, shape: dict, batch: int, cached_positions: int, elem: int) -> tuple[int, int]:
    """Return (weight bytes, KV-cache bytes) one decoding step must read at least."""
    embed = model.get_input_embeddings().weight
    weights = sum(p.numel() for p in model.parameters() if p is not embed) * elem
    weights += shape["vocab_size"] * shape["hidden_size"] * elem  # the (tied) output projection is read in full
    kv = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * shape["head_dim"] * elem
    return weights, kv * batch * cached_positions


def copy_bandwidth(device, cuda: bool) -> float:
    """Return a device-to-device copy's bytes read + written per second (median of 10, 1 GiB; 4 MiB on the CPU)."""
    import statistics

    import torch

    n = 2**30 if cuda else 4 * 2**20
    src = torch.randint(0, 256, (n,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(13):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        dst.copy_(src)
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 2 * n / statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 16 50 (1 4 with --tiny)")
    parser.add_argument("--prompt-len", type=int, default=None,
                        help="prompt tokens per row (default 192, about a course prompt: system prompt, question, "
                             "five choices, chat template; 16 with --tiny)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens decoded per row (default 128; 8 with --tiny)")
    parser.add_argument("--repeats", type=int, default=1, help="timed decodes per batch size (best counts)")
    parser.add_argument("--ceilings", default=None, help="bench/gpu_ceilings.py JSON of this run (copy bandwidth)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from dasd_utils.evaluation import greedy_batch

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA GPU visible (use --tiny to check the script on the CPU)")
    device = torch.device("cuda" if cuda else "cpu")
    shape = TINY_SHAPE if args.tiny else QWEN3_4B_SHAPE
    batch_sizes = args.batch_sizes or ([1, 4] if args.tiny else [1, 16, 50])
    prompt_len = args.prompt_len or (16 if args.tiny else 192)
    new_tokens = args.new_tokens or (8 if args.tiny else 128)
    dtype = torch.bfloat16
    elem = 2

    bandwidth, bw_source = None, None
    if args.ceilings and Path(args.ceilings).is_file():
        bandwidth = json.loads(Path(args.ceilings).read_text())["copy_d2d"]["tb_per_s_read_plus_write"] * 1e12
        bw_source = f"{args.ceilings} (same run)"
    if bandwidth is None:
        bandwidth = copy_bandwidth(device, cuda)
        bw_source = f"measured in this process ({'1 GiB' if cuda else '4 MiB'} copy, median of 10)"

    t0 = time.perf_counter()
    model = build(shape, device, dtype)
    build_s = time.perf_counter() - t0
    report = {
        "mode": "tiny-cpu" if args.tiny else "gpu",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "weights": "random (transformers init, seed 0), bf16, sdpa",
        "path": "dasd_utils.evaluation.greedy_batch (the loop generate_greedy runs per batch), stop set empty, "
                "no shared-prefix cache, transformers DynamicCache",
        "prompt_len": prompt_len, "new_tokens": new_tokens, "build_s": round(build_s, 1),
        "copy_bandwidth_tb_per_s": bandwidth / 1e12, "bandwidth_source": bw_source, "runs": [],
    }

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def write():
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    gen = torch.Generator().manual_seed(0)
    # Warm-up (kernels, allocator, cuBLAS handles): one short decode at the largest batch, not timed.
    warm = torch.randint(0, shape["vocab_size"], (max(batch_sizes), prompt_len), generator=gen).to(device)
    greedy_batch(model, warm, torch.ones_like(warm), 4, [])
    sync()
    for bs in batch_sizes:
        ids = torch.randint(0, shape["vocab_size"], (bs, prompt_len), generator=gen).to(device)
        mask = torch.ones_like(ids)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

        def timed(ids, mask, n):
            sync()
            start = time.perf_counter()
            out = greedy_batch(model, ids, mask, n, [])  # empty stop set: every row decodes n tokens
            sync()
            return time.perf_counter() - start, out

        t1 = min(timed(ids, mask, 1)[0] for _ in range(2))
        runs = [timed(ids, mask, new_tokens) for _ in range(max(1, args.repeats))]
        t_n = min(t for t, _ in runs)
        lengths = {len(row) for _, out in runs for row in out}
        decode_s = t_n - t1
        weights, _ = bytes_per_step(model, shape, bs, 0, elem)
        # Step k (k = 1 .. N-1) reads the cache of prompt_len + k positions per row.
        bound_s = sum((weights + bytes_per_step(model, shape, bs, prompt_len + k, elem)[1]) / bandwidth
                      for k in range(1, new_tokens))
        row = {
            "batch": bs, "prefill_plus_1_token_s": t1, "decode_total_s": t_n, "all_total_s": [t for t, _ in runs],
            "tokens_per_row": sorted(lengths), "every_row_full_length": lengths == {new_tokens},
            "tokens_per_s_overall": bs * new_tokens / t_n,
            "tokens_per_s_decode": bs * (new_tokens - 1) / decode_s if decode_s > 0 else None,
            "ms_per_decode_step": 1e3 * decode_s / (new_tokens - 1),
            "bound_ms_per_step_mean": 1e3 * bound_s / (new_tokens - 1),
            "bound_tokens_per_s": bs * (new_tokens - 1) / bound_s,
            "weight_bytes_per_step": weights,
            "kv_bytes_last_step": bytes_per_step(model, shape, bs, prompt_len + new_tokens - 1, elem)[1],
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        }
        row["share_of_bound"] = (row["tokens_per_s_decode"] / row["bound_tokens_per_s"]
                                 if row["tokens_per_s_decode"] else None)
        report["runs"].append(row)
        write()
        print(f"batch {bs:>3}: {row['tokens_per_s_decode'] or 0:9.1f} decode tokens/s ({row['ms_per_decode_step']:.2f} ms/step), "
              f"bound {row['bound_tokens_per_s']:9.1f} ({row['bound_ms_per_step_mean']:.2f} ms/step) -> "
              f"{100 * (row['share_of_bound'] or 0):.1f}% of it; overall {row['tokens_per_s_overall']:.1f} tokens/s, "
              f"rows full length: {row['every_row_full_length']}", flush=True)
    report["status"] = "done"
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
