"""The featured evaluation item (validation 49, the crab question) when a run does not evaluate it.

Notebook 01's prompt cell, notebook 06's qualitative cell, the evaluation's qualitative.json and
the report each say the item is not in this run's evaluation set instead of crashing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dasd_utils import data, evaluation, notebook as nb, report
from dasd_utils.config import load_config

REPO = Path(__file__).resolve().parents[2]
NOT_EVALUATED = "n'est pas dans l'ensemble d'évaluation de ce run"


def _cfg(tmp_path, *overrides: str):
    cfg = load_config("demo", overrides=list(overrides), run_dir=tmp_path / "run")
    data.run_phase(cfg)
    return cfg


def test_featured_prompt_is_shown_when_evaluated(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    nb.show_featured_prompt(cfg)
    out = capsys.readouterr().out
    assert "--- system ---" in out and "--- user ---" in out and "crab" in out
    assert nb.featured_question(cfg)["index"] == 49


@pytest.mark.parametrize(
    ("overrides", "span"),
    [(("data.n_eval=10",), "10 questions de validation, items 0 à 9"),
     (("data.eval_offset=100", "data.n_eval=20", "data.train_offset=200"), "20 questions de validation, items 100 à 119")],
)
def test_featured_prompt_says_when_not_evaluated(tmp_path, capsys, overrides, span):
    cfg = _cfg(tmp_path, *overrides)
    assert nb.featured_question(cfg) is None
    nb.show_featured_prompt(cfg)
    out = capsys.readouterr().out
    assert out.startswith("La question du crabe (item 49 de validation) " + NOT_EVALUATED)
    assert span in out and "eval.qualitative_index" in out


def test_other_featured_index_is_named_by_its_index(tmp_path, capsys):
    cfg = _cfg(tmp_path, "data.n_eval=10", "eval.qualitative_index=30")
    nb.show_featured_prompt(cfg)
    assert capsys.readouterr().out.startswith("La question d'indice 30 (validation, `eval.qualitative_index`) " + NOT_EVALUATED)


def _predictions(rows):
    return {name: [{"question_id": r["id"], "index": r["index"], "response": "Final Answer: A", "extracted": "A",
                    "gold": r["answerKey"], "correct": r["answerKey"] == "A", "format_ok": True} for r in rows]
            for name in ("base", "stage1", "stage2")}


def test_qualitative_cell_and_report_without_the_featured_item(tmp_path, capsys):
    cfg = _cfg(tmp_path, "data.n_eval=10")
    rows = data.load_run_questions(cfg, "eval")
    predictions = _predictions(rows)
    qualitative = evaluation.qualitative_examples(cfg, rows, predictions)
    assert qualitative["highlight"] is None and "49" in qualitative["highlight_missing"]
    assert len(qualitative["random"]) == cfg.eval.n_random_examples
    out = cfg.run_dir / "eval"
    out.mkdir(parents=True)
    (out / "qualitative.json").write_text(json.dumps(qualitative), encoding="utf-8")
    metrics = {"profile": "demo", "n_items": len(rows), "model_order": list(predictions),
               "models": {name: evaluation.model_metrics(p) for name, p in predictions.items()},
               "comparisons": evaluation.compare_models(predictions)}
    (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")

    nb.qualitative(cfg)
    assert NOT_EVALUATED in capsys.readouterr().out
    nb.qualitative(cfg, which="random")  # the random items are still shown
    assert capsys.readouterr().out.count("Bonne réponse") == cfg.eval.n_random_examples

    md = Path(report.build_report(cfg.run_dir)["markdown"]).read_text(encoding="utf-8")
    section = md[md.index("## 4. Analyse qualitative"): md.index("## 5.")]
    assert "*Exemple qualitatif indisponible : la question d'indice 49 " + NOT_EVALUATED in section
    assert "crab" not in section


@pytest.mark.notebook
def test_notebook_01_runs_without_the_featured_item(tmp_path):
    """Notebook 01, as generated, runs with data.n_eval=10 and prints the absence (papermill, a real kernel)."""
    import nbformat
    import papermill as pm
    from nbformat.v4 import new_notebook

    from support.scripts import build_notebooks

    source = tmp_path / "01.ipynb"
    builder = build_notebooks()
    nb_obj = builder.build_notebook("01_donnees.ipynb", builder.sources()["01_donnees.ipynb"])
    nb_obj.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb_obj, source)
    target = tmp_path / "01_out.ipynb"
    pm.execute_notebook(str(source), str(target), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                        parameters={"RUN_DIR": str(tmp_path / "run"), "OVERRIDES": {"data.n_eval": 10}})
    executed = nbformat.read(target, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "La question du crabe (item 49 de validation) " + NOT_EVALUATED in text
