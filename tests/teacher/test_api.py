"""Teacher generation through the openai backend against a real local HTTP server (nothing mocked)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.fake_openai_server import FakeOpenAIServer, answers_from_rows
from support.teacher_server import KEY, api_key, cfg, make_cfg, questions, serve  # noqa: F401 (fixtures)

from dasd_utils import data, teacher
from dasd_utils.config import load_config
from dasd_utils.prompts import build_messages
from dasd_utils.secrets import MissingAPIKey, get_api_key, scrub
from dasd_utils.teacher.api import (
    TeacherFatalError,
    normalize_tokens,
    parse_completion,
    parse_retry_after,
)

REPO = Path(__file__).resolve().parents[2]


def by_question(cfg, stage=1):
    return {r["question_id"]: r for r in teacher.load_records(cfg, stage)}


def key_of(row) -> str:
    """A substring of the user message that identifies one question (for the server's plan)."""
    return row["question"]


# --------------------------------------------------------------------------- success
def test_success_with_logprobs_records_and_summary(cfg):
    rows = questions(cfg)
    with serve(cfg, latency_s=0.05) as server:
        summary = teacher.generate_stage(cfg, 1)
    assert server.count() == len(rows)
    assert server.max_in_flight <= cfg.teacher.concurrency
    records = teacher.load_records(cfg, 1)
    assert [r["question_id"] for r in records] == [row["id"] for row in rows]  # question order
    for record, row in zip(records, rows):
        assert record["error"] is None
        assert record["messages"] == build_messages(row, cfg.system_prompt)
        assert record["temperature"] == 0.3 and record["stage"] == 1 and record["model"] == cfg.teacher.model
        assert record["tokens_match_content"] is True
        assert "".join(t["token"] for t in record["tokens"]) == record["content"]
        expected = sum(math.exp(t["logprob"]) for t in record["tokens"]) / len(record["tokens"])
        assert record["mean_token_prob"] == pytest.approx(expected)
        assert 0 < record["mean_token_prob"] < 1
        assert record["quality"] == {"ok": True, "reason": None, "answer": row["answerKey"], "detail": ""}
        assert record["kept"] is True
        assert len(record["request_hash"]) == 64
    # What the server received: logprobs, temperature, max_tokens, seed.
    body = server.requests[0]["body"]
    assert body["logprobs"] is True and body["temperature"] == 0.3
    assert body["max_tokens"] == cfg.teacher.max_tokens and body["seed"] == cfg.teacher.seed
    assert summary["sent"] == len(rows) and summary["kept"] == len(rows) and summary["failed"] == 0
    assert summary["accuracy"] == 1.0 and summary["rejected"] == {}
    assert summary["mean_confidence"] == pytest.approx(sum(r["mean_token_prob"] for r in records) / len(records), abs=1e-4)


def test_wrong_answers_are_rejected_with_reason(cfg):
    rows = questions(cfg)
    server = FakeOpenAIServer(answers={}).start()  # answers by hash: mostly wrong
    cfg.teacher.base_url = server.base_url
    with server:
        summary = teacher.generate_stage(cfg, 1)
    records = teacher.load_records(cfg, 1)
    wrong = [r for r in records if r["quality"]["answer"] != r["gold"]]
    assert wrong, "the fake server should get some answers wrong"
    assert all(r["quality"]["reason"] == "wrong_answer" and not r["kept"] for r in wrong)
    assert summary["rejected"].get("wrong_answer") == len(wrong)
    assert summary["accuracy"] == pytest.approx(1 - len(wrong) / len(rows), abs=1e-4)


# --------------------------------------------------------------------------- retries
def test_429_honours_retry_after(cfg):
    rows = questions(cfg)
    with serve(cfg, plan={key_of(rows[0]): ["429"]}, retry_after="1") as server:
        teacher.generate_stage(cfg, 1)
    record = by_question(cfg)[rows[0]["id"]]
    assert record["error"] is None and record["attempts"] == 2
    assert "429" in record["retry_errors"][0]
    hits = [r for r in server.requests if rows[0]["question"] in r["body"]["messages"][-1]["content"]]
    assert [h["action"] for h in hits] == ["429", "ok"]
    assert hits[1]["start"] - hits[0]["start"] >= 0.95  # waited Retry-After: 1, not the 0.01 s backoff


def test_intermittent_500_is_retried(cfg):
    rows = questions(cfg)
    with serve(cfg, plan={key_of(rows[1]): ["500", "500"]}) as server:
        summary = teacher.generate_stage(cfg, 1)
    record = by_question(cfg)[rows[1]["id"]]
    assert record["error"] is None and record["attempts"] == 3
    assert len(record["retry_errors"]) == 2 and all("500" in e for e in record["retry_errors"])
    assert server.count("500") == 2 and summary["failed"] == 0


def test_timeout_is_retried(cfg):
    rows = questions(cfg)
    cfg.teacher.timeout_s = 0.5
    with serve(cfg, plan={key_of(rows[2]): ["timeout"]}, timeout_sleep_s=1.5):
        teacher.generate_stage(cfg, 1)
    record = by_question(cfg)[rows[2]["id"]]
    assert record["error"] is None and record["attempts"] == 2
    assert "timeout" in record["retry_errors"][0]


def test_connection_drop_is_retried(cfg):
    rows = questions(cfg)
    with serve(cfg, plan={key_of(rows[0]): ["drop"]}):
        teacher.generate_stage(cfg, 1)
    record = by_question(cfg)[rows[0]["id"]]
    assert record["error"] is None and record["attempts"] == 2


def test_malformed_json_retried_then_failed_then_resumed(cfg):
    rows = questions(cfg)
    cfg.teacher.max_retries = 1
    with serve(cfg, plan={key_of(rows[0]): ["malformed"], key_of(rows[1]): ["malformed", "malformed"]}) as server:
        summary = teacher.generate_stage(cfg, 1)
        first = by_question(cfg)
        assert first[rows[0]["id"]]["error"] is None  # one malformed body, then a good one
        failed = first[rows[1]["id"]]
        assert failed["error"] is not None and "malformed" in failed["error"] and failed["attempts"] == 2
        assert failed["quality"]["reason"] == "request_failed" and failed["content"] is None
        assert summary["failed"] == 1 and summary["kept"] == len(rows) - 1
        # Next run: only the failed request is sent again, and it succeeds.
        before = server.count()
        summary2 = teacher.generate_stage(cfg, 1)
        assert server.count() - before == 1
    assert summary2["sent"] == 1 and summary2["failed"] == 0 and summary2["kept"] == len(rows)
    lines = teacher.stage_path(cfg, 1).read_text().splitlines()
    assert len(lines) == len(rows)  # compacted: the failed record was replaced, not duplicated


def test_400_fails_one_request_without_retry(cfg):
    rows = questions(cfg)
    with serve(cfg, plan={key_of(rows[0]): ["400_echo_auth"]}) as server:
        summary = teacher.generate_stage(cfg, 1)
    record = by_question(cfg)[rows[0]["id"]]
    assert record["error"].startswith("HTTP 400") and record["attempts"] == 1
    assert server.count("400_echo_auth") == 1 and summary["failed"] == 1


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_auth_errors_stop_the_run_without_retry_storm(cfg, status):
    cfg.teacher.max_retries = 5
    cfg.teacher.concurrency = 2
    start = time.perf_counter()
    with serve(cfg, default=status, latency_s=0.05) as server:
        with pytest.raises(TeacherFatalError) as info:
            teacher.generate_stage(cfg, 1)
        time.sleep(0.2)  # anything still scheduled would show up now
        sent = server.count()
    assert time.perf_counter() - start < 5
    assert sent <= cfg.teacher.concurrency  # only what was in flight; nothing retried
    message = str(info.value)
    assert status in message and KEY not in message
    if status == "401":
        assert "OPENAI_API_KEY" in message
    if status == "404":
        assert cfg.teacher.model in message and "base_url" in message


# --------------------------------------------------------------------------- provider variants
# The first request of a stage is the preflight probe: it gets a variant with usable logprobs
# (a probe without them stops the run, see test_teacher_preflight.py).
VARIANTS = [
    "ok_no_bytes", "no_logprobs", "null_logprobs", "null_logprobs_content", "ok_split_utf8",
    "reasoning_field", "reasoning_in_logprobs", "reasoning_none",
]


def test_provider_variants(tmp_path, tiny_model_dir, api_key):
    cfg = make_cfg(tmp_path / "run", tiny_model_dir, n_train=len(VARIANTS))
    rows = questions(cfg)
    plan = {key_of(row): [variant] for row, variant in zip(rows, VARIANTS)}
    with serve(cfg, plan=plan):
        summary = teacher.generate_stage(cfg, 1)
    got = {variant: by_question(cfg)[row["id"]] for row, variant in zip(rows, VARIANTS)}
    for variant in ("no_logprobs", "null_logprobs", "null_logprobs_content"):
        record = got[variant]
        assert record["tokens"] is None and record["mean_token_prob"] is None, variant
        assert record["tokens_match_content"] is None and record["logprobs_note"], variant
        assert record["quality"]["ok"] is True  # the text is fine; DAS will find it unscorable
    assert got["ok_no_bytes"]["tokens_match_content"] is True
    assert all(t["bytes"] is None for t in got["ok_no_bytes"]["tokens"])
    split = got["ok_split_utf8"]
    assert "☕" in split["content"] and split["tokens_match_content"] is True
    assert split["logprobs_note"] == "token strings rebuilt from bytes"
    assert [t["token"] for t in split["tokens"] if t["logprob"] in (-0.5, -0.01)] == ["", "☕"]
    assert got["reasoning_field"]["reasoning"] and got["reasoning_field"]["tokens_match_content"] is True
    trimmed = got["reasoning_in_logprobs"]
    assert trimmed["reasoning"] and trimmed["tokens_match_content"] is True
    assert "dropped" in trimmed["logprobs_note"]
    none = got["reasoning_none"]
    assert none["content"] is None and none["reasoning"] and none["finish_reason"] == "length"
    assert none["error"] is None and none["quality"]["reason"] == "empty" and none["tokens"] is None
    assert summary["without_logprobs"] == 4 and summary["rejected"] == {"empty": 1}


def test_normalize_tokens_never_invents_probabilities():
    entries = [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": None}]
    tokens, note = normalize_tokens(entries, "ab")
    assert tokens is None and "no valid logprob" in note
    tokens, note = normalize_tokens([{"token": "x", "logprob": -0.2}], "y")
    # Kept, and the record will flag the mismatch; issue 10: the note now says what was seen.
    assert tokens is not None and "not aligned to the content" in note and "'x'" in note


def test_parse_completion_rejects_non_completions():
    from dasd_utils.teacher.api import MalformedResponse

    for body in ([], {"choices": []}, {"choices": [{"message": None}]}, {"error": {"message": "x"}}):
        with pytest.raises(MalformedResponse):
            parse_completion(body)
    parsed = parse_completion({"choices": [{"message": {"content": [{"type": "text", "text": "hi"}]}}]})
    assert parsed["content"] == "hi" and parsed["tokens"] is None


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "1e9"}) == 600.0  # capped
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after({"retry-after": future}) <= 31


