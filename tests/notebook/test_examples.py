"""The notebooks' worked examples: pure helpers of dasd_utils.teaching on hand-made records."""

from __future__ import annotations

import pytest

from dasd_utils.notebook import examples as teaching
from dasd_utils.config import DASConfig
from dasd_utils.das import classify_sentence


def _sentence(text, p_t, p_s, cfg=None):
    return {"text": text, "p_teacher": p_t, "p_student": p_s, "type": classify_sentence(p_t, p_s, cfg)}


def _record(*probs, keep=None):
    sentences = [_sentence(f"s{i}", t, s) for i, (t, s) in enumerate(probs)]
    return {"scorable": True, "sentences": sentences, "keep": keep}


def course_rule(p_t, p_s, t=0.6, d=0.2):
    if p_t > t and p_t - p_s > d:
        return "teacher"
    if p_s > t and p_s - p_t > d:
        return "student"
    return "shared"


def test_sentence_table_names_types_in_french():
    table = teaching.sentence_table(_record((0.9, 0.1), (0.1, 0.9), (0.2, 0.2)))
    assert list(table["type"]) == ["professeur", "élève", "partagée"]
    assert list(table.columns) == ["phrase", "P_T", "P_S", "P_T − P_S", "type"]
    assert table["P_T − P_S"].iloc[0] == pytest.approx(0.8)


def test_check_rule_agrees_and_reports_a_wrong_rule():
    records = [_record((0.9, 0.1), (0.1, 0.9), (0.2, 0.2), (0.7, 0.55)), {"scorable": False, "sentences": []}]
    good = teaching.check_rule(course_rule, records)
    assert good["sentences"] == 4 and good["same_as_package"] == 4 and good["disagreements"] == []
    # « partagée » read as "probable for both": the sentence unlikely for both is misclassified
    bad = teaching.check_rule(lambda t, s: "teacher" if t > 0.6 and t - s > 0.2 else ("shared" if t > 0.6 and s > 0.6 else "student"), records)
    assert bad["same_as_package"] < 4 and bad["disagreements"]


def test_keep_decision_and_threshold_sweep():
    kept = _record((0.9, 0.1), (0.2, 0.2), keep=True)        # ratio 0.5
    rejected = _record((0.9, 0.1), (0.2, 0.2), (0.2, 0.2), (0.3, 0.3), keep=False)  # ratio 0.25
    decision = teaching.keep_decision(kept, DASConfig())
    assert decision["ratio"] == 0.5 and decision["gardé (recalculé)"] and decision["gardé (enregistré)"]
    assert teaching.count_kept([kept, rejected], DASConfig()) == 1
    sweep = teaching.kept_by_thresholds([kept, rejected], DASConfig(), values=(0.2, 0.3, 0.5))
    assert sweep.iloc[0].tolist() == [2, 1, 0]
    grid = teaching.kept_grid([kept, rejected], DASConfig(), p_values=(0.6, 0.95), divergences=(0.2,))
    assert grid.iloc[:, 0].tolist() == [1, 0]


def test_loss_mask_text_brackets_supervised_runs():
    assert teaching.loss_mask_text(["sys", " q", " a", " b", "<end>", "\n"], [-100, -100, 5, 6, 7, -100]) == "sys q⟦ a b<end>⟧\n"
    assert teaching.loss_mask_text(["x", "y"], [1, 2]) == "⟦xy⟧"


def test_paired_table_and_mcnemar_match_stats():
    from dasd_utils.stats import mcnemar_exact

    a = [True, True, False, False, True, False]
    b = [True, False, True, True, False, False]
    table = teaching.paired_table(a, b, "base", "stage1")
    assert table.loc["base juste", "stage1 juste"] == 1
    assert table.loc["base juste", "stage1 faux"] == 2
    assert table.loc["base faux", "stage1 juste"] == 2
    assert table.loc["base faux", "stage1 faux"] == 1
    assert teaching.mcnemar_from_table(table) == pytest.approx(mcnemar_exact(2, 2))
    pairs = teaching.paired_tables({
        "x": [{"question_id": "q1", "correct": True}, {"question_id": "q2", "correct": False}],
        "y": [{"question_id": "q2", "correct": True}, {"question_id": "q1", "correct": True}],
    })
    assert pairs[0]["table"].loc["x faux", "y juste"] == 1


def test_constant_letter_flags_a_model_that_always_answers_the_same():
    assert teaching.constant_letter({"A": 50, "B": 0, "C": 0, "D": 0, "E": 0}) == "A"
    assert teaching.constant_letter({"A": 40, "B": 10}) is None
    assert teaching.constant_letter({"A": 40, "none": 10}) is None
    metrics = {"models": {"base": {"loglik_distribution": {"A": 3}}, "s1": {"loglik_distribution": {"A": 2, "C": 1}}}}
    assert teaching.always_same_letter(metrics) == {"base": "A"}


def test_answer_check_reruns_extract_answer():
    check = teaching.answer_check({"response": "<reasoning>x</reasoning>\nFinal Answer: C", "extracted": "C", "gold": "C"})
    assert check["extract_answer(réponse)"] == "C" and check["identique"] and check["correcte"]


