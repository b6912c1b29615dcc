"""Token-to-character alignment for two different tokenizers, and sentence probabilities.

The teacher (API tokens, e.g. gpt-oss) and the student (a local HF tokenizer, e.g. Qwen3) cut
the same response into different tokens. Both are mapped to character spans of the response
text ``content``; sentences are character spans too (:mod:`dasd_utils.segment`), so a sentence
receives each model's tokens without ever counting or re-joining tokens.

Teacher tokens (:func:`teacher_token_spans`): the token strings are joined; when they reproduce
``content`` exactly, each token's span follows from the running length. Otherwise, when every
token carries its ``bytes``, the joined bytes must equal ``content`` encoded in UTF-8 and spans
come from byte offsets (a token holding part of a multi-byte character, e.g. half an emoji, gets
the span of that whole character). Anything else raises :class:`UnscorableError`: the response
is excluded with a counted reason, never guessed.

Student tokens: offsets from a fast tokenizer (``return_offsets_mapping``), see
:mod:`dasd_utils.scoring`.

Token-to-sentence rule (:func:`assign_tokens`), the same for both tokenizers: a token belongs
to the **first sentence its span overlaps** by at least one character. Sentences are trimmed
spans, so ``" The"`` (the space lies between sentences) belongs to the sentence starting with
"The", ``".\\n\\n"`` to the sentence its period ends, ``"<reasoning> Cr"`` to the sentence
starting with "Cr", and a token straddling two sentences (``"e.The"``, no space) to the first
one. Tokens that overlap no sentence (whitespace between sentences, a ``<reasoning>`` tag, a
``---`` line) belong to none and are not scored.

A sentence's probability for a model is ``exp(mean(logprob))`` over its tokens: the geometric
mean of the token probabilities (:func:`sentence_probability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Reasons for excluding a response from DAS, counted in ``das/summary.json``.
UNSCORABLE_REASONS = (
    "no_logprobs",  # the record's tokens are null / empty: the provider returned no logprobs
    "invalid_logprob",  # a token's logprob is missing, not a number, NaN or +inf
    "tokens_mismatch",  # the tokens (and their bytes) do not reproduce the content
    "no_sentences",  # the response has no sentence (only markup / symbols)
    "no_student_tokens",  # the student tokenizer gave no token inside any sentence
    "no_teacher_tokens",  # no teacher token falls inside any sentence
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
    #: "text" when the token strings reproduced the content, "bytes" when the bytes did.
    method: str


def _logprobs(tokens: Sequence[dict[str, Any]]) -> np.ndarray:
    values = []
    for i, tok in enumerate(tokens):
        lp = tok.get("logprob") if isinstance(tok, dict) else None
        if isinstance(lp, bool) or not isinstance(lp, (int, float)):
            raise UnscorableError("invalid_logprob", f"token #{i} has logprob {lp!r}")
        if math.isnan(lp) or lp > 1e-6 or lp == math.inf:
            raise UnscorableError("invalid_logprob", f"token #{i} has logprob {lp!r}")
        values.append(float(lp))
    return np.asarray(values, dtype=np.float64)


def teacher_token_spans(content: str, tokens: Sequence[dict[str, Any]] | None) -> TeacherTokens:
    """Return the character span and logprob of every teacher token, or raise UnscorableError."""
    if not tokens:
        raise UnscorableError("no_logprobs", "the record has no token logprobs")
    if not all(isinstance(t, dict) for t in tokens):
        raise UnscorableError("tokens_mismatch", "tokens must be objects with 'token' and 'logprob'")
    logprobs = _logprobs(tokens)
    strings = [t.get("token") for t in tokens]
    if all(isinstance(s, str) for s in strings) and "".join(strings) == content:
        lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
        ends = np.cumsum(lengths)
        return TeacherTokens(ends - lengths, ends, logprobs, "text")
    byte_lists = [t.get("bytes") for t in tokens]
    if all(isinstance(b, list) for b in byte_lists):
        try:
            pieces = [bytes(b) for b in byte_lists]
        except (TypeError, ValueError):
            raise UnscorableError("tokens_mismatch", "a token's bytes are not a list of 0-255 integers") from None
        encoded = content.encode("utf-8")
        if b"".join(pieces) == encoded:
            starts, ends = _byte_spans_to_chars(content, pieces)
            return TeacherTokens(starts, ends, logprobs, "bytes")
        raise UnscorableError("tokens_mismatch", "neither the token strings nor their bytes reproduce the content")
    raise UnscorableError(
        "tokens_mismatch", "the token strings do not reproduce the content and the tokens carry no bytes"
    )


def _byte_spans_to_chars(content: str, pieces: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Return character (starts, ends) for consecutive byte pieces of ``content.encode('utf-8')``."""
    char_bytes = np.fromiter((len(c.encode("utf-8")) for c in content), dtype=np.int64, count=len(content))
    byte_to_char = np.repeat(np.arange(len(content), dtype=np.int64), char_bytes)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    byte_ends = np.cumsum(lengths)
    byte_starts = byte_ends - lengths
    n_bytes = len(byte_to_char)
    starts = np.where(byte_starts < n_bytes, byte_to_char[np.minimum(byte_starts, max(n_bytes - 1, 0))], len(content))
    # The end character is the one holding the token's last byte, + 1; an empty token is empty.
    last = np.maximum(byte_ends - 1, 0)
    ends = np.where(lengths > 0, byte_to_char[np.minimum(last, max(n_bytes - 1, 0))] + 1, starts)
    return starts.astype(np.int64), ends.astype(np.int64)


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
    "teacher_token_spans",
]
