"""Evaluation without a model: extraction into prediction records, metrics, paired tests, qualitative items."""

from __future__ import annotations

import json

import pytest
from scipy import stats as sps

from dasd_utils import evaluation
from dasd_utils.data import load_split, write_jsonl
from dasd_utils.evaluation import (
    AdapterMissing,
    compare_models,
    loglik_context,
    loglik_record,
    metrics_table,
    model_metrics,
    prediction_record,
    qualitative_examples,
    resolve_eval_models,
)
from dasd_utils.prompts import LETTERS


@pytest.fixture(scope="module")
def rows():
    """The demo's evaluation items: bundled validation items 0-49 (index 49 is the crab question)."""
    return [dict(r, split="validation", index=i) for i, r in enumerate(load_split("bundled", "validation")[:50])]


def _wrong(gold: str) -> str:
    return LETTERS[(LETTERS.index(gold) + 1) % 5]


def test_prediction_record_extraction(rows):
    row = rows[49]
    assert row["answerKey"] == "C" and "crab" in row["question"]
    cases = [
        ("<reasoning>A fishmonger sells crabs.</reasoning>\nFinal Answer: C", "C", True, True),
        ("<reasoning>...</reasoning>\n**Final Answer:** (c).", "C", True, True),
        ("I think the answer is C.", "C", True, False),  # lenient extraction, not the asked format
        ("<reasoning>hmm</reasoning>\nFinal Answer: B", "B", False, True),
        ("Final Answer: A ... no wait, Final Answer: C", None, False, False),  # ambiguous
        ("<reasoning>I am not sure", None, False, False),  # truncated, no answer
        ("", None, False, False),
        (None, None, False, False),
    ]
    for response, extracted, correct, format_ok in cases:
        rec = prediction_record(row, response, model="m")
        assert rec["extracted"] == extracted, response
        assert rec["correct"] is correct, response
        assert rec["format_ok"] is format_ok, response
        assert rec["gold"] == "C" and rec["index"] == 49 and rec["question_id"] == row["id"]
        assert rec["model"] == "m"


def _fixed_predictions(rows):
    """Three models on the 50 items with known outcomes built from raw responses.

    base:   correct on items 0-17 (18/50 = 36%, the course's base), wrong letter on 18-39,
            no answer on 40-44, lenient "answer is X" (correct, format not ok) never.
    stage1: correct on 0-9 and 18-48 (41/50 = 82%), wrong on 10-14, no answer on 15-17, 49;
            items 45-48 correct but without the "Final Answer" format.
    stage2: correct on 0-40 (41/50), wrong elsewhere.
    """
    def resp(letter, fmt=True):
        return f"<reasoning>r</reasoning>\nFinal Answer: {letter}" if fmt else f"So the answer is {letter}."

    base, stage1, stage2 = [], [], []
    for i, row in enumerate(rows):
        g = row["answerKey"]
        if i < 18:
            b = resp(g)
        elif i < 40:
            b = resp(_wrong(g))
        elif i < 45:
            b = "<reasoning>I cannot decide"
        else:
            b = resp(_wrong(g))
        base.append(prediction_record(row, b, finish_reason="length" if 40 <= i < 45 else "stop", n_new_tokens=10))
        if i < 10 or 18 <= i < 45:
            s1 = resp(g)
        elif 45 <= i < 49:
            s1 = resp(g, fmt=False)
        elif i < 15:
            s1 = resp(_wrong(g))
        else:
            s1 = "nothing useful"
        stage1.append(prediction_record(row, s1, finish_reason="stop", n_new_tokens=20))
        stage2.append(prediction_record(row, resp(g) if i <= 40 else resp(_wrong(g)), finish_reason="stop", n_new_tokens=30))
    return {"base": base, "stage1": stage1, "stage2": stage2}


def test_model_metrics_on_fixed_predictions(rows):
    preds = _fixed_predictions(rows)
    m = model_metrics(preds["base"])
    assert (m["n"], m["correct"]) == (50, 18)
    assert m["accuracy"] == pytest.approx(0.36)
    ref = sps.binomtest(18, 50).proportion_ci(method="wilson")
    assert m["ci95"] == pytest.approx([ref.low, ref.high], abs=1e-12)
    assert m["format_ok"] == 45 and m["format_rate"] == pytest.approx(0.9)
    assert m["answer_distribution"]["none"] == 5
    assert sum(m["answer_distribution"].values()) == 50
    # the distribution counts the letters actually extracted
    expected = {letter: 0 for letter in LETTERS}
    for i, row in enumerate(rows):
        if i < 18:
            expected[row["answerKey"]] += 1
        elif not 40 <= i < 45:
            expected[_wrong(row["answerKey"])] += 1
    assert {k: m["answer_distribution"][k] for k in LETTERS} == expected
    assert m["truncated"] == 5 and m["mean_new_tokens"] == 10

    s1 = model_metrics(preds["stage1"])
    assert (s1["correct"], s1["format_ok"]) == (41, 50 - 4 - 4)  # 4 lenient + 4 without any answer
    assert s1["answer_distribution"]["none"] == 4
    assert s1["extracted_rate"] == pytest.approx(46 / 50)
    assert s1["loglik_accuracy"] is None


