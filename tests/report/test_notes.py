"""The student's discussion (notes_etudiant.md) in the report: where it is found and what is shown. Fake runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dasd_utils import layout, report
from dasd_utils.report import notes
from support.fake_run import make_fake_run

REPO = Path(__file__).resolve().parents[2]


def discussion(md: str) -> str:
    return md[md.index("## 6. Discussion"): md.index("## 7. Conclusion")]


def test_the_repository_skeleton_is_the_default(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    assert notes.find_notes(run_dir) == (REPO / "report" / "notes_etudiant.md", "repository")
    md = Path(report.build_report(run_dir)["markdown"]).read_text(encoding="utf-8")
    text = discussion(md)
    assert "Discussion pas encore écrite" in text and "#### Le filtrage DAS aide-t-il ?" in text
    assert "<!--" not in text and "squelette -->" not in text  # comments are notes to the writer
    assert "tiré de `report/notes_etudiant.md` du dépôt" in text


def test_notes_next_to_the_run_win_and_changes_rebuild_the_report(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    report.build_report(run_dir)
    own = layout.student_notes(run_dir)
    own.write_text("<!-- mon brouillon -->\n# Ma discussion\n\nLe stage 1 apprend surtout le format.\n\n"
                   "```text\n# pas un titre\n```\n", encoding="utf-8")
    result = report.build_report(run_dir)
    assert result["reused"] is False  # the notes are an input of the report
    text = discussion(Path(result["markdown"]).read_text(encoding="utf-8"))
    assert "### Ma discussion" in text and "Le stage 1 apprend surtout le format." in text
    assert "\n# pas un titre\n" in text  # fenced code left alone
    assert "Discussion pas encore écrite" not in text and "mon brouillon" not in text
    assert "tiré de `notes_etudiant.md` à côté du run" in text
    assert report.build_report(run_dir)["reused"] is True


def test_without_any_notes_the_report_says_where_to_write_them(tmp_path, monkeypatch):
    monkeypatch.setattr(notes, "CHECKOUT_ROOT", tmp_path / "installed")  # an installed package: no report/ folder
    run_dir = make_fake_run(tmp_path, "demo")
    assert notes.find_notes(run_dir) is None and notes.ensure_run_notes(run_dir) is None
    md = Path(report.build_report(run_dir)["markdown"]).read_text(encoding="utf-8")
    assert "*Pas de discussion : écrivez-la dans `notes_etudiant.md`" in discussion(md)


def test_ensure_run_notes_copies_the_skeleton_once(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    copied = notes.ensure_run_notes(run_dir)
    assert copied == layout.student_notes(run_dir)
    assert copied.read_text(encoding="utf-8") == (REPO / "report" / "notes_etudiant.md").read_text(encoding="utf-8")
    copied.write_text("Mes notes.\n", encoding="utf-8")
    assert notes.ensure_run_notes(run_dir).read_text(encoding="utf-8") == "Mes notes.\n"  # never overwritten


@pytest.mark.parametrize("text, lowered", [("# A\n## B\n### C\n#### D", "### A\n### B\n### C\n#### D"),
                                           ("#hashtag\n", "#hashtag\n"),
                                           ("~~~\n# code\n~~~\n# T", "~~~\n# code\n~~~\n### T")])
def test_lower_headings(text, lowered):
    assert notes.lower_headings(text) == lowered
