"""Check that a demo run really trained: every adapter moved, enough steps learned, the format was learned.

    python tools/check_demo.py runs/demo            # make demo runs it at the end; CI after make test

What it reads from the run (nothing is recomputed): each stage's and each analyses variant's
``manifest.json`` (steps at a non-zero learning rate, how far the adapter moved from its parent),
the adapters' files (no two trained adapters byte-identical), and ``eval/metrics.json`` (the
stage-1 student's share of answers in the course's format). Thresholds: at least
``--min-stage1-steps`` (20) learning steps for stage 1 and ``--min-steps`` (5) for stage 2 and every
analyses variant; a stage-1 format rate of at least ``--min-format-rate`` (0.5). Prints one line
per check and exits 1 when one fails. The numbers come from the demo's stand-in models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _adapter_hash(folder: Path) -> str | None:
    weights = folder / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None


def trainings(run: Path) -> list[tuple[str, Path]]:
    """Return ``(name, adapter folder)`` of every training the run made (stages, then analyses variants)."""
    out = [("stage 1", run / "sft" / "stage1"), ("stage 2", run / "sft" / "stage2")]
    for folder in sorted((run / "analyses").glob("*/sft/stage2")):
        if folder.is_dir() and not folder.is_symlink():  # a link is the run's own stage 2, not a training
            out.append((f"analyses variant {folder.parents[1].name}", folder))
    return out


def check(run: Path, min_stage1: int, min_steps: int, min_format: float) -> list[tuple[bool, str]]:
    """Return ``(passed, line)`` for every check of the run."""
    lines: list[tuple[bool, str]] = []
    hashes: dict[str, str] = {}
    for name, folder in trainings(run):
        manifest = _read(folder / "manifest.json")
        if not manifest:
            lines.append((False, f"{name}: no manifest.json in {folder} (not trained?)"))
            continue
        minimum = min_stage1 if name == "stage 1" else min_steps
        learned = manifest.get("learning_steps")
        change = (manifest.get("adapter_change") or {}).get("l2")
        lines.append((learned is not None and learned >= minimum,
                      f"{name}: {learned} of {manifest.get('steps')} optimizer steps at a non-zero learning rate "
                      f"(at least {minimum})"))
        lines.append((bool(change), f"{name}: adapter moved from its parent by {change} (L2 norm of the difference)"))
        digest = _adapter_hash(folder)
        if digest in hashes:
            lines.append((False, f"{name}: adapter byte-identical to {hashes[digest]}'s"))
        elif digest:
            hashes[digest] = name
    metrics = _read(run / "eval" / "metrics.json").get("models") or {}
    stage1 = metrics.get("stage1") or {}
    base = metrics.get("base") or {}
    rate = stage1.get("format_rate")
    lines.append((rate is not None and rate >= min_format,
                  f"stage 1 answers in the course's format: {rate} (at least {min_format}; base: {base.get('format_rate')})"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo")
    parser.add_argument("--min-stage1-steps", type=int, default=20)
    parser.add_argument("--min-steps", type=int, default=5)
    parser.add_argument("--min-format-rate", type=float, default=0.5)
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    if not (run / "config.json").is_file():
        print(f"{run}: not a run directory (no config.json)")
        return 1
    results = check(run, args.min_stage1_steps, args.min_steps, args.min_format_rate)
    for passed, line in results:
        print(("ok   " if passed else "FAIL ") + line)
    failed = sum(1 for passed, _ in results if not passed)
    print(f"{run}: {len(results) - failed}/{len(results)} checks passed (stand-in models of the demo profile)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
