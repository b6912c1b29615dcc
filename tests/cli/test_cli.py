"""Command line: the data phase end to end (subprocess), unknown/unimplemented phases, bad overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dasd_utils import cli

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "dasd_utils", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def test_data_phase_writes_question_files_and_config(tmp_path):
    secret = "sk-cli-test-secret-value-0042"
    run_dir = tmp_path / "run"
    result = run_cli(
        "data", "--profile", "demo", "--run-dir", str(run_dir), "--set", "data.n_train=20",
        env_extra={"OPENAI_API_KEY": secret},
    )
    assert result.returncode == 0, result.stderr
    assert "== phase data" in result.stdout
    train = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    evaluation = [json.loads(line) for line in (run_dir / "data" / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(train) == 20 and len(evaluation) == 50
    assert train[0]["index"] == 50 and evaluation[-1]["index"] == 49
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["profile"] == "demo" and config["data"]["n_train"] == 20
    assert config["paths"]["run_dir"] == str(run_dir)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), path
    assert secret not in result.stdout + result.stderr


def test_bad_set_exits_2_with_a_message(tmp_path):
    result = run_cli("data", "--profile", "demo", "--run-dir", str(tmp_path / "run"), "--set", "data.n_trian=3")
    assert result.returncode == 2
    assert "unknown config key 'data.n_trian'" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written for a bad command


def test_bad_set_type_exits_2(tmp_path, capsys):
    code = cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "run"), "--set", "data.n_train=lots"])
    assert code == 2
    assert "data.n_train: expected an integer" in capsys.readouterr().err


def test_unknown_phase_is_rejected(tmp_path):
    result = run_cli("distil", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "invalid choice: 'distil'" in result.stderr


def test_unknown_profile_is_rejected(tmp_path):
    result = run_cli("data", "--profile", "huge", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "invalid choice: 'huge'" in result.stderr


def test_unimplemented_phase_exits_non_zero_with_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.PHASES, "generate", "dasd_utils._phase_not_written_yet")
    code = cli.main(["generate", "--profile", "demo", "--run-dir", str(tmp_path / "run")])
    assert code != 0
    err = capsys.readouterr().err
    assert "phase 'generate' is not implemented yet" in err
    assert "dasd_utils._phase_not_written_yet is missing" in err


def test_module_without_run_phase(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.PHASES, "report", "dasd_utils.jsonl")  # a real module with no run_phase
    code = cli.main(["report", "--profile", "demo", "--run-dir", str(tmp_path / "run")])
    assert code != 0
    assert "dasd_utils.jsonl.run_phase is missing" in capsys.readouterr().err


def test_all_stops_before_running_when_a_phase_is_missing(tmp_path, monkeypatch, capsys):
    # Whatever the other phases' state, "data" comes first and must not run when "das" is missing.
    monkeypatch.setattr(cli, "PHASES", {"data": "dasd_utils.data", "das": "dasd_utils._phase_not_written_yet"})
    code = cli.main(["all", "--profile", "demo", "--run-dir", str(tmp_path / "run")])
    assert code != 0
    assert "phase 'das' is not implemented yet" in capsys.readouterr().err
    assert not (tmp_path / "run" / "data").exists()


def test_phase_error_exits_1(tmp_path, capsys):
    code = cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "run"), "--set", "data.n_train=5000"])
    assert code == 1
    assert "error in phase data: DataError: data.n_train=5000" in capsys.readouterr().err


def test_force_is_passed_to_phases(tmp_path, monkeypatch):
    seen = {}

    def fake_phase(cfg, force=False):
        seen["force"] = force
        seen["run_dir"] = str(cfg.run_dir)
        return {"ok": True}

    monkeypatch.setattr(cli, "phase_function", lambda name: fake_phase)
    assert cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "r"), "--force"]) == 0
    assert seen == {"force": True, "run_dir": str(tmp_path / "r")}
    assert cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "r")]) == 0
    assert seen["force"] is False


def test_config_file_option(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  n_train: 7\n  n_eval: 3\n", encoding="utf-8")
    code = cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "run"), "--config", str(recipe)])
    assert code == 0
    summary = json.loads((tmp_path / "run" / "data" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["n_train"], summary["n_eval"]) == (7, 3)


@pytest.mark.parametrize("phase", ["data", "generate", "das", "train", "evaluate", "report"])
def test_every_documented_phase_is_in_the_parser(phase):
    assert phase in cli.PHASES
    args = cli.build_parser().parse_args([phase])
    assert args.phase == phase and args.profile == "demo"


def test_os_errors_in_a_phase_are_one_line(tmp_path, monkeypatch, capsys):
    def full_disk(cfg, force=False):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "x.jsonl"))

    monkeypatch.setattr(cli, "phase_function", lambda name: full_disk)
    assert cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error in phase data: OSError: No space left on device (ENOSPC): {tmp_path / 'run' / 'x.jsonl'}"


def test_phase_errors_are_scrubbed(tmp_path, monkeypatch, capsys):
    from dasd_utils.secrets import register_secret

    secret = "sk-cli-scrub-test-0123456789"
    register_secret(secret)

    def leaky(cfg, force=False):
        raise RuntimeError(f"server said: bad key {secret} at https://u:pw@host/v1\nsecond line")

    monkeypatch.setattr(cli, "phase_function", lambda name: leaky)
    assert cli.main(["data", "--profile", "demo", "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert secret not in err and "pw@" not in err and len(err.strip().splitlines()) == 1
