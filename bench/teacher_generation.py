"""Benchmark: the demo's stand-in teacher with transformers' DynamicCache vs the in-place growing cache.

Usage (CPU, the demo's SmolLM2-135M-Instruct, offline)::

    .venv/bin/python bench/teacher_generation.py --n-questions 24 --rounds 2 --threads 1

It builds the demo profile's teacher requests (few-shot, gold hint, stop strings) for the first
``--n-questions`` training questions of both stages, generates every batch with
:class:`dasd_utils.teacher.local.LocalTeacher` once with ``growing_cache=False`` (the old path:
``DynamicCache``, a ``torch.cat`` of every layer's keys and values at each step) and once with
``growing_cache=True``, alternating which goes first, in the same process. It checks that both
give identical records (content, token ids, token strings, logprobs, finish reasons) and prints
the CPU seconds of each path and their ratio. CPU time (this process, all threads) is the
measure: wall time on a shared machine depends on the other jobs. ``--threads 1`` avoids the
OpenMP spin-waiting that inflates CPU time when more threads than free cores compete.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dasd_utils import data, teacher  # noqa: E402
from dasd_utils.config import load_config  # noqa: E402
from dasd_utils.teacher.local import LocalTeacher  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-questions", type=int, default=24, help="training questions per stage (default 24: one demo batch)")
    p.add_argument("--rounds", type=int, default=2, help="timed repetitions of each path (default 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--run-dir", default="/tmp/dasd_bench_teacher", help="scratch run directory for the data phase")
    return p.parse_args(argv)


def generate(lt: LocalTeacher, stages: list[list], growing: bool) -> tuple[list[dict], float, float]:
    """Return (results in request order, CPU seconds, wall seconds) of one pass over each stage's requests.

    One ``generate`` call per stage, as the teacher phase does (a batch never mixes temperatures).
    """
    lt.growing_cache = growing
    results = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for requests in stages:
        lt.generate(requests, lambda request, result: results.__setitem__(request.request_hash, result))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return [results[r.request_hash] for requests in stages for r in requests], cpu, wall


def comparable(result: dict) -> tuple:
    """Return what must be identical between the two paths (everything but timings)."""
    tokens = tuple((t["id"], t["token"], t["logprob"], tuple(t["bytes"] or ())) for t in result.get("tokens") or [])
    return result.get("content"), tokens, result.get("finish_reason"), result.get("error"), tuple(sorted(result["usage"].items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config("demo", overrides=[f"data.n_train={args.n_questions}"], run_dir=args.run_dir)
    data.run_phase(cfg)
    questions = data.load_run_questions(cfg, "train")
    stages = [teacher.build_requests(cfg, stage, questions)[0] for stage in teacher.STAGES]
    lt = LocalTeacher(cfg, "bench")
    lt.load()
    generate(lt, [stages[0][:1]], True)  # warm-up: stop-string tables, prefix cache, allocator
    print(f"{sum(map(len, stages))} requests (stages 1+2, first sample), batch {cfg.teacher.local_batch_size}, "
          f"max_tokens {cfg.teacher.max_tokens}, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    totals = {False: [0.0, 0.0], True: [0.0, 0.0]}
    reference = None
    for round_ in range(args.rounds):
        for growing in ((False, True) if round_ % 2 == 0 else (True, False)):
            results, cpu, wall = generate(lt, stages, growing)
            totals[growing][0] += cpu
            totals[growing][1] += wall
            keys = [comparable(r) for r in results]
            if reference is None:
                reference = keys
            elif keys != reference:
                diff = next(i for i, (a, b) in enumerate(zip(keys, reference)) if a != b)
                print(f"MISMATCH: request {diff} differs between the paths (growing_cache={growing})")
                return 1
            print(f"round {round_ + 1} {'growing cache' if growing else 'DynamicCache '}: CPU {cpu:7.1f} s, wall {wall:7.1f} s")
    old, new = totals[False], totals[True]
    print(f"identical records on both paths ({len(reference)} requests x {2 * args.rounds} passes)")
    print(f"CPU  DynamicCache {old[0]:.1f} s, growing cache {new[0]:.1f} s: ratio old/new {old[0] / new[0]:.2f}")
    print(f"wall DynamicCache {old[1]:.1f} s, growing cache {new[1]:.1f} s: ratio old/new {old[1] / new[1]:.2f} "
          f"(load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