# --------------------------------------------------------------------------- resume and cache keys
def test_second_run_sends_nothing_and_changes_invalidate(cfg):
    rows = questions(cfg)
    n = len(rows)
    with serve(cfg) as server:
        teacher.generate_stage(cfg, 1)
        assert server.count() == n
        again = teacher.generate_stage(cfg, 1)
        assert server.count() == n and again["sent"] == 0 and again["reused"] == n

        cfg.teacher.temperature_stage1 = 0.5  # changed temperature: nothing stale is served
        changed = teacher.generate_stage(cfg, 1)
        assert server.count() == 2 * n and changed["sent"] == n
        assert {r["temperature"] for r in teacher.load_records(cfg, 1)} == {0.5}
        assert len(teacher.read_records(teacher.archive_path(cfg, 1))) == n

        cfg.teacher.temperature_stage1 = 0.3  # back: served from the archive, nothing sent
        back = teacher.generate_stage(cfg, 1)
        assert server.count() == 2 * n and back["sent"] == 0
        assert {r["temperature"] for r in teacher.load_records(cfg, 1)} == {0.3}

        cfg.system_prompt = cfg.system_prompt + " Be concise."  # changed prompt
        assert teacher.generate_stage(cfg, 1)["sent"] == n
        cfg.teacher.model = "other/teacher"  # changed model
        assert teacher.generate_stage(cfg, 1)["sent"] == n
        cfg.teacher.max_tokens = 77  # changed max_tokens
        assert teacher.generate_stage(cfg, 1)["sent"] == n
        assert server.count() == 5 * n
        assert teacher.generate_stage(cfg, 1, questions=rows[:2])["sent"] == 0  # a subset is served too


