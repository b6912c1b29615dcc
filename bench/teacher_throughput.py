"""Teacher generation throughput: this project's generation vs the course's loop, in the same run.

Both talk to the fake OpenAI-compatible server (tests/support/fake_openai_server.py), started in its own
process with a fixed latency per request (200 ms by default), over real HTTP:

* course: one request at a time with the synchronous client, ``time.sleep(0.5)`` between calls
  (the course notebook's rate-limit precaution);
* dasd_utils: ``teacher.generate_stage`` as the pipeline runs it (async client, bounded
  concurrency, retries, fsync'ed records, quality filter with the student tokenizer).

Prints both wall times and the ratio (target: at least 20x)::

    .venv/bin/python bench/teacher_throughput.py                 # 200 requests, 200 ms latency
    .venv/bin/python bench/teacher_throughput.py --requests 40   # quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """Return (process, base URL) of a fake server running in its own process."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_openai_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"fake server did not start (got {url!r})")
    return proc, url


def course_way(url: str, rows: list[dict], model: str, system_prompt: str, max_tokens: int, sleep_s: float) -> tuple[float, int]:
    """Return (seconds, successful responses) for the course's sequential loop with a sleep between calls."""
    import openai

    from dasd_utils.prompts import build_messages

    client = openai.OpenAI(base_url=url, api_key=os.environ["OPENAI_API_KEY"])
    ok = 0
    start = time.perf_counter()
    for i, row in enumerate(rows):
        response = client.chat.completions.create(
            model=model, messages=build_messages(row, system_prompt), temperature=0.3,
            max_tokens=max_tokens, logprobs=True,
        )
        ok += bool(response.choices[0].message.content)
        if i < len(rows) - 1:
            time.sleep(sleep_s)
    return time.perf_counter() - start, ok


def project_way(url: str, rows: list[dict], concurrency: int, run_dir: Path) -> tuple[float, dict]:
    """Return (seconds, stage summary) for dasd_utils' generation of the same requests."""
    from dasd_utils import teacher
    from dasd_utils.config import SMOLLM2_PYPI, load_config

    cfg = load_config("colab", run_dir=run_dir, overrides={
        "teacher.base_url": url, "teacher.concurrency": concurrency, "student.model": SMOLLM2_PYPI})
    start = time.perf_counter()
    summary = teacher.generate_stage(cfg, 1, questions=rows)
    return time.perf_counter() - start, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="fake server seconds per request")
    parser.add_argument("--concurrency", type=int, default=16, help="teacher.concurrency for dasd_utils")
    parser.add_argument("--sleep", type=float, default=0.5, help="the course's pause between calls")
    args = parser.parse_args(argv)

    from dasd_utils.config import COURSE_SYSTEM_PROMPT, GPT_OSS_120B
    from dasd_utils.data import bundled_path, read_jsonl

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    # Imports are paid once per Python session by both ways alike: do them before timing either.
    import openai  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401  (transformers imports lazily)

    from dasd_utils import teacher  # noqa: F401
    from dasd_utils.teacher import api  # noqa: F401
    rows = read_jsonl(bundled_path())[50 : 50 + args.requests]
    if len(rows) < args.requests:
        raise SystemExit(f"only {len(rows)} questions available")
    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="teacher-bench-") as tmp:
            ours_s, summary = project_way(url, rows, args.concurrency, Path(tmp) / "run")
        course_s, course_ok = course_way(url, rows, GPT_OSS_120B, COURSE_SYSTEM_PROMPT, 1024, args.sleep)
    finally:
        proc.kill()
        proc.wait()
    n = len(rows)
    print(f"teacher throughput: {n} requests, fake server latency {args.latency * 1000:.0f} ms per request")
    print(f"  course way (sequential, {args.sleep:g} s sleep between calls): {course_s:8.1f} s  "
          f"{n / course_s:6.2f} req/s  ({course_ok} responses)")
    print(f"  dasd_utils (async, concurrency {args.concurrency}, fsync + quality): {ours_s:8.1f} s  "
          f"{n / ours_s:6.2f} req/s  ({summary['completed']} responses, {summary['failed']} failed; "
          "includes loading the student tokenizer for the quality filter)")
    ratio = course_s / ours_s
    print(f"  ratio: {ratio:.1f}x (target >= 20x) -> {'OK' if ratio >= 20 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
