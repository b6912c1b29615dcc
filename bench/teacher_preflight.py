"""The teacher preflight's verdict against misconfigured endpoints, as a user sees it.

Starts the fake OpenAI-compatible server of the tests (real HTTP on 127.0.0.1) in several
configurations and runs stage 1 of the teacher phase against each, on 8 bundled questions:

* ``no_logprobs``: a server that never returns logprobs (some providers, SGLang with a reasoning parser);
* ``401``: a bad API key;
* ``needs_top_logprobs``: llama.cpp's behaviour (no logprobs unless ``top_logprobs >= 1``), with
  ``teacher.top_logprobs=null`` so that the preflight has to find the setting;
* ``harmony``: vLLM serving gpt-oss (analysis + harmony markers + content + ``<|return|>``).

Prints each verdict and how many requests reached the server. Command::

    PYTHONPATH=. python bench/teacher_preflight.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support.fake_openai_server import FakeOpenAIServer, answers_from_rows  # noqa: E402

from dasd_utils import data, teacher  # noqa: E402
from dasd_utils.config import load_config  # noqa: E402
from dasd_utils.teacher.api import TeacherFatalError  # noqa: E402

CASES = [("no_logprobs", {}), ("401", {}), ("needs_top_logprobs", {"teacher.top_logprobs": None}), ("harmony", {})]


def run_case(action: str, overrides: dict, workdir: Path) -> None:
    """Run stage 1 against a fake server answering ``action``; print the outcome."""
    cfg = load_config("colab", run_dir=workdir / action, overrides={
        "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50, "data.n_train": 8,
        "data.n_eval": 4, "quality.check_student_context": False, "teacher.concurrency": 4,
        "teacher.base_url": "http://127.0.0.1:9/v1", **overrides})
    data.run_phase(cfg)
    rows = data.load_run_questions(cfg, "train")
    with FakeOpenAIServer(default=action, answers=answers_from_rows(rows)) as server:
        cfg.teacher.base_url = server.base_url
        print(f"\n### server answering '{action}' ({len(rows)} questions)", flush=True)
        try:
            summary = teacher.generate_stage(cfg, 1)
            outcome = f"ran: {summary['completed']} completed, {summary['with_logprobs']} with logprobs"
        except TeacherFatalError as exc:
            outcome = f"stopped: {type(exc).__name__}"
        print(f"-> {outcome}; requests that reached the server: {server.count()}", flush=True)


def main() -> int:
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    with tempfile.TemporaryDirectory() as tmp:
        for action, overrides in CASES:
            run_case(action, overrides, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