def test_quality_change_needs_no_request(cfg):
    with serve(cfg) as server:
        teacher.generate_stage(cfg, 1)
        cfg.quality.min_chars = 10_000
        summary = teacher.generate_stage(cfg, 1)
        assert server.count() == len(questions(cfg))
    assert summary["sent"] == 0 and summary["kept"] == 0 and summary["rejected"] == {"too_short": len(questions(cfg))}


def test_torn_last_line_is_ignored_and_repaired(cfg):
    with serve(cfg) as server:
        teacher.generate_stage(cfg, 1)
        path = teacher.stage_path(cfg, 1)
        lines = path.read_text().splitlines(keepends=True)
        # Simulate a crash in the middle of writing the last record.
        path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
        summary = teacher.generate_stage(cfg, 1)
        assert server.count() == len(questions(cfg)) + 1  # only the torn request again
    assert summary["sent"] == 1
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len({r["request_hash"] for r in records}) == len(questions(cfg))


def test_default_query_is_sent_with_every_request(cfg):
    cfg.teacher.default_query = {"api-version": "2024-10-21"}  # an Azure-style endpoint
    with serve(cfg) as server:
        summary = teacher.generate_stage(cfg, 1)
    assert summary["kept"] == len(questions(cfg)) and server.requests
    assert all(r["path"] == "/v1/chat/completions?api-version=2024-10-21" for r in server.requests)


