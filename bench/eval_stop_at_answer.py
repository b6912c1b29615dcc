"""Evaluation with and without stopping at the answer line: decoding steps, time, and the answers read.

    python bench/eval_stop_at_answer.py --run-dir runs/demo --model stage1 [--repeats 2]

Loads the run's student (with the adapter of ``--model``: base, stage1 or stage2) once, renders
the run's evaluation questions as the evaluation does, and generates greedily twice per repeat,
in alternating order: the whole answer (up to ``eval.max_new_tokens`` or the end-of-turn token),
and stopped at the line break that completes the "Final Answer" line (``eval.stop_at_answer``).
Prints generated tokens, wall and CPU seconds of each (the fastest repeat), the ratio, and how
many items get a different extracted letter or format verdict (the stop must not change the
answer the format asks for; an item can differ only when the full answer adds a second, different
"Final Answer" after the first, which makes it ambiguous). Stand-in models of the demo profile.
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
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from dasd_utils.config import load_run_config
    from dasd_utils.data import load_run_questions
    from dasd_utils.evaluation import HFBackend, chat_prefix_ids, generate_greedy, resolve_eval_model
    from dasd_utils.prompts import extract_answer, has_final_answer_format

    cfg = load_run_config(args.run_dir)
    rows = load_run_questions(cfg, "eval")
    backend = HFBackend(cfg)
    spec = resolve_eval_model(cfg, args.model)
    prompts = [backend.prompt_key(row) for row in rows]
    prefix = chat_prefix_ids(backend.tokenizer, cfg.system_prompt)
    best: dict[bool, tuple[float, float]] = {}
    outputs: dict[bool, list[dict]] = {}
    with backend.activate(spec) as model:
        generate_greedy(model, backend.tokenizer, prompts[:2], 2, 2, progress=False, prefix_ids=prefix)  # warm-up
        for repeat in range(args.repeats):
            for stop in ((False, True) if repeat % 2 == 0 else (True, False)):
                t0, c0 = time.perf_counter(), time.process_time()
                out = generate_greedy(model, backend.tokenizer, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size,
                                      progress=False, prefix_ids=prefix, stop_at_answer=stop)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                outputs[stop] = out
                if stop not in best or wall < best[stop][0]:
                    best[stop] = (wall, cpu)
    for stop in (False, True):
        tokens = sum(o["n_new_tokens"] for o in outputs[stop])
        print(f"{'stopped at the answer line' if stop else 'whole answers':>27}: {tokens:5d} tokens, "
              f"{best[stop][0]:6.1f} s wall, {best[stop][1]:6.1f} s CPU (fastest of {args.repeats})")
    print(f"ratio whole / stopped: {best[False][0] / best[True][0]:.2f}x wall, {best[False][1] / best[True][1]:.2f}x CPU")
    letters = sum(extract_answer(a["response"]) != extract_answer(b["response"]) for a, b in zip(outputs[False], outputs[True]))
    formats = sum(has_final_answer_format(a["response"]) != has_final_answer_format(b["response"])
                  for a, b in zip(outputs[False], outputs[True]))
    stopped = sum(o["finish_reason"] == "answer" for o in outputs[True])
    print(f"{len(rows)} items ({args.model}, {cfg.profile} profile): {stopped} stopped at their answer line; "
          f"extracted letter differs on {letters}, format verdict on {formats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
