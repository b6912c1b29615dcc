"""Notebook 07's deliverable: the student's notes next to the run on Colab, the report's summary that
GitHub shows, the standalone report zipped and offered for download. Fake runs, invented numbers."""

from __future__ import annotations

import sys
import types
import zipfile
from pathlib import Path

from dasd_utils import layout, notebook as nb, report
from dasd_utils.config import load_config
from dasd_utils.notebook.setup import COLAB, KAGGLE, LOCAL
from support.fake_run import make_fake_run



def fake_colab_files(monkeypatch) -> list[str]:
    """Install a ``google.colab.files`` whose download() records the path (removed after the test); return the record."""
    downloads: list[str] = []
    files = types.SimpleNamespace(download=downloads.append)
    colab = types.SimpleNamespace(files=files)
    monkeypatch.setitem(sys.modules, "google", types.SimpleNamespace(colab=colab))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.files", files)
    return downloads


def fake_cfg(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    return load_config("demo", run_dir=run_dir)


def test_locally_the_notes_are_the_repository_s_and_nothing_is_copied(tmp_path):
    cfg = fake_cfg(tmp_path)
    said = nb.student_notes(cfg, environment=LOCAL)
    assert "report/notes_etudiant.md (dans le dépôt) ; c'est encore le squelette" in said
    assert not layout.student_notes(cfg.run_dir).exists()
    assert nb.deliver_report(cfg, environment=LOCAL).startswith("Rapport : ")
    assert not list(cfg.run_dir.glob("rapport_*"))


def test_on_colab_the_skeleton_goes_next_to_the_run_and_the_zip_is_offered(tmp_path, monkeypatch):
    downloads = fake_colab_files(monkeypatch)
    cfg = fake_cfg(tmp_path)
    said = nb.student_notes(cfg, environment=COLAB)
    own = layout.student_notes(cfg.run_dir)
    assert own.is_file() and "(à côté du run)" in said
    own.write_text("Ma discussion : le format progresse, pas l'exactitude.\n", encoding="utf-8")
    assert "squelette" not in nb.student_notes(cfg, environment=COLAB)
    report.build_report(cfg.run_dir)
    said = nb.deliver_report(cfg, environment=COLAB)
    archive = cfg.run_dir / f"rapport_{cfg.run_dir.name}.zip"
    assert downloads == [str(archive)] and "téléchargement proposé" in said
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        assert {"rapport.md", "rapport.html", "notes_etudiant.md"} <= names and any(n.startswith("figures/") for n in names)
        assert "Ma discussion : le format progresse" in z.read("rapport.md").decode("utf-8")


def test_on_kaggle_the_zip_stays_in_the_working_folder(tmp_path):
    cfg = fake_cfg(tmp_path)
    said = nb.deliver_report(cfg, environment=KAGGLE)
    assert "enregistrez une version" in said
    assert (cfg.run_dir / f"rapport_{cfg.run_dir.name}.zip").is_file()


def test_report_summary_is_the_warning_the_comparison_and_the_conclusion(tmp_path):
    cfg = fake_cfg(tmp_path)
    md = Path(report.build_report(cfg.run_dir)["markdown"])
    summary = nb.report_summary(md).data
    assert summary.startswith("> ⚠️ **Profil `demo` : les chiffres de ce rapport ne sont PAS les résultats du cours.**")
    assert "### 3.1 Comparaison quantitative" in summary and "## 7. Conclusion" in summary
    assert "### 3.2" not in summary and "## 8. Références" not in summary and "![" not in summary
    assert "Exactitude par modèle, avec son intervalle" not in summary  # a figure's caption goes with it
    assert len(summary) < 20_000
