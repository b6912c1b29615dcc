"""Set once in notebook 01, read by the next notebooks; Kaggle's attached runs copied into /kaggle/working."""

from __future__ import annotations

import json
import os

import pytest

from dasd_utils.config import load_run_config
from dasd_utils.notebook import cloud
from dasd_utils.notebook import setup as notebook_setup
from dasd_utils.notebook.setup import NotebookStop, setup_notebook

BUNDLED = {"data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50, "data.n_train": 4,
           "data.n_eval": 2}


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setattr(notebook_setup, "gpu_info", lambda: None)


def test_form_fields_reach_the_config_only_for_an_api_teacher():
    form = {"REPO_URL": "https://github.com/me/x", "TEACHER_URL": " https://api.example.org/v1 ", "TEACHER_MODEL": ""}
    assert cloud.form_overrides(form, {}, "openai") == {"teacher.base_url": "https://api.example.org/v1"}
    assert cloud.form_overrides(form, {"teacher.base_url": "http://mine:8000/v1"}, "openai") == {
        "teacher.base_url": "http://mine:8000/v1"}  # OVERRIDES win
    assert cloud.form_overrides({**form, "TEACHER_MODEL": "openai/gpt-oss-20b"}, None, "local") == {}  # the demo's teacher


def test_settings_file_is_read_from_the_first_folder_that_has_one(tmp_path):
    assert cloud.read_settings([tmp_path / "none"]) == {}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notebook_settings.json").write_text("not json")
    cloud.write_settings(tmp_path / "b", {"repo_url": "u", "profile": "colab", "run_dir": None})
    assert cloud.read_settings([tmp_path / "a", tmp_path / "b"]) == {"repo_url": "u", "profile": "colab"}


def test_notebook_01_on_colab_saves_its_run_and_the_next_notebooks_follow_it(fake_colab, capsys):
    """PROFILE = "demo" set once in notebook 01 on Colab: notebook 03, with PROFILE and RUN_DIR at None, opens that run."""
    cfg = setup_notebook("data", "demo", None, BUNDLED, form={"TEACHER_URL": "https://ignored/v1"},
                         repo_url="https://github.com/me/dasd-course.git")
    home = fake_colab / "MyDrive" / "dasd"
    saved = json.loads((home / "notebook_settings.json").read_text())
    assert saved == {"repo_url": "https://github.com/me/dasd-course.git", "profile": "demo", "run_dir": "runs/demo"}
    assert cfg.teacher.base_url is None  # the demo's local teacher takes no URL
    assert "Réglages du run enregistrés" in capsys.readouterr().out
    later = setup_notebook("das")
    assert later.profile == "demo" and later.run_dir == cfg.run_dir and later.data.n_train == 4
    assert json.loads((home / "notebook_settings.json").read_text()) == saved  # only notebook 01 rewrites it


def test_a_repo_url_with_a_token_is_never_saved(fake_colab, capsys):
    token = "ghp_0123456789abcdefSECRET"
    setup_notebook("data", "demo", None, BUNDLED, repo_url=f"https://me:{token}@github.com/me/private.git")
    saved = (fake_colab / "MyDrive" / "dasd" / "notebook_settings.json").read_text()
    out = capsys.readouterr().out
    assert token not in saved and token not in out and "identifiants" in out and "repo_url" not in saved


def test_the_teacher_form_of_notebook_01_goes_into_the_run_config(fake_colab):
    setup_notebook("data", None, None, BUNDLED, form={"TEACHER_URL": "https://api.example.org/v1",
                                                      "TEACHER_MODEL": "openai/gpt-oss-120b"})
    cfg = load_run_config(fake_colab / "MyDrive" / "dasd" / "runs" / "colab")
    assert cfg.profile == "colab" and cfg.teacher.base_url == "https://api.example.org/v1"


def test_a_later_notebook_before_notebook_01_stops_in_french(fake_colab):
    with pytest.raises(NotebookStop) as exc:
        setup_notebook("das")
    message = str(exc.value)
    assert "exécutez d'abord le notebook 01_donnees" in message and "Google Drive" in message
    assert not (fake_colab / "MyDrive" / "dasd" / "runs" / "colab" / "config.json").exists()  # nothing written


def test_kaggle_copies_the_attached_run_and_says_so(fake_kaggle, monkeypatch, capsys):
    """Notebook 01's output attached to notebook 02: its run is copied into /kaggle/working, then completed there."""
    attached = fake_kaggle / "input" / "dasd-01-donnees"  # what was notebook 01's /kaggle/working
    monkeypatch.setenv("DASD_KAGGLE_WORKING", str(attached))
    cfg01 = setup_notebook("data", None, None, BUNDLED, form={"TEACHER_URL": "https://api.example.org/v1"},
                           repo_url="https://github.com/me/x.git")
    assert "Kaggle : aucun run attaché" not in capsys.readouterr().out  # a new run has nothing to continue
    (cfg01.run_dir / "teacher").mkdir()
    (cfg01.run_dir / "teacher" / "stage1.jsonl").write_text('{"x": 1}\n')
    monkeypatch.setenv("DASD_KAGGLE_WORKING", str(fake_kaggle / "working"))  # notebook 02, a new machine
    capsys.readouterr()
    cfg = setup_notebook("generate")
    out = capsys.readouterr().out
    working = fake_kaggle / "working" / "runs" / "colab"
    assert cfg.run_dir == working and cfg.teacher.base_url == "https://api.example.org/v1"
    assert (working / "teacher" / "stage1.jsonl").read_text() == '{"x": 1}\n'
    assert "Kaggle : " in out and "copiés de" in out and str(attached / "runs" / "colab") in out
    # this session's own files are never overwritten by the attached copy
    (working / "teacher" / "stage1.jsonl").write_text("newer\n")
    setup_notebook("generate")
    assert (working / "teacher" / "stage1.jsonl").read_text() == "newer\n" and "déjà présent" in capsys.readouterr().out
    # the settings travel on with this notebook's own output
    assert json.loads((fake_kaggle / "working" / "notebook_settings.json").read_text())["repo_url"] == "https://github.com/me/x.git"


def test_kaggle_without_an_attached_run_says_how_to_attach_one(fake_kaggle, capsys):
    with pytest.raises(NotebookStop, match="Add Input → Your Work"):
        setup_notebook("train")
    assert "aucun run attaché" in capsys.readouterr().out


def test_attached_runs_come_fullest_first(tmp_path):
    for name, n in (("small", 1), ("big", 3)):
        run = tmp_path / name / "runs" / "colab"
        run.mkdir(parents=True)
        for k in range(n):
            (run / f"f{k}").write_text(name)
    deep = tmp_path / "user" / "notebook" / "runs" / "colab"
    deep.mkdir(parents=True)
    found = cloud.attached_runs(tmp_path, "colab")
    assert found[:2] == [tmp_path / "big" / "runs" / "colab", tmp_path / "small" / "runs" / "colab"] and deep in found
    target = tmp_path / "working"
    assert cloud.copy_missing(found, target) == (3, os.path.getsize(tmp_path / "big" / "runs" / "colab" / "f0") * 3)
    assert (target / "f0").read_text() == "big"  # the fullest run wins a name both have
