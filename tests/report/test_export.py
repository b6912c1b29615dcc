"""The report as a standalone folder (the reference report in report/, the Colab download) and the
check that keeps report/ equal to what the code builds from the demo run. Fake runs, invented numbers."""

from __future__ import annotations

import zipfile

from dasd_utils.report.export import bundle, export_report
from support.fake_run import make_fake_run
from support.scripts import load_script


# ------------------------------------------------------------------------------ standalone folder
def test_export_writes_a_standalone_folder(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    out = tmp_path / "rendu"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale.png").write_bytes(b"old")
    written = export_report(run_dir, out, banner="> BANNIÈRE")
    md = written["markdown"].read_text(encoding="utf-8")
    assert md.startswith("> BANNIÈRE\n\n# Rapport")
    assert "](../figures/" not in md and "](figures/das_stage1.png)" in md
    shown = {p.name for p in (out / "figures").iterdir()}
    assert "stale.png" not in shown and "das_stage1.png" in shown
    assert "mystery_plot.png" in shown  # an unknown figure is shown under "Autres figures", so it is copied
    html = written["html"].read_text(encoding="utf-8")
    assert "BANNIÈRE" in html and 'src="figures/' not in html and "data:image/png;base64," in html
    archive = bundle(out, tmp_path / "rapport_demo")
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as z:
        assert {"rapport.md", "rapport.html", "figures/das_stage1.png"} <= set(z.namelist())


# ------------------------------------------------------------------------------ the reference report's check
def test_mask_hides_what_differs_between_machines():
    tool = load_script("tools/reference_report.py")
    md = ("| Run | `demo` |\n\n| Stage | Exemples | Tokens/s | Durée | lr |\n| :--- | :---: | :---: | :---: | :---: |\n"
          "| Stage 1 | 16 | 873 | 97,3 s | 2e-04 |\n\nVu dans /tmp/x/runs/demo ; 2,5 min.\n\n| A | B |\n| --- | --- |\n| 873 | 2 |\n")
    masked = tool.mask(md)
    assert "| Stage 1 | 16 | ⟨machine⟩ | ⟨machine⟩ | 2e-04 |" in masked
    assert "| Run | ⟨run⟩ |" in masked and "⟨chemin⟩" in masked and "⟨durée⟩." in masked
    assert "| 873 | 2 |" in masked  # another table keeps its numbers
    other = md.replace("873 | 97,3 s", "901 | 88,0 s").replace("`demo`", "`demo_run`")
    assert tool.mask(other) == masked


def test_check_finds_a_changed_number_and_a_missing_figure(tmp_path):
    tool = load_script("tools/reference_report.py")
    run_dir = make_fake_run(tmp_path, "demo")
    committed, built = tmp_path / "committed", tmp_path / "built"
    export_report(run_dir, committed, banner=tool.BANNER)
    export_report(run_dir, built, banner=tool.BANNER)
    assert tool.differences(committed, built) == []
    text = (committed / "rapport.md").read_text(encoding="utf-8")
    (committed / "rapport.md").write_text(text.replace("22,0 %", "23,0 %"), encoding="utf-8")
    (committed / "figures" / "das_stage1.png").unlink()
    problems = tool.differences(committed, built)
    assert any("-" in p and "23,0 %" in p for p in problems)
    assert any("das_stage1.png" in p for p in problems)