def test_works_inside_a_running_event_loop(cfg):
    async def notebook_cell():
        return teacher.generate_stage(cfg, 1)

    with serve(cfg):
        summary = asyncio.run(notebook_cell())
    assert summary["kept"] == len(questions(cfg))


def test_run_phase_writes_summary_and_figure(cfg):
    with serve(cfg):
        summary = teacher.run_phase(cfg)
    assert set(summary["stages"]) == {"stage1", "stage2"}
    assert summary["stages"]["stage2"]["temperature"] == 0.9
    assert (cfg.run_dir / "teacher" / "summary.json").is_file()
    assert (cfg.run_dir / "figures" / "teacher_quality.png").stat().st_size > 10_000
    assert {r["temperature"] for r in teacher.load_records(cfg, 2)} == {0.9}
    assert len(teacher.kept_sft_examples(cfg, 1)) == len(questions(cfg))


def test_reuse_run_leaves_the_summary_file_byte_identical(cfg, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    path = cfg.run_dir / "teacher" / "summary.json"
    with serve(cfg) as server:
        first = teacher.run_phase(cfg)
        written = path.read_bytes()
        again = teacher.run_phase(cfg)
        assert server.count() == first["sent_this_run"] > 0
    # The run that sent nothing returns its own counts; the file still describes the run that sent them.
    assert again["sent_this_run"] == 0 and again["stages"]["stage1"]["sent"] == 0
    assert path.read_bytes() == written
    saved = json.loads(written)
    assert saved["sent_this_run"] == first["sent_this_run"] and saved["elapsed"]["wall_s"] > 0
    # A run that sends nothing but changes the records' statistics rewrites them, keeping the sending run's fields.
    cfg.quality.min_chars = 10_000
    teacher.run_phase(cfg)
    saved = json.loads(path.read_text())
    assert saved["stages"]["stage1"]["kept"] == 0 and saved["stages"]["stage1"]["sent"] == first["stages"]["stage1"]["sent"]
    assert saved["sent_this_run"] == first["sent_this_run"] and saved["wall_s"] == json.loads(written)["wall_s"]


# --------------------------------------------------------------------------- the key
def test_api_key_never_written_logged_or_raised(tmp_path, tiny_model_dir, api_key, caplog, capfd):
    cfg = make_cfg(tmp_path / "run", tiny_model_dir)
    rows = questions(cfg)
    caplog.set_level(logging.DEBUG)
    plan = {key_of(rows[0]): ["500_echo_auth"], key_of(rows[1]): ["400_echo_auth"]}
    with serve(cfg, plan=plan) as server:
        with pytest.raises(teacher.TeacherIncompleteError):  # the 400 request failed: the run says to re-run
            teacher.run_phase(cfg)
        assert any(KEY in r["auth"] for r in server.requests)  # the key really was sent (meaningful test)
        echoed = by_question(cfg)[rows[0]["id"]]["retry_errors"][0]
        assert "Authorization" in echoed and "***" in echoed
    with serve(cfg, default="401"):
        cfg.teacher.temperature_stage1 = 0.4  # new requests, all refused
        with pytest.raises(TeacherFatalError) as info:
            teacher.run_phase(cfg)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    files = [p for p in cfg.run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
        assert KEY[8:30].encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err and KEY not in caplog.text


def test_missing_key_names_the_variable_only(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.delenv("DASD_TEST_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here or above (tmp)
    with pytest.raises(MissingAPIKey, match="DASD_TEST_KEY"):
        get_api_key("DASD_TEST_KEY")
    cfg = make_cfg(tmp_path / "run", tiny_model_dir, **{"teacher.api_key_env": "DASD_TEST_KEY"})
    with pytest.raises(MissingAPIKey, match="DASD_TEST_KEY"):
        teacher.generate_stage(cfg, 1)


def test_key_from_dotenv_is_not_exported(tmp_path, monkeypatch):
    monkeypatch.delenv("DASD_DOTENV_KEY", raising=False)
    (tmp_path / ".env").write_text("DASD_DOTENV_KEY=sk-from-dotenv-123456\n")
    monkeypatch.chdir(tmp_path)
    assert get_api_key("DASD_DOTENV_KEY") == "sk-from-dotenv-123456"
    assert "DASD_DOTENV_KEY" not in os.environ
    assert scrub("token sk-from-dotenv-123456 here") == "token *** here"
    assert scrub("Authorization: Bearer abcdefghijklmnop") == "Authorization: Bearer ***"


# --------------------------------------------------------------------------- SIGKILL and resume
def _cli(run_dir: Path, base_url: str, student: Path, env: dict) -> list[str]:
    return [
        sys.executable, "-m", "dasd_utils", "generate", "--profile", "colab", "--run-dir", str(run_dir),
        "--set", "data.source=bundled", "--set", "data.train_split=validation", "--set", "data.train_offset=50",
        "--set", "data.n_train=24", "--set", "data.n_eval=4", "--set", f"student.model={student}",
        "--set", f"teacher.base_url={base_url}", "--set", "teacher.concurrency=2",
    ]


def _prepare(run_dir: Path, student: Path):
    cfg = load_config("colab", run_dir=run_dir, overrides={
        "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50,
        "data.n_train": 24, "data.n_eval": 4, "student.model": str(student)})
    data.run_phase(cfg)
    return cfg


def _final_set(cfg, stage):
    records = [json.loads(line) for line in teacher.stage_path(cfg, stage).read_text().splitlines()]
    hashes = [r["request_hash"] for r in records]
    assert len(hashes) == len(set(hashes)), "duplicated records"
    return {(r["request_hash"], r["content"], json.dumps(r["tokens"]), r["error"]) for r in records}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path, tiny_model_dir, api_key):
    env = dict(os.environ, OPENAI_API_KEY=KEY, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    killed_cfg = _prepare(tmp_path / "killed", tiny_model_dir)
    clean_cfg = _prepare(tmp_path / "clean", tiny_model_dir)
    with FakeOpenAIServer(latency_s=0.15, answers=answers_from_rows(questions(killed_cfg))) as server:
        proc = subprocess.Popen(_cli(tmp_path / "killed", server.base_url, tiny_model_dir, env), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        path = teacher.stage_path(killed_cfg, 1)
        deadline = time.time() + 120
        while time.time() < deadline:
            if path.is_file() and len(path.read_text().splitlines()) >= 6:
                break
            if proc.poll() is not None:
                pytest.fail(f"generation ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = len(path.read_text().splitlines())
        assert 6 <= partial < 24, "the kill must happen mid-stage"
        sent_before_resume = server.count()

        resumed = subprocess.run(_cli(tmp_path / "killed", server.base_url, tiny_model_dir, env), cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        resent = server.count() - sent_before_resume
        # Completed requests are not sent again: exactly what had no record (the killed in-flight ones included).
        assert resent == 48 - partial
        assert sent_before_resume - partial <= 2  # at most `concurrency` answers were lost in flight

        clean = subprocess.run(_cli(tmp_path / "clean", server.base_url, tiny_model_dir, env), cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stderr[-3000:]
    for stage in (1, 2):
        got, expected = _final_set(killed_cfg, stage), _final_set(clean_cfg, stage)
        assert len(got) == 24 and got == expected
    summary = json.loads((tmp_path / "killed" / "teacher" / "summary.json").read_text())
    assert summary["stages"]["stage1"]["kept"] == 24 and summary["stages"]["stage2"]["kept"] == 24


def test_key_from_colab_secrets(monkeypatch, tmp_path):
    import types

    monkeypatch.delenv("DASD_COLAB_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    userdata = types.SimpleNamespace(get=lambda name: {"DASD_COLAB_KEY": "sk-colab-secret-987654"}[name])
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.userdata = userdata
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert get_api_key("DASD_COLAB_KEY") == "sk-colab-secret-987654"
    with pytest.raises(MissingAPIKey, match="DASD_OTHER_KEY"):  # a missing secret raises KeyError inside: handled
        get_api_key("DASD_OTHER_KEY")


def test_log_records_are_scrubbed(api_key, caplog):
    from dasd_utils.secrets import install_log_scrubber, register_secret

    register_secret(KEY)
    install_log_scrubber()
    caplog.set_level(logging.INFO)
    logging.getLogger("some.library").info("sending headers Authorization=%s", KEY)
    assert KEY not in caplog.text and "***" in caplog.text


def test_force_regenerates_everything(cfg):
    with serve(cfg) as server:
        teacher.run_phase(cfg)
        n = server.count()
        summary = teacher.run_phase(cfg, force=True)
        assert server.count() == 2 * n and summary["sent_this_run"] == n
    assert list((cfg.run_dir / "teacher" / "archive").glob("forced-*/stage1.jsonl"))
