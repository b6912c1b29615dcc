"""Small-sample statistics for the evaluation: Wilson intervals, exact McNemar tests, Holm correction,
and the exact test of one model against several others of the same kind (:func:`exact_contrast_test`).

With 50 evaluation items an accuracy of 36% has a 95% interval about 25 points wide, so every
accuracy we report carries its interval, and every difference between two models evaluated on
the same items is tested on the items where they disagree (McNemar's exact test).

Everything here is exact arithmetic on counts (``math.comb``), with no dependency beyond the
standard library; the tests check it against ``scipy.stats`` and published values.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist
from typing import Iterable, Sequence


def z_value(confidence: float = 0.95) -> float:
    """Return the two-sided standard-normal quantile for ``confidence`` (1.959964 for 95%)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` trials.

    Unlike the normal ("Wald") interval it never leaves [0, 1] and stays sensible near 0% and
    100% and for small ``n`` (Wilson 1927; Newcombe 1998, method 3). ``n == 0`` gives (0, 1):
    no data, no information.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = z_value(confidence)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp the rounding noise at the boundaries (0/n and n/n give exactly 0 and 1).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def binomial_two_sided_p(k: int, n: int) -> float:
    """Return the exact two-sided p-value of ``k`` successes in ``n`` fair-coin trials.

    For p = 1/2 the distribution is symmetric, so the two-sided p-value (sum of the
    probabilities no larger than that of ``k``) is twice the smaller tail, capped at 1.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1))
    p = Fraction(2 * tail, 2**n)
    return float(min(Fraction(1), p))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Return the exact McNemar p-value from the discordant counts of two paired classifiers.

    ``only_a``: items model A gets right and model B wrong; ``only_b``: the reverse. Under the
    null hypothesis (same accuracy) each discordant item is a fair coin, so the p-value is the
    two-sided exact binomial test of ``only_a`` among ``only_a + only_b`` at p = 1/2. Items both
    models get right (or both wrong) carry no information about the difference. No discordant
    item gives p = 1.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    return binomial_two_sided_p(only_a, only_a + only_b)


def paired_counts(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, int]:
    """Return the 2x2 table of two models on the same items: both / only_a / only_b / neither correct."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired comparison needs the same items: {len(correct_a)} vs {len(correct_b)} results")
    table = {"both_correct": 0, "only_a_correct": 0, "only_b_correct": 0, "both_wrong": 0}
    for a, b in zip(correct_a, correct_b):
        if a and b:
            table["both_correct"] += 1
        elif a:
            table["only_a_correct"] += 1
        elif b:
            table["only_b_correct"] += 1
        else:
            table["both_wrong"] += 1
    return table


def holm_adjust(p_values: Iterable[float]) -> list[float]:
    """Return Holm-Bonferroni adjusted p-values (same order as given), for several comparisons at once.

    Comparing three models makes three tests; the smallest raw p-value is multiplied by 3, the
    next by 2, the last by 1, and adjusted values are made monotone (Holm 1979). It controls the
    family-wise error rate without assuming independence.
    """
    p = list(p_values)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        value = min(1.0, (m - rank) * p[i])
        running = max(running, value)
        adjusted[i] = running
    return adjusted


def exact_contrast_test(reference: Sequence[bool], others: Sequence[Sequence[bool]]) -> dict[str, float | int]:
    """Return the exact two-sided test of one model against the mean of ``k`` others on the same items.

    ``reference[i]`` says whether the reference model (DAS) answers item ``i`` right, ``others[s][i]``
    whether the ``s``-th other model (a random subset drawn with seed ``s``) does. The statistic is
    ``T = sum_i (reference_i - mean_s others[s][i])``, the accuracy difference times the number of
    items. Under the null hypothesis the reference is one more model of the same kind (DAS selects
    no better than a random draw): on each item, which of the ``k + 1`` models carries the
    reference's label is uniform and independent of the other items, the assumption McNemar's
    test makes for two models. The p-value is ``P(|T| >= |t observed|)`` over all those
    relabellings, computed exactly by convolving the items' distributions (integer arithmetic).
    Items where the ``k + 1`` models agree contribute nothing. With ``k = 1`` it is McNemar's exact
    test (:func:`mcnemar_exact`).

    Returns ``{"k", "n", "informative", "statistic", "difference", "p"}``: ``informative`` items
    (where the models disagree), ``difference`` = ``T / n`` (reference's accuracy minus the others' mean).
    """
    k = len(others)
    if k == 0:
        raise ValueError("exact_contrast_test needs at least one other model")
    n = len(reference)
    if any(len(o) != n for o in others):
        raise ValueError("every model must be evaluated on the same items")
    # Integer scale: each item contributes (k + 1) * v_j - S, i.e. k * (v_j - mean of the others).
    distribution = {0: 1}
    observed = 0
    informative = 0
    for i in range(n):
        values = [bool(reference[i])] + [bool(o[i]) for o in others]
        total = sum(values)
        observed += (k + 1) * values[0] - total
        if total in (0, k + 1):
            continue
        informative += 1
        # Item i under the null: the reference is any of the k + 1 models, each with weight 1.
        outcomes = {(k + 1) - total: total, -total: (k + 1) - total}
        step: dict[int, int] = {}
        for value, ways in distribution.items():
            for shift, weight in outcomes.items():
                step[value + shift] = step.get(value + shift, 0) + ways * weight
        distribution = step
    denominator = (k + 1) ** informative
    extreme = sum(ways for value, ways in distribution.items() if abs(value) >= abs(observed))
    p = float(min(Fraction(1), Fraction(extreme, denominator)))
    return {"k": k, "n": n, "informative": informative, "statistic": observed / k,
            "difference": observed / k / n if n else 0.0, "p": p}


__all__ = [
    "binomial_two_sided_p",
    "exact_contrast_test",
    "holm_adjust",
    "mcnemar_exact",
    "paired_counts",
    "wilson_interval",
    "z_value",
]
