"""Does the demo's stage 1 teach the course's format? Format rate and accuracy against training settings.

For each setting (learning rate, epochs, batch split), trains the demo's stage 1 from an existing
demo run's SFT file (``das/stage1_sft.jsonl``: the stand-in teacher's quality-kept answers) into
a scratch run directory with the project's own ``sft.train_stage``, then lets the trained student
answer the run's evaluation questions greedily (``evaluation.evaluate_model``) and prints, per
setting: optimizer steps, steps at a non-zero learning rate, training time (wall and CPU), final
loss, the share of answers in the course's format (``Final Answer: X``, strict) and the accuracy.
This is how the demo profile's settings were chosen (issue "the demo must really train")::

    python bench/demo_format_learning.py --source runs/demo \\
        --setting lr=2e-4,epochs=1,batch=2,accum=4 --setting lr=2e-4,epochs=2,batch=2,accum=1 \\
        --setting lr=1e-3,epochs=2,batch=2,accum=1

Every number printed comes from the run it describes; the student and the teacher are the demo's
stand-in SmolLM2-135M-Instruct, not the course's models.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = {"lr": "sft.lr_stage1", "epochs": "sft.epochs", "batch": "sft.per_device_batch_size", "accum": "sft.grad_accum",
        "warmup": "sft.warmup_ratio", "r": "sft.lora_r", "alpha": "sft.lora_alpha", "sched": "sft.lr_scheduler",
        "n_eval": "data.n_eval", "max_new": "eval.max_new_tokens"}


def parse_setting(text: str) -> dict[str, str]:
    """Return ``{dotted config key: value}`` for ``lr=2e-4,epochs=2,...``."""
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in KEYS:
            raise SystemExit(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
        out[KEYS[key.strip()]] = value.strip()
    return out


def run_one(source: Path, overrides: dict[str, str], workdir: Path) -> dict:
    """Return the measurements of training stage 1 with ``overrides`` and evaluating it (fresh scratch run)."""
    from dasd_utils import evaluation, layout, sft
    from dasd_utils.config import load_config
    from dasd_utils.data import load_run_questions

    run_dir = Path(tempfile.mkdtemp(prefix="fmt-", dir=workdir))
    for folder in ("data",):
        shutil.copytree(source / folder, run_dir / folder)
    (run_dir / "das").mkdir()
    shutil.copy(layout.sft_examples(source, 1), layout.sft_examples(run_dir, 1))
    cfg = load_config("demo", run_dir=run_dir, overrides={**overrides, "eval.models": ["stage1"], "eval.loglik": False,
                                                           "sft.allow_short_training": True})
    t0, c0 = time.perf_counter(), time.process_time()
    manifest = sft.train_stage(cfg, 1)
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = load_run_questions(cfg, "eval")
    t0, c0 = time.perf_counter(), time.process_time()
    result = evaluation.evaluate_model(cfg, "stage1", rows=rows)
    eval_wall, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    preds = result["predictions"]
    n = len(preds)
    out = {
        "settings": overrides,
        "examples": manifest["dataset"]["n_examples"],
        "steps": manifest["steps"],
        "learning_steps": manifest.get("learning_steps"),
        "final_loss": manifest.get("final_loss"),
        "adapter_change_relative": (manifest.get("adapter_change") or {}).get("relative"),
        "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
        "eval_wall_s": round(eval_wall, 1), "eval_cpu_s": round(eval_cpu, 1),
        "format_rate": sum(bool(p.get("format_ok")) for p in preds) / n,
        "accuracy": sum(bool(p.get("correct")) for p in preds) / n,
        "mean_new_tokens": sum(p.get("n_new_tokens") or 0 for p in preds) / n,
        "n_eval": n,
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="runs/demo", help="a demo run directory that went through the das phase")
    parser.add_argument("--setting", action="append", required=True, help="e.g. lr=1e-3,epochs=2,batch=2,accum=1")
    parser.add_argument("--out", default=None, help="write the results as JSON lines here")
    args = parser.parse_args(argv)
    source = Path(args.source)
    workdir = Path(tempfile.mkdtemp(prefix="demo-format-"))
    try:
        for text in args.setting:
            result = run_one(source, parse_setting(text), workdir)
            print(f"{text}: {result['examples']} examples, {result['steps']} steps ({result['learning_steps']} at lr > 0), "
                  f"final loss {result['final_loss']:.3f}, train {result['train_wall_s']} s wall / {result['train_cpu_s']} s CPU; "
                  f"format {result['format_rate']:.0%}, accuracy {result['accuracy']:.0%} of {result['n_eval']} "
                  f"(mean {result['mean_new_tokens']:.0f} new tokens, eval {result['eval_wall_s']} s wall / {result['eval_cpu_s']} s CPU)",
                  flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
