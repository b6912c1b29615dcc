"""The DAS rules: which sentences are the teacher's, and which examples are kept.

Every sentence has the teacher's probability ``P_T`` and the student's ``P_S`` (``P = exp(mean
token logprob)`` over the sentence's tokens). Thresholds come from
:class:`~dasd_utils.config.DASConfig` (the course's values):

* ``teacher``: ``P_T > 0.6`` and ``P_T - P_S > 0.2`` — the teacher is confident and the student
  is not: the sentence carries what the student has to learn;
* ``student``: ``P_S > 0.6`` and ``P_S - P_T > 0.2`` — the mirror case: the student's own way of
  saying it, which the teacher would not favour;
* ``shared``: everything else (both confident, both unsure, or close).

An example is kept when its share of teacher sentences is above ``das.keep_ratio_threshold``.
"Greater than" is strict, and a value within ``1e-9`` of its threshold counts as *on* it (so the
floating-point result of ``0.8 - 0.6`` is not above ``0.2``): an example whose
``teacher_sentence_ratio`` is exactly ``0.3`` is rejected.

Provenance with a third model (``P_D``: the distilled student), **this project's reading** of the
DASD paper's analysis of where the distilled student's sentences come from (section 4: teacher /
student sentences when P_T and P_S are far apart, shared when all three are close, boosted when
P_T is close to P_S and P_D much higher). With ``τ`` = ``teacher_prob_threshold`` (0.6) and ``δ`` =
``divergence_threshold`` (0.2), "close" meaning a gap of at most ``δ``, in this order:

* ``teacher``: ``P_T > τ`` and ``P_T - P_S > δ`` (the DAS rule);
* ``student``: ``P_S > τ`` and ``P_S - P_T > δ``;
* ``boosted``: P_T and P_S close, ``P_D > τ`` and ``P_D - max(P_T, P_S) > δ`` (training made it likely);
* ``shared``: all three close (largest minus smallest at most ``δ``);
* ``other``: what none of these rules describes (P_T and P_S far apart but neither above ``τ``,
  P_D far from two close models without being a boosted sentence...). It is counted, never folded
  into ``shared``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..config import DASConfig

SENTENCE_TYPES = ("teacher", "shared", "student")
PROVENANCE_TYPES = ("teacher", "boosted", "shared", "student", "other")
#: Values within this distance of a threshold count as equal to it (not strictly above).
THRESHOLD_TOLERANCE = 1e-9


def _above(value: float, threshold: float) -> bool:
    return value > threshold + THRESHOLD_TOLERANCE


def classify_sentence(p_teacher: float, p_student: float, cfg: DASConfig | None = None) -> str:
    """Return ``teacher``, ``shared`` or ``student`` for one sentence (rules in the module docstring)."""
    cfg = cfg or DASConfig()
    if _above(p_teacher, cfg.teacher_prob_threshold) and _above(p_teacher - p_student, cfg.divergence_threshold):
        return "teacher"
    if _above(p_student, cfg.teacher_prob_threshold) and _above(p_student - p_teacher, cfg.divergence_threshold):
        return "student"
    return "shared"


def provenance(p_teacher: float, p_student: float, p_distilled: float, cfg: DASConfig | None = None) -> str:
    """Return ``teacher``, ``student``, ``boosted``, ``shared`` or ``other`` (provenance rules, module docstring)."""
    cfg = cfg or DASConfig()
    base = classify_sentence(p_teacher, p_student, cfg)
    if base != "shared":
        return base
    delta = cfg.divergence_threshold
    close = not _above(abs(p_teacher - p_student), delta)
    if close and _above(p_distilled, cfg.teacher_prob_threshold) and _above(p_distilled - max(p_teacher, p_student), delta):
        return "boosted"
    values = (p_teacher, p_student, p_distilled)
    if not _above(max(values) - min(values), delta):
        return "shared"
    return "other"


def classify_sentences(
    p_teacher: Sequence[float],
    p_student: Sequence[float],
    cfg: DASConfig | None = None,
    p_distilled: Sequence[float] | None = None,
) -> list[str]:
    """Return one label per sentence: the three DAS types, or the four-way provenance when ``p_distilled`` is given."""
    if len(p_teacher) != len(p_student) or (p_distilled is not None and len(p_distilled) != len(p_teacher)):
        raise ValueError("p_teacher, p_student (and p_distilled) must have one value per sentence")
    for name, values in (("p_teacher", p_teacher), ("p_student", p_student), ("p_distilled", p_distilled or [])):
        for v in values:
            if v is None or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} holds {v!r}: sentence probabilities must be numbers in [0, 1]")
    if p_distilled is None:
        return [classify_sentence(t, s, cfg) for t, s in zip(p_teacher, p_student)]
    return [provenance(t, s, d, cfg) for t, s, d in zip(p_teacher, p_student, p_distilled)]


def teacher_sentence_ratio(types: Sequence[str]) -> float:
    """Return the share of ``teacher`` sentences (an example needs at least one sentence)."""
    if not types:
        raise ValueError("teacher_sentence_ratio needs at least one sentence")
    return sum(t == "teacher" for t in types) / len(types)


def ratio_without_final(sentences: Sequence[Mapping[str, Any]]) -> float | None:
    """Return the teacher-sentence ratio over the sentences that are not the final-answer line (None if none is left).

    Reported next to ``teacher_sentence_ratio`` (which the keep rule uses, as in the course): the
    "Final Answer: X" line is one sentence of a few tokens that both models predict easily, so it
    moves the ratio of a short answer without saying anything about its reasoning.
    """
    types = [s["type"] for s in sentences if not s.get("final_answer")]
    return teacher_sentence_ratio(types) if types else None


def keep_example(ratio: float, cfg: DASConfig | None = None) -> bool:
    """Return True when the example's teacher-sentence ratio is strictly above the keep threshold."""
    cfg = cfg or DASConfig()
    return _above(ratio, cfg.keep_ratio_threshold)


__all__ = [
    "PROVENANCE_TYPES",
    "SENTENCE_TYPES",
    "THRESHOLD_TOLERANCE",
    "classify_sentence",
    "classify_sentences",
    "keep_example",
    "provenance",
    "ratio_without_final",
    "teacher_sentence_ratio",
]
