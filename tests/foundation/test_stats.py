"""Wilson intervals, exact McNemar p-values and Holm adjustment, checked against references."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from dasd_utils.stats import (
    binomial_two_sided_p,
    exact_contrast_test,
    holm_adjust,
    mcnemar_exact,
    paired_counts,
    wilson_interval,
    z_value,
)


def _wilson_by_quadratic(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Independent closed form: the roots p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    z = sps.norm.ppf(0.5 + confidence / 2)
    a = n + z * z
    b = -(2 * k + z * z)
    c = k * k / n
    disc = math.sqrt(b * b - 4 * a * c)
    return ((-b - disc) / (2 * a), (-b + disc) / (2 * a))


def test_z_value_95():
    assert z_value(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    with pytest.raises(ValueError):
        z_value(1.0)


@pytest.mark.parametrize("n", [1, 5, 20, 50, 263, 1221])
def test_wilson_matches_quadratic_roots_and_scipy(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ours = wilson_interval(k, n)
        quad = _wilson_by_quadratic(k, n)
        ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert ours[0] == pytest.approx(max(0.0, quad[0]), abs=1e-12)
        assert ours[1] == pytest.approx(min(1.0, quad[1]), abs=1e-12)
        assert ours[0] == pytest.approx(ref.low, abs=1e-12)
        assert ours[1] == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score, no continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # The course's base model: 18/50 = 36% (rapport TP4); about +/- 13 points.
        (18, 50, 0.2414, 0.4986),
    ],
)
def test_wilson_published_values(k, n, low, high):
    ours = wilson_interval(k, n)
    assert round(ours[0], 4) == pytest.approx(low, abs=1e-9)
    assert round(ours[1], 4) == pytest.approx(high, abs=1e-9)


def test_wilson_course_numbers_overlap():
    """82% and 36% on 50 items: disjoint intervals; 82% vs 82% says nothing about a difference."""
    base = wilson_interval(18, 50)
    stage1 = wilson_interval(41, 50)
    assert base[1] < stage1[0]
    assert stage1 == pytest.approx((0.6920, 0.9023), abs=1e-4)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    for bad in [(-1, 5), (6, 5), (1, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 0), (2, 25), (25, 2), (5, 5), (3, 9), (10, 20), (0, 40), (61, 80)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    ours = mcnemar_exact(b, c)
    if b + c == 0:
        assert ours == 1.0
        return
    ref = sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_mcnemar_is_symmetric_and_known_value():
    assert mcnemar_exact(3, 9) == mcnemar_exact(9, 3)
    # 3 vs 9 discordant: 2 * P(X <= 3), X ~ Bin(12, 1/2) = 2 * 299 / 4096
    assert mcnemar_exact(3, 9) == pytest.approx(2 * 299 / 4096, rel=1e-15)
    assert binomial_two_sided_p(6, 12) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_counts():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert paired_counts(a, b) == {"both_correct": 1, "only_a_correct": 2, "only_b_correct": 1, "both_wrong": 1}
    with pytest.raises(ValueError):
        paired_counts([True], [True, False])


def test_holm_adjust():
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> monotone 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []
    assert holm_adjust([0.2]) == pytest.approx([0.2])


# --------------------------------------------------------------------------- one model against k others
def _brute_force_contrast(reference, others):
    """Enumerate every relabelling (which model is the reference, item by item): the exact p by definition."""
    import itertools

    k = len(others)
    columns = [[reference[i]] + [o[i] for o in others] for i in range(len(reference))]

    def statistic(choice):
        return sum(col[j] - (sum(col) - col[j]) / k for col, j in zip(columns, choice))

    observed = statistic([0] * len(columns))
    choices = list(itertools.product(range(k + 1), repeat=len(columns)))
    return sum(abs(statistic(c)) >= abs(observed) - 1e-12 for c in choices) / len(choices)


@pytest.mark.parametrize("b, c", [(0, 0), (3, 0), (7, 2), (12, 5), (1, 9)])
def test_contrast_with_one_other_model_is_mcnemars_exact_test(b, c):
    reference = [True] * b + [False] * c + [True] * 4 + [False] * 3
    other = [False] * b + [True] * c + [True] * 4 + [False] * 3
    result = exact_contrast_test(reference, [other])
    assert result["p"] == pytest.approx(mcnemar_exact(b, c), abs=1e-15)
    assert result["informative"] == b + c and result["difference"] == pytest.approx((b - c) / len(reference))


@pytest.mark.parametrize("seed", range(6))
def test_contrast_with_several_models_matches_full_enumeration(seed):
    import random

    rng = random.Random(seed)
    n, k = 7, 1 + seed % 3
    reference = [rng.random() < 0.6 for _ in range(n)]
    others = [[rng.random() < 0.4 for _ in range(n)] for _ in range(k)]
    assert exact_contrast_test(reference, others)["p"] == pytest.approx(_brute_force_contrast(reference, others), abs=1e-12)


def test_contrast_pools_the_seeds_instead_of_picking_the_best_one():
    # DAS right on 6 items where each of three random draws fails on only 2 of them: no single pair is
    # significant, and neither is the pooled test; a clear gap over all three draws is.
    reference = [True] * 30
    weak = [[i % 3 != s for i in range(6)] + [True] * 24 for s in range(3)]
    assert exact_contrast_test(reference, weak)["p"] > 0.05
    strong = [[False] * 9 + [True] * 21 for _ in range(3)]
    result = exact_contrast_test(reference, strong)
    assert result["p"] < 0.01 and result["difference"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        exact_contrast_test(reference, [])
    with pytest.raises(ValueError):
        exact_contrast_test(reference, [[True]])
