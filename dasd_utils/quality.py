"""The quality filter for teacher responses: every rejection comes with its reason.

Checks, in this order (the first failing one is the reason):

``empty``            no text at all (``content`` None or whitespace);
``too_short``        fewer than ``min_chars`` characters (30 in the course);
``no_final_answer``  no single clear "Final Answer: X" (see :func:`prompts.extract_answer`, strict);
``wrong_answer``     the answer differs from the gold label (``require_correct``, on by default;
                     the course did not check correctness);
``repetitive``       too many repeated word n-grams, as the DASD paper filters degenerate loops;
``too_long``         the full chat (prompt + response) is longer than the student's context.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable

from .config import QualityConfig
from .prompts import extract_answer

REASONS = ("empty", "too_short", "no_final_answer", "wrong_answer", "repetitive", "too_long")


@dataclass
class QualityVerdict:
    """The filter's decision for one response."""

    ok: bool
    reason: str | None
    answer: str | None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def repeated_ngram_ratio(text: str, n: int = 8) -> float:
    """Return the share of word n-grams in ``text`` that repeat an earlier n-gram (0 when too short)."""
    words = text.split()
    if len(words) < n + 1:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    repeats = sum(c - 1 for c in counts.values())
    return repeats / len(grams)


def check_response(
    content: str | None,
    gold: str | None,
    cfg: QualityConfig | None = None,
    count_tokens: Callable[[str], int] | None = None,
    max_context: int | None = None,
) -> QualityVerdict:
    """Return the verdict for one teacher response.

    ``count_tokens`` returns the student's token count of the *whole training example* for this
    response (chat template included); it and ``max_context`` are needed for the ``too_long``
    check, which is skipped (and says so in ``detail``) when they are not given.
    """
    cfg = cfg or QualityConfig()
    if content is None or not content.strip():
        return QualityVerdict(False, "empty", None)
    text = content.strip()
    if len(text) < cfg.min_chars:
        return QualityVerdict(False, "too_short", extract_answer(text, strict=True), f"{len(text)} < {cfg.min_chars} chars")
    answer = extract_answer(text, strict=True)
    if cfg.require_final_answer and answer is None:
        return QualityVerdict(False, "no_final_answer", None)
    if cfg.require_correct and gold is not None and answer != gold:
        return QualityVerdict(False, "wrong_answer", answer, f"answer {answer} != gold {gold}")
    ratio = repeated_ngram_ratio(text, cfg.repetition_ngram)
    if ratio > cfg.repetition_max_ratio:
        return QualityVerdict(
            False, "repetitive", answer, f"{ratio:.2f} of {cfg.repetition_ngram}-grams repeated > {cfg.repetition_max_ratio}"
        )
    detail = ""
    if cfg.check_student_context:
        if count_tokens is not None and max_context is not None:
            n_tokens = count_tokens(content)
            if n_tokens > max_context:
                return QualityVerdict(False, "too_long", answer, f"{n_tokens} tokens > {max_context}")
        else:
            detail = "context length not checked (no student tokenizer given)"
    return QualityVerdict(True, None, answer, detail)


__all__ = ["QualityVerdict", "REASONS", "check_response", "repeated_ngram_ratio"]
