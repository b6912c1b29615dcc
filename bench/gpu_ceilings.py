"""The machine's versions and its two measured ceilings: the bf16 matrix rate and the device-to-device copy bandwidth.

Section 0 of ``bench/gpu_checks.sh``: the other GPU benchmarks read this file (``--ceilings``) to
express their figures as a share of what this card did in the same run, not of a datasheet.

* versions: Python, torch (and its CUDA), transformers, peft, trl, datasets, accelerate,
  huggingface_hub, pyarrow, bitsandbytes (or why it cannot be imported), the GPU, its driver,
  memory and multiprocessor count; printed first, as one line;
* matrix rate: an ``n x n x n`` bf16 ``torch.matmul`` (n = 8192 on the GPU) on random data (never
  zeros: they run faster), 3 warm-ups, then ``--iters`` products each timed with CUDA events; the
  median is the peak the other benchmarks compare to (2 n^3 FLOP per product);
* copy bandwidth: ``dst.copy_(src)`` of a ``--copy-gib`` GiB buffer of random bytes, timed the same
  way; bytes read plus bytes written over the median time (the bound of a memory-bound kernel).

``--tiny`` runs the same code on the CPU with small sizes (checks the script, not the machine)::

    python bench/gpu_ceilings.py --tiny --out /tmp/env.json
    python bench/gpu_ceilings.py --out $OUT/env.json          # on the GPU machine
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding, reported as such
        return f"not available ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
    return str(getattr(module, "__version__", "?"))


def versions() -> dict:
    """Return the versions of the stack the benchmarks run on (each package imported, so a broken one shows)."""
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    for name in ("transformers", "peft", "accelerate", "trl", "datasets", "huggingface_hub", "pyarrow", "bitsandbytes"):
        out[name] = _version(name)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 2),
                   multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=False)
            out["driver"] = smi.stdout.strip() or smi.stderr.strip()[:100]
        except Exception as exc:  # noqa: BLE001
            out["driver"] = f"nvidia-smi failed: {exc}"
    else:
        out.update(gpu="none (CPU)", driver=None)
    return out


def _time_cuda(fn, iters: int, warmup: int) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return times


def _time_cpu(fn, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def ceilings(n: int, copy_bytes: int, iters: int, cuda: bool) -> dict:
    """Return the median bf16 matmul rate and device copy bandwidth measured here."""
    import torch

    device = "cuda" if cuda else "cpu"
    timer = _time_cuda if cuda else _time_cpu
    g = torch.Generator(device=device).manual_seed(0)

    def matmul_times() -> list[float]:
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
        c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
        times = timer(lambda: torch.matmul(a, b, out=c), iters, 3)
        if not torch.isfinite(c.float().abs().max()):
            raise RuntimeError("matmul produced a non-finite value")
        return times

    def copy_times() -> list[float]:
        src = torch.randint(0, 256, (copy_bytes,), device=device, dtype=torch.uint8, generator=g)
        dst = torch.empty_like(src)
        times = timer(lambda: dst.copy_(src), iters, 3)
        step = max(1, copy_bytes // 4096)
        if not torch.equal(src[::step], dst[::step]):
            raise RuntimeError("copy check failed")
        return times

    mm = matmul_times()
    cp = copy_times()
    if cuda:
        torch.cuda.empty_cache()
    mm_med, cp_med = statistics.median(mm), statistics.median(cp)
    return {
        "matmul_bf16": {"n": n, "iters": iters, "times_s": mm, "median_s": mm_med,
                        "tflops_median": 2 * n**3 / mm_med / 1e12, "tflops_best": 2 * n**3 / min(mm) / 1e12,
                        "data": "random normal (not zeros)"},
        "copy_d2d": {"bytes": copy_bytes, "iters": iters, "times_s": cp, "median_s": cp_med,
                     "tb_per_s_read_plus_write": 2 * copy_bytes / cp_med / 1e12,
                     "counting": "bytes read + bytes written"},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes, runs on the CPU")
    parser.add_argument("--n", type=int, default=None, help="matmul size (default 8192; 256 with --tiny)")
    parser.add_argument("--copy-gib", type=float, default=2.0, help="copy buffer in GiB (4 MiB with --tiny)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA GPU visible (use --tiny to check the script on the CPU)")
    info = versions()
    print("VERSIONS " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    n = args.n or (256 if args.tiny else 8192)
    copy_bytes = 4 * 2**20 if args.tiny else int(args.copy_gib * 2**30)
    result = {"mode": "tiny-cpu" if args.tiny else "gpu", "versions": info, **ceilings(n, copy_bytes, args.iters, cuda)}
    print(f"bf16 matmul {n}^3: median {result['matmul_bf16']['median_s'] * 1e3:.3f} ms = "
          f"{result['matmul_bf16']['tflops_median']:.1f} TFLOP/s (best {result['matmul_bf16']['tflops_best']:.1f}); "
          f"copy {copy_bytes / 2**30:.3g} GiB: {result['copy_d2d']['tb_per_s_read_plus_write']:.3f} TB/s (read+write)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
