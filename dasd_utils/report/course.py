"""The course report's published figures, and how this run's report sets itself beside them.

The course's TP4 report (« Rapport TP4 : Distillation de Séquences Alignées sur la Distribution »,
section 3.1 « Comparaison quantitative ») evaluates Qwen3-4B on the first 50 questions of
CommonsenseQA's validation split: 36 % for the base model, 82 % after stage 1 and 82 % after
stage 2. Those three numbers are the only figures typed by hand in this project; the report
shows them beside the run's own accuracies, never in place of them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..evaluation.metrics import always_same_letter
from ..stats import wilson_interval

#: Where the numbers below come from.
SOURCE = "rapport TP4 du cours (DASD, Qwen3-4B distillé de gpt-oss-120b), section « Résultats », tableau « Comparaison quantitative »"
#: The items the course evaluated: validation items 0 to 49 of CommonsenseQA.
SPLIT = "validation"
N_ITEMS = 50
#: Accuracy per model as published (percentages of 50 items: 18, 41 and 41 correct answers).
ACCURACY = {"base": 0.36, "stage1": 0.82, "stage2": 0.82}
LABELS = {"base": "Base", "stage1": "Stage 1", "stage2": "Stage 2 (DASD)"}


def course_correct(key: str) -> int:
    """Return the course's number of correct answers for a model (its accuracy × 50)."""
    return round(ACCURACY[key] * N_ITEMS)


def same_items(eval_split: str | None, eval_indices: Sequence[int] | None, n_items: int | None = None) -> bool:
    """Return True when the run evaluated exactly the course's items (validation 0 to 49).

    ``eval_indices`` is either every index or, as metrics.json stores it, ``[first, last]`` of a
    contiguous range of ``n_items`` questions.
    """
    indices = list(eval_indices or [])
    if eval_split != SPLIT:
        return False
    if indices == list(range(N_ITEMS)):
        return True
    return n_items == N_ITEMS and indices == [0, N_ITEMS - 1]


def comparison_rows(eval_models: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per course model: the course's accuracy and Wilson interval beside this run's (None where not evaluated)."""
    by_key = {m.get("key"): m for m in eval_models}
    rows = []
    for key, accuracy in ACCURACY.items():
        correct = course_correct(key)
        ours = by_key.get(key) or {}
        rows.append({
            "key": key,
            "label": LABELS[key],
            "course_accuracy": accuracy,
            "course_correct": correct,
            "course_n": N_ITEMS,
            "course_ci": list(wilson_interval(correct, N_ITEMS)),
            "accuracy": ours.get("accuracy"),
            "correct": ours.get("correct"),
            "n": ours.get("n"),
            "ci": ours.get("ci"),
            # True when the course's accuracy lies inside this run's interval.
            "course_inside_ci": None if not ours.get("ci") else ours["ci"][0] <= accuracy <= ours["ci"][1],
        })
    return rows


def report_context(metrics: Any, eval_models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the report's ``course`` values: the comparison table, whether the items match, and constant log-likelihood answers."""
    metrics = metrics if isinstance(metrics, Mapping) else {}
    return {
        "source": SOURCE,
        "n_items": N_ITEMS,
        "comparison": comparison_rows(eval_models),
        "same_items": same_items(metrics.get("eval_split"), metrics.get("eval_indices"), metrics.get("n_items")),
        "loglik_constant": always_same_letter(metrics),
    }


__all__ = ["ACCURACY", "LABELS", "N_ITEMS", "SOURCE", "SPLIT", "comparison_rows", "course_correct", "report_context",
           "same_items"]
