"""The whole pipeline, analyses included, with the course's kind of teacher: a fake gpt-oss served like vLLM serves it.

The teacher is the fake gpt-oss of the tests (tests/support/fake_gptoss.py: harmony rendering,
the real o200k_harmony tokenizer, a chat API that ignores ``continue_final_message``, raw
``/v1/completions`` with prompt log-probabilities, logprobs that depend on the whole context),
over real HTTP on 127.0.0.1; the student and every size are the demo profile's (SmolLM2-135M,
CPU). So the analyses take the **harmony route** end to end: provenance's P_T by
``prompt_logprobs`` on raw prompts, mixed-policy continuations of raw prompts left open in the
target's channel. Prints the provenance and mixed-policy counts and the planned tests.

The fake teacher always answers right and its logprobs are hashes, not a language model's: the
numbers check the route and the bookkeeping, they say nothing of gpt-oss or of DASD.

    PYTHONPATH=. python bench/analyses_fake_gptoss.py --run-dir /tmp/fake_gptoss --reasoning-source content
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--reasoning-source", choices=("content", "analysis"), default="content")
    parser.add_argument("--set", action="append", default=[], help="more dotted.key=value overrides")
    args = parser.parse_args(argv)

    from support.fake_gptoss import FakeGptOss
    from support.fake_openai_server import FakeOpenAIServer, answers_from_rows
    from support.real_tokenizers import load_tokenizer, tokenizer_dir

    from dasd_utils import cli
    from dasd_utils.data import bundled_path, read_jsonl

    os.environ.setdefault("OPENAI_API_KEY", "sk-fake-gptoss-bench-not-a-key")
    rows = read_jsonl(bundled_path())
    model = FakeGptOss(load_tokenizer("gptoss"), answers=answers_from_rows(rows))
    with FakeOpenAIServer(default="gptoss", gptoss=model) as server:
        overrides = {
            "teacher.backend": "openai", "teacher.model": "openai/gpt-oss-120b", "teacher.base_url": server.base_url,
            "teacher.tokenizer": str(tokenizer_dir("gptoss")), "teacher.max_tokens": 256, "teacher.concurrency": 4,
            "teacher.reasoning_source": args.reasoning_source, "teacher.stand_in": True,
        }
        sets = [f"{k}={v}" for k, v in overrides.items()] + args.set
        code = cli.main(["all", "--profile", "demo", "--run-dir", args.run_dir, *[x for s in sets for x in ("--set", s)]])
        requests = server.requests
    results = json.loads((Path(args.run_dir) / "analyses" / "results.json").read_text(encoding="utf-8"))
    paths: dict[str, int] = {}
    for r in requests:
        endpoint = "chat/completions" if r["path"].split("?")[0].rstrip("/").endswith("chat/completions") else "completions"
        paths[endpoint] = paths.get(endpoint, 0) + 1
    prov, mp = results["provenance"], results["mixed_policy"]
    print(json.dumps({
        "exit_code": code, "requests": paths,
        "families": results.get("families"),
        "descriptive": [{k: c[k] for k in ("b", "only_a_correct", "only_b_correct", "mcnemar_p")} for c in results["comparisons"]],
        "provenance": {k: prov.get(k) for k in ("available", "reason", "route", "answers", "scored", "unscorable", "sentences",
                                                 "counts", "delta", "delta_without_final", "delta_by_index",
                                                 "delta_by_index_without_final")},
        "mixed_policy": {k: mp.get(k) for k in ("available", "reason", "route", "questions", "diverging", "cut_off",
                                                 "wrong_or_no_answer", "continued", "not_continuing", "new_turn",
                                                 "quality_rejected", "used", "paper_subset", "training_examples")},
        "accuracy": {m["name"]: f"{m['correct']}/{m['n']}" for m in results["models"]},
    }, indent=1, ensure_ascii=False))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