def test_paired_comparisons_on_fixed_predictions(rows):
    preds = _fixed_predictions(rows)
    comps = {(c["a"], c["b"]): c for c in compare_models(preds)}
    assert list(comps) == [("base", "stage1"), ("base", "stage2"), ("stage1", "stage2")]
    c = comps[("base", "stage1")]
    # base alone is right on 10-17; stage1 alone on 18-48 (45-48 through lenient extraction)
    only_a = sum(1 for a, b in zip(preds["base"], preds["stage1"]) if a["correct"] and not b["correct"])
    only_b = sum(1 for a, b in zip(preds["base"], preds["stage1"]) if b["correct"] and not a["correct"])
    assert (c["only_a_correct"], c["only_b_correct"]) == (only_a, only_b) == (8, 31)
    assert c["both_correct"] == 10 and c["both_wrong"] == 1 and c["n"] == 50
    assert c["difference"] == pytest.approx(0.82 - 0.36)
    assert c["mcnemar_p"] == pytest.approx(sps.binomtest(8, 39, 0.5).pvalue, rel=1e-12)
    same = comps[("stage1", "stage2")]
    # both 41/50 but on different items: stage1 alone on 41-48, stage2 alone on 10-17
    assert (same["only_a_correct"], same["only_b_correct"]) == (8, 8)
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0 and not same["significant"]
    smallest = min(comps.values(), key=lambda x: x["mcnemar_p"])
    assert smallest["mcnemar_p_holm"] == pytest.approx(min(1.0, 3 * smallest["mcnemar_p"]))
    assert all(x["mcnemar_p_holm"] >= x["mcnemar_p"] for x in comps.values())


def test_compare_models_needs_the_same_items(rows):
    preds = _fixed_predictions(rows)
    with pytest.raises(ValueError, match="same items"):
        compare_models({"base": preds["base"], "stage1": preds["stage1"][:-1]})


def test_loglik_context_is_the_harness_prompt(rows):
    crab = rows[49]
    assert loglik_context(crab) == (
        "Question: Who is likely to be excited about a crab?\n"
        "A. fish market\nB. pet shop\nC. fishmongers\nD. intertidal zone\nE. obesity\nAnswer:"
    )
    rec = loglik_record(crab, [-3.0, -2.0, -0.5, -4.0, -9.0])
    assert rec["predicted"] == "C" and rec["correct"] and rec["logprobs"]["E"] == -9.0
    m = model_metrics(_fixed_predictions(rows)["base"], [loglik_record(r, [0, -1, -1, -1, -1]) for r in rows])
    n_a = sum(1 for r in rows if r["answerKey"] == "A")
    assert m["loglik_correct"] == n_a and m["loglik_accuracy"] == pytest.approx(n_a / 50)
    assert m["loglik_distribution"] == {"A": 50, "B": 0, "C": 0, "D": 0, "E": 0}


def test_metrics_table_and_qualitative(rows, demo_cfg):
    preds = _fixed_predictions(rows)
    results = {name: {"predictions": p, "loglik": None, "adapter": None} for name, p in preds.items()}
    metrics = evaluation.compute_metrics(demo_cfg, results, rows)
    assert metrics["stand_in"] is True and "NOT the course" in metrics["note"]
    assert metrics["n_items"] == 50 and metrics["eval_indices"] == [0, 49]
    json.dumps(metrics)  # serialisable
    table = metrics_table(metrics)
    assert list(table.index) == ["base", "stage1", "stage2"]
    assert table.loc["base", "exactitude"] == 0.36
    assert table.loc["stage1", "IC 95 % bas"] == round(sps.binomtest(41, 50).proportion_ci(method="wilson").low, 3)
    comp = evaluation.comparisons_table(metrics)
    assert comp.shape[0] == 3

    qual = qualitative_examples(demo_cfg, rows, preds)
    assert qual["highlight"]["index"] == 49 and qual["highlight"]["gold"] == "C"
    assert set(qual["highlight"]["answers"]) == {"base", "stage1", "stage2"}
    assert len(qual["random"]) == demo_cfg.eval.n_random_examples
    assert all(item["index"] != 49 for item in qual["random"])
    again = qualitative_examples(demo_cfg, rows, preds)
    assert [i["index"] for i in again["random"]] == [i["index"] for i in qual["random"]]


def test_missing_adapter_names_the_phase(demo_cfg):
    with pytest.raises(AdapterMissing) as err:
        resolve_eval_models(demo_cfg)
    msg = str(err.value)
    assert "stage1" in msg and "'train' phase" in msg and str(demo_cfg.run_dir) in msg
    demo_cfg.eval.models = ["base", "/nonexistent/adapter"]
    with pytest.raises(AdapterMissing, match="nonexistent"):
        resolve_eval_models(demo_cfg)
    demo_cfg.eval.models = ["base"]
    assert [m.name for m in resolve_eval_models(demo_cfg)] == ["base"]


def test_run_phase_checks_adapters_before_loading(demo_cfg):
    write_jsonl(demo_cfg.run_dir / "data" / "eval.jsonl", [])
    with pytest.raises(AdapterMissing, match="stage1"):
        evaluation.run_phase(demo_cfg)
