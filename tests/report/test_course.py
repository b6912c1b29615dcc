"""dasd_utils.course: the course report's published figures beside this run's."""

from __future__ import annotations

import pytest

from dasd_utils import report
from dasd_utils.report import course


def test_published_figures_and_their_counts():
    assert course.ACCURACY == {"base": 0.36, "stage1": 0.82, "stage2": 0.82}
    assert [course.course_correct(k) for k in course.ACCURACY] == [18, 41, 41]
    assert "rapport TP4" in course.SOURCE


def test_same_items_accepts_every_index_or_the_stored_range():
    assert course.same_items("validation", list(range(50)))
    assert course.same_items("validation", [0, 49], 50)
    assert not course.same_items("validation", [0, 99], 100)
    assert not course.same_items("train", [0, 49], 50)


def test_comparison_rows_put_the_run_beside_the_course():
    models = [{"key": "base", "accuracy": 0.3, "correct": 15, "n": 50, "ci": [0.19, 0.44]},
              {"key": "stage1", "accuracy": 0.8, "correct": 40, "n": 50, "ci": [0.67, 0.89]}]
    rows = {r["key"]: r for r in course.comparison_rows(models)}
    assert rows["base"]["course_ci"] == pytest.approx(report.wilson_interval(18, 50))
    assert rows["base"]["course_inside_ci"] is True and rows["stage1"]["course_inside_ci"] is True
    assert rows["stage2"]["accuracy"] is None and rows["stage2"]["course_inside_ci"] is None


def test_report_context_flags_a_constant_loglik_letter():
    metrics = {"eval_split": "validation", "eval_indices": [0, 49], "n_items": 50,
               "models": {"base": {"loglik_distribution": {"A": 50, "B": 0}}}}
    context = course.report_context(metrics, [])
    assert context["same_items"] and context["loglik_constant"] == {"base": "A"}
    assert len(context["comparison"]) == 3
