"""Notebook 08's tables: what they print (invented numbers), in French: row names, reasons, decimal commas, no NaN / None."""

from __future__ import annotations

import re

import pytest

from dasd_utils.analyses import sampling, tables

RAW = ("NaN", "None", "nan", "True", "False", "n_scored", "das_kept", "teacher_sentence_ratio", "mean_chars",
       "inconsistent_answer", "no_final_answer", "boosted", "shared")


def no_raw_values(text: str) -> None:
    for raw in RAW:
        assert not re.search(rf"\b{raw}\b", text), raw


def test_statistics_table_prints_counts_as_integers_and_means_with_decimal_commas():
    records = [
        {"content": "a b c", "scorable": True, "keep": i % 2 == 0, "teacher_sentence_ratio": 1 / 3,
         "teacher_sentence_ratio_without_final": 0.25, "sentences": [{}, {}, {}]}
        for i in range(6)
    ]
    results = {"variants": [{"label": "DAS", "training_set": sampling.set_statistics(records)},
                            {"label": "aléatoire", "training_set": dict(sampling.set_statistics(records[:4]), mean_chars=None)}]}
    table = tables.statistics_table(results)
    text = table.to_string()
    assert table.loc["exemples"].tolist() == ["6", "4"]
    assert table.loc["exemples que DAS garde"].tolist() == ["3", "2"]
    assert table.loc["taux de phrases professeur"].tolist() == ["0,333", "0,333"]
    assert table.loc["taux de phrases professeur sans la ligne finale"].tolist() == ["0,25", "0,25"]
    assert table.loc["mots par exemple (moyenne)"].tolist() == ["3", "3"]
    assert table.loc["caractères par exemple (moyenne)"].tolist() == ["5", "—"]
    no_raw_values(text)
    assert ">6<" in table.to_html() and ">0,333<" in table.to_html()  # the notebook shows the HTML


RESULTS = {
    "models": [
        {"name": "das", "label": "DAS (conservés)", "n": 50, "correct": 7, "accuracy": 0.14, "ci95": [0.0695, 0.2624]},
        {"name": "random_s1", "label": "aléatoire (graine 1)", "n": 50, "correct": 9, "accuracy": 0.18,
         "ci95": [0.0977, 0.3080]},
    ],
    "comparisons": [{"a": "das", "b": "random_s1", "only_a_correct": 1, "only_b_correct": 3, "mcnemar_p": 0.625,
                     "mcnemar_p_holm": 0.625, "significant": False}],
    "provenance": {"available": True, "shares": {"teacher": 0.0053, "boosted": 0.0, "shared": 0.877, "student": 0.1176},
                   "delta": {"teacher": -0.0077, "boosted": 0.0, "shared": -0.1437, "student": 0.1514},
                   "counts": {"teacher": 1, "boosted": 0, "shared": 164, "student": 22}},
    "mixed_policy": {"available": True, "questions": 10, "quality_rejected": {"inconsistent_answer": 1, "no_final_answer": 5},
                     "student_share_chars": 0.64, "used": 1},
}


def test_results_table_is_french_without_missing_markers():
    table = tables.results_table(RESULTS)
    text = table.to_string()
    assert "conservés" not in text  # the labels are this version's, not those stored by an older run
    no_raw_values(text)
    assert table.loc["DAS (gardés)", "exactitude"] == "0,14" and table.loc["DAS (gardés)", "p McNemar (descriptif)"] == "—"
    assert table.loc["aléatoire (graine 1)", "IC 95 %"] == "[0,098 ; 0,308]"
    assert table.loc["aléatoire (graine 1)", "DAS seul juste"] == "1"
    assert table.loc["aléatoire (graine 1)", "p McNemar (descriptif)"] == "0,625"
    assert "p Holm" not in table.columns and "significatif" not in table.columns  # descriptive: no verdict here


def test_provenance_table_names_the_labels_in_french():
    table = tables.provenance_table(RESULTS)
    assert list(table.index) == ["professeur", "renforcée", "partagée", "élève"]
    assert table.loc["partagée"].tolist() == ["164", "0,877", "-0,144"]
    assert table.loc["renforcée", "part"] == "0"
    no_raw_values(table.to_string())
    assert tables.provenance_table({"provenance": {"available": False}}) is None


def test_mixed_policy_table_translates_the_reasons():
    text = tables.mixed_policy_table(RESULTS).to_string()
    assert "rejetées par le filtre : conclusion différente de la réponse finale" in text
    assert "rejetées par le filtre : sans réponse finale" in text
    assert "64 %" in text
    no_raw_values(text)


@pytest.mark.parametrize("value, shown", [(None, "—"), (float("nan"), "—"), (True, "oui"), (False, "non"), (6, "6"),
                                          (0.5, "0,5"), (0.3333, "0,333"), (265.5, "265,5"), (0.0, "0"), (-0.0001, "-1e-04"), (2e-4, "2e-04"),
                                          ("7/50", "7/50")])
def test_french_cells(value, shown):
    assert tables.french(value) == shown


def test_plan_costs_show_the_larger_plan_in_hours_from_the_runs_own_times(tmp_path):
    """A T4 run whose stage 2 trained in 30 min on 10 examples and whose 3-model evaluation took 15 min (invented)."""
    from dasd_utils.config import load_config
    from dasd_utils.data import write_jsonl
    from dasd_utils.jsonl import write_json_atomic
    from support.analyses_records import pool_records

    cfg = load_config("colab", run_dir=tmp_path / "run")
    run = cfg.run_dir
    write_json_atomic(run / "sft" / "stage2" / "manifest.json", {"wall_time_s": 1800, "dataset": {"n_examples": 10}})
    write_json_atomic(run / "timings.json", {"phases": {"evaluate": {"computed": {"wall_s": 900}}}})
    write_jsonl(run / "das" / "stage2.jsonl", pool_records(20))  # 20 answers in the pool
    write_jsonl(run / "data" / "eval.jsonl", [{"id": f"e{i}"} for i in range(50)])
    cfg.analyses.mixed_policy = cfg.analyses.provenance = cfg.analyses.mixed_control = False
    table = tables.plan_costs(cfg)
    default, larger = table.iloc[0], table.iloc[1]
    assert list(table.index) == ["plan de ce run", "plan étendu (3 graines aléatoires, pool entier)"]
    # default: one random seed = one training (1,800 s) + one model's evaluation (300 s)
    assert (default["graines"], default["pool entier"], default["minutes (estimation)"]) == ("1", False, 35)
    # larger: three seeds, and the whole pool (20 / 10 examples: twice the training) = 3 x 2,100 + 3,600 + 300 s
    assert (larger["graines"], larger["pool entier"], larger["heures (estimation)"]) == ("1, 2, 3", True, 2.8)
    cfg.analyses.random_seeds, cfg.analyses.full_pool = [1, 2, 3], True  # already the larger plan: one row
    assert list(tables.plan_costs(cfg).index) == ["plan de ce run"]
