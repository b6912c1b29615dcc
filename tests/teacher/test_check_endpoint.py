"""Notebook 01's teacher check: the run's first request sent alone, its verdict, what each failure says (fake server)."""

from __future__ import annotations

import pytest

from support.teacher_server import KEY, api_key, cfg, serve  # noqa: F401 - api_key and cfg are fixtures

from dasd_utils import teacher
from dasd_utils.config import MissingSetting, load_config
from dasd_utils.notebook import checks
from dasd_utils.notebook.setup import NotebookStop
from dasd_utils.secrets import MissingAPIKey
from dasd_utils.teacher.api import TeacherFatalError, TeacherPreflightError


def test_the_check_is_the_runs_first_request_and_is_never_sent_again(cfg, capsys):
    with serve(cfg) as server:
        assert checks.check_teacher(cfg) is None  # the cell shows the French verdict, not the stored record
        assert server.n_requests == 1
        out = capsys.readouterr().out
        assert "Professeur joignable : 127.0.0.1" in out and "Cette réponse est gardée" in out
        assert "avec les log-probabilités de ses" in out
        first = next(r for r in server.requests)  # the verdict was GO: logprobs present and aligned
        assert first["body"]["logprobs"] is True
        again = teacher.check_endpoint(cfg)  # a re-run of notebook 01 sends nothing
        assert again == {"checked": False, "reason": "answered_before", "record": again["record"]}
        summary = teacher.generate_stage(cfg, 1)  # notebook 02 reuses the checked answer
        assert server.n_requests == 6 and summary["reused"] == 1 and summary["sent"] == 5


def test_no_url_no_key_and_a_refused_key_stop_with_what_to_fix(cfg, monkeypatch):
    cfg.teacher.base_url = None
    with pytest.raises(MissingSetting):
        teacher.check_endpoint(cfg)
    with pytest.raises(NotebookStop, match="Adresse du professeur manquante.*TEACHER_URL"):
        checks.check_teacher(cfg)
    with serve(cfg, default="401") as server:
        with pytest.raises(TeacherFatalError) as refused:
            teacher.check_endpoint(cfg)
        assert refused.value.status == 401 and refused.value.reason == "auth" and server.n_requests == 1
        with pytest.raises(NotebookStop) as stop:
            checks.check_teacher(cfg)
        assert "clé d'API a été refusée (401)" in str(stop.value) and KEY not in str(stop.value)
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.chdir(cfg.run_dir)  # no .env file above
        with pytest.raises(MissingAPIKey):
            teacher.check_endpoint(cfg)
        assert server.n_requests == 2  # no request without a key


def test_a_server_without_logprobs_stops_the_run_at_notebook_01(cfg):
    with serve(cfg, default="no_logprobs"):
        with pytest.raises(TeacherPreflightError) as info:
            teacher.check_endpoint(cfg)
        assert [c["code"] for c in info.value.checks if c["level"] == "FATAL"] == ["no_logprobs"]
        with pytest.raises(NotebookStop, match="sans les log-probabilités"):
            checks.check_teacher(cfg)


def test_the_local_teacher_has_nothing_to_check(tmp_path, capsys):
    cfg = load_config("demo", run_dir=tmp_path / "run")
    assert teacher.check_endpoint(cfg) == {"checked": False, "reason": "local"}
    checks.check_teacher(cfg)
    assert "Professeur local" in capsys.readouterr().out
