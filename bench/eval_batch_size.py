"""Evaluation batch size: the demo's 50 questions in batches of 25 (the old demo setting) against one batch of 50.

    python bench/eval_batch_size.py --run-dir runs/demo --model stage1 --batch-sizes 25 50

Loads the run's student with the adapter of ``--model`` once, renders the run's evaluation
questions as the evaluation does, and generates greedily (``eval.max_new_tokens``, stopping at the
answer line as the evaluation does) once per batch size, in the order given, after a short
warm-up. A batch decodes until its longest answer ends, and a trained stand-in loops to the token
cap on a few questions: every batch that holds one runs the full cap. Prints wall and CPU seconds
per batch size, the ratio to the first, and how many answers differ from the first batch size's
(padding changes the order of floating-point sums, so a near-tie could flip a token).
Stand-in models of the demo profile; numbers from one machine, compare ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo")
    parser.add_argument("--model", default="stage1", help="base, stage1 or stage2")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[25, 50])
    args = parser.parse_args(argv)

    from dasd_utils.config import load_run_config
    from dasd_utils.data import load_run_questions
    from dasd_utils.evaluation import HFBackend, chat_prefix_ids, generate_greedy, resolve_eval_model

    cfg = load_run_config(args.run_dir)
    rows = load_run_questions(cfg, "eval")
    backend = HFBackend(cfg)
    spec = resolve_eval_model(cfg, args.model)
    prompts = [backend.prompt_key(row) for row in rows]
    prefix = chat_prefix_ids(backend.tokenizer, cfg.system_prompt)
    first = None
    with backend.activate(spec) as model:
        generate_greedy(model, backend.tokenizer, prompts[:2], 2, 2, progress=False, prefix_ids=prefix)  # warm-up
        for size in args.batch_sizes:
            t0, c0 = time.perf_counter(), time.process_time()
            out = generate_greedy(model, backend.tokenizer, prompts, cfg.eval.max_new_tokens, size, progress=False,
                                  prefix_ids=prefix, stop_at_answer=cfg.eval.stop_at_answer)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            answers = [o["response"] for o in out]
            if first is None:
                first = (wall, cpu, answers)
            differ = sum(a != b for a, b in zip(first[2], answers))
            capped = sum(o["finish_reason"] == "length" for o in out)
            print(f"batch {size:3d}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, ratio to batch {args.batch_sizes[0]}: "
                  f"{first[0] / wall:.2f}x wall, {first[1] / cpu:.2f}x CPU; {capped} answers at the token cap; "
                  f"{differ} of {len(out)} answers differ", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