def test_quality_verdicts_and_cost_in_french():
    records = [
        {"question_index": 3, "sample_index": 0, "gold": "B", "kept": False, "quality": {"ok": False, "reason": "wrong_answer", "answer": "C"}, "latency_s": 1.5},
        {"question_index": 3, "sample_index": 1, "gold": "B", "kept": True, "quality": {"ok": True, "reason": None, "answer": "B"}, "latency_s": 2.0},
    ]
    table = teaching.quality_verdicts(records)
    assert list(table["verdict"]) == ["rejetée", "gardée"]
    assert table["raison"].iloc[0] == "mauvaise réponse"
    records.append({"question_index": 4, "sample_index": 0, "gold": "A", "kept": False, "quality": {"ok": False, "reason": "no_final_answer", "answer": None}})
    assert teaching.quality_verdicts(records)["réponse"].iloc[2] == "—"
    cost = teaching.teacher_cost({"stages": {"stage1": {"questions": 1, "requests": 2, "usage": {"prompt_tokens": 10, "completion_tokens": 4}, "sent": 0, "reused": 2}}})
    assert cost.loc["requêtes (au total)", "stage 1"] == 2


def test_stage_start_table_checks_the_parent_adapter():
    # Complete manifests as sft.train_stage writes them (summaries.SftManifest's required fields).
    common = {"base_model": "m", "data_sha256": "d", "epochs": 2.0, "first_loss": 2.5, "final_loss": 1.25,
              "tokens_per_s": 100.0, "wall_time_s": 10.0}
    manifests = {
        1: {**common, "stage": 1, "parent_adapter": None, "data_path": "das/stage1_sft.jsonl",
            "dataset": {"n_examples": 44}, "learning_rate": 2e-4, "steps": 18},
        2: {**common, "stage": 2, "parent_adapter": {"path": "sft/stage1", "sha256": "abc"}, "data_path": "das/stage2_sft.jsonl",
            "dataset": {"n_examples": 15}, "learning_rate": 1e-4, "steps": 6},
    }
    table = teaching.stage_start_table(manifests, "abc")
    assert table.loc["part de", "stage 2"] == "adaptateur sft/stage1"
    assert table.loc["parent = adaptateur actuel du stage 1", "stage 2"] == "oui"
    assert table.loc["exemples", "stage 1"] == "44" and table.loc["taux d'apprentissage", "stage 1"] == "2e-04"


# ------------------------------------------------------------------------------ 03: the final-answer line
def _answer(*sentences, keep=None):
    """A scored response from (text, P_T, P_S, final?) tuples."""
    out = []
    for text, p_t, p_s, final in sentences:
        out.append(dict(_sentence(text, p_t, p_s), final_answer=final))
    return {"scorable": True, "sentences": out, "keep": keep}


def test_final_line_weight_recomputes_the_ratio_without_the_answer_lines():
    short = _answer(("Shops sell dresses.", 0.4, 0.1, False), ("So the answer is C.", 0.7, 0.15, False),
                    ("Final Answer: C", 0.93, 0.15, True))
    reasoned = _answer(("A crab lives in water.", 0.9, 0.2, False), ("Fishmongers sell crabs.", 0.3, 0.3, False),
                       ("Final Answer: C", 0.95, 0.1, True))
    w = teaching.final_line_weight([short, reasoned, {"scorable": False}], DASConfig())
    assert w["scored"] == 2 and w["mean_sentences"] == 3
    ratios = list(w["ratio"].values())
    assert ratios[0] == pytest.approx(2 / 3) and ratios[1] == pytest.approx(0.5) and ratios[2] == pytest.approx(0.25)
    assert list(w["kept"].values()) == [2, 2, 1]  # without the answer lines, only the reasoned answer stays
    assert w["teacher_sentences"] == {"final": 2, "conclusion": 1, "reasoning": 1}
    table = teaching.final_line_table({2: [short, reasoned]}, DASConfig())
    assert table.loc["réponses gardées, sans la ligne finale ni la conclusion", "stage 2"] == "1"
    assert table.loc["taux de phrases professeur, toutes les phrases (règle du cours)", "stage 2"] == "0,667"


def test_sentence_role():
    assert teaching.sentence_role({"text": "Final Answer: C", "final_answer": True}) == "final"
    assert teaching.sentence_role({"text": "The correct answer is E (bored)."}) == "conclusion"
    assert teaching.sentence_role({"text": "A crab is an animal."}) == "reasoning"


# ------------------------------------------------------------------------------ 06: McNemar written out
@pytest.mark.parametrize("b, c, p", [(1, 3, "0,625"), (0, 9, "0,0039"), (2, 2, "1"), (3, 4, "1"), (0, 1, "1")])
def test_mcnemar_formula_gives_the_package_p_value(b, c, p):
    from dasd_utils.stats import mcnemar_exact

    text = teaching.mcnemar_formula(b, c)
    assert text.endswith(f"p = {p}") or f"p = {p} (plafonnée à 1)" in text
    assert float(p.replace(",", ".")) == pytest.approx(mcnemar_exact(b, c), abs=5e-5)
    assert f"Bin({b + c}, ½) ≤ {min(b, c)}" in text


def test_mcnemar_formula_on_the_issue_example_and_without_discordant_questions():
    assert teaching.mcnemar_formula(1, 3) == ("n = 1 + 3 = 4 questions discordantes, k = min = 1 : p = 2·P(Bin(4, ½) ≤ 1) "
                                              "= 2 × (C(4,0) + C(4,1)) / 2^4 = 2 × 5/16 → p = 0,625")
    assert "n = 0" in teaching.mcnemar_formula(0, 0) and teaching.mcnemar_formula(0, 0).endswith("p = 1")
