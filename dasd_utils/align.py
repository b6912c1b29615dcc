"""The DAS alignment rule: which tokens belong to which sentence, and a sentence's probability.

The teacher (API tokens, e.g. gpt-oss) and the student (a local HF tokenizer, e.g. Qwen3) cut the
same response into different tokens, so tokens are never counted or re-joined: both models' tokens
are character spans of the response text, and sentences are character spans too
(:mod:`dasd_utils.segment`).

Token-to-sentence rule (:func:`assign_tokens`), the same for both tokenizers: a token belongs
to the **first sentence its span overlaps** by at least one character. Sentences are trimmed
spans, so ``" The"`` (the space lies between sentences) belongs to the sentence starting with
"The", ``".\\n\\n"`` to the sentence its period ends, ``"<reasoning> Cr"`` to the sentence
starting with "Cr", and a token straddling two sentences (``"e.The"``, no space) to the first
one. Tokens that overlap no sentence (whitespace between sentences, a ``<reasoning>`` tag, a
``---`` line) belong to none and are not scored.

A sentence's probability for a model is ``exp(mean(logprob))`` over its tokens: the geometric
mean of the token probabilities (:func:`sentence_probability`; :func:`sentence_stats` for every
sentence at once).

Where the spans come from: the student's from its fast tokenizer's offsets
(:mod:`dasd_utils.scoring`); the teacher's from whatever its provider returned
(:mod:`dasd_utils.token_recovery`). A response whose tokens cannot be placed exactly raises
:class:`UnscorableError` with a counted reason: it is excluded, never given a made-up probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Reasons for excluding a response from DAS, counted in ``das/summary.json``.
UNSCORABLE_REASONS = (
    "no_logprobs",  # the record's tokens are null / empty: the provider returned no logprobs
    "invalid_logprob",  # a token's logprob is missing, not a number, NaN or above 0 (beyond rounding)
    "tokens_mismatch",  # the tokens (and their bytes) do not reproduce the content
    "no_sentences",  # the response has no sentence (only markup / symbols)
    "no_student_tokens",  # the student tokenizer gave no token inside any sentence
    "no_teacher_tokens",  # no teacher token falls inside any sentence
    "no_reasoning",  # teacher.reasoning_source=analysis: the record has no analysis text or no Final Answer line
    "no_reasoning_logprobs",  # teacher.reasoning_source=analysis: no logprobs located on the analysis text
)


class UnscorableError(ValueError):
    """A response cannot be scored; ``reason`` is one of :data:`UNSCORABLE_REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in UNSCORABLE_REASONS:
            raise ValueError(f"unknown unscorable reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class TeacherTokens:
    """Teacher tokens of one response: character spans and log-probabilities."""

    starts: np.ndarray  # int64 [n]
    ends: np.ndarray  # int64 [n]
    logprobs: np.ndarray  # float64 [n]
    #: "text" when the token strings reproduced the content, "bytes" when the bytes did,
    #: "located" when the content's run was recovered inside a longer / lossy stream.
    method: str
    #: What was done to get there (tokens dropped around the content, pieces matched, clipping).
    note: str | None = None


def assign_tokens(
    sentence_starts: Sequence[int], sentence_ends: Sequence[int], starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Return, for each token, the index of the first sentence its span overlaps (-1 for none).

    Sentences must be sorted and disjoint (as :func:`dasd_utils.segment.sentence_spans` returns them).
    """
    s_starts = np.asarray(sentence_starts, dtype=np.int64)
    s_ends = np.asarray(sentence_ends, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if len(s_starts) == 0:
        return np.full(len(starts), -1, dtype=np.int64)
    # The first sentence ending after the token's start is the only candidate for the first overlap.
    candidate = np.searchsorted(s_ends, starts, side="right")
    safe = np.minimum(candidate, len(s_starts) - 1)
    overlaps = (candidate < len(s_starts)) & (s_starts[safe] < ends) & (ends > starts)
    return np.where(overlaps, candidate, -1).astype(np.int64)


def sentence_probability(logprobs: Sequence[float]) -> float:
    """Return exp(mean(logprobs)), the geometric mean of the token probabilities (needs >= 1 token)."""
    values = np.asarray(logprobs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("a sentence probability needs at least one token")
    return float(np.exp(values.mean()))


def sentence_stats(assignment: np.ndarray, logprobs: np.ndarray, n_sentences: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (token count, mean logprob) per sentence; the mean is NaN for a sentence without token."""
    mask = assignment >= 0
    counts = np.bincount(assignment[mask], minlength=n_sentences).astype(np.int64)
    sums = np.bincount(assignment[mask], weights=np.asarray(logprobs, dtype=np.float64)[mask], minlength=n_sentences)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return counts, means


__all__ = [
    "TeacherTokens",
    "UNSCORABLE_REASONS",
    "UnscorableError",
    "assign_tokens",
    "sentence_probability",
    "sentence_stats",
]
