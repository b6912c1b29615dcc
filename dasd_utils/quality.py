"""The quality filter for teacher responses: every rejection comes with its reason.

Checks, in this order (the first failing one is the reason):

``empty``            no text at all (``content`` None or whitespace);
``too_short``        fewer than ``min_chars`` characters (30 in the course);
``no_final_answer``  no single clear "Final Answer: X" (see :func:`prompts.extract_answer`, strict);
``wrong_answer``     the answer differs from the gold label (``require_correct``, on by default;
                     the course did not check correctness);
``repetitive``       too many repeated word n-grams, as the DASD paper filters degenerate loops;
``format_talk``      the reasoning talks about the answer format (a ``<reasoning>`` tag or a
                     "Final Answer:" inside it, "the output format"...): gpt-oss's analysis channel
                     often plans the format, and a student trained on it would learn to say so;
``too_long``         the full chat (prompt + response) is longer than the student's context;
``too_long_to_generate``  the response is longer, in student tokens, than the student may write at
                     evaluation (``eval.max_new_tokens``): it could never produce it.

The filter runs on whatever text is trained on: the teacher's content, the analysis-channel
target of ``teacher.reasoning_source=analysis`` (:mod:`dasd_utils.das`), a mixed-policy answer
(student prefix + teacher continuation, :mod:`dasd_utils.analyses.mixed`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from .config import QualityConfig
from .prompts import build_sft_example, extract_answer

REASONS = ("empty", "too_short", "no_final_answer", "wrong_answer", "repetitive", "format_talk", "too_long",
           "too_long_to_generate")

_FINAL_ANSWER = re.compile(r"final\s*answer", re.IGNORECASE)
#: What counts as talking about the answer format inside the reasoning (case-insensitive): the
#: format's own tags or answer line, or the format named as such.
FORMAT_TALK = re.compile(
    r"</?reasoning>|final\s*answer\s*:|\b(?:output|answer|response|required|requested)\s+format\b"
    r"|\bformat\b[^.\n]{0,40}\b(?:tags?|final\s+answer)\b",
    re.IGNORECASE,
)


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


def reasoning_body(text: str) -> str:
    """Return the reasoning of a course-format answer: the text before its last "Final Answer", outer tags removed."""
    matches = list(_FINAL_ANSWER.finditer(text))
    body = text[: matches[-1].start()] if matches else text
    body = body.strip()
    if body.lower().startswith("<reasoning>"):
        body = body[len("<reasoning>"):]
    if body.lower().endswith("</reasoning>"):
        body = body[: -len("</reasoning>")]
    return body.strip()


def format_talk(text: str) -> str | None:
    """Return the first phrase of the reasoning that talks about the answer format, or None."""
    match = FORMAT_TALK.search(reasoning_body(text))
    return match.group(0) if match else None


def student_token_counters(tokenizer: Any, row: Mapping[str, Any], system_prompt: str) -> tuple[Callable[[str], int], Callable[[str], int]]:
    """Return (whole training example's token count, response's token count), both in the student's tokens.

    The first renders the SFT example (system, question, response) with the student's chat
    template, as training sees it; the second counts the response alone, as the student would
    have to write it.
    """
    def example(content: str) -> int:
        text = tokenizer.apply_chat_template(build_sft_example(row, content, system_prompt), tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def response(content: str) -> int:
        return len(tokenizer(content, add_special_tokens=False)["input_ids"])

    return example, response


def check_response(
    content: str | None,
    gold: str | None,
    cfg: QualityConfig | None = None,
    count_tokens: Callable[[str], int] | None = None,
    max_context: int | None = None,
    count_response_tokens: Callable[[str], int] | None = None,
    max_new_tokens: int | None = None,
) -> QualityVerdict:
    """Return the verdict for one response (teacher content, analysis target or mixed-policy answer).

    ``count_tokens`` returns the student's token count of the *whole training example* for this
    response (chat template included); it and ``max_context`` are needed for the ``too_long``
    check. ``count_response_tokens`` counts the response alone in student tokens; it and
    ``max_new_tokens`` (``eval.max_new_tokens``) are needed for ``too_long_to_generate``. A check
    whose inputs are not given is skipped, and ``detail`` says so.
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
    if cfg.reject_format_talk:
        talk = format_talk(text)
        if talk is not None:
            return QualityVerdict(False, "format_talk", answer, f"the reasoning mentions {talk!r}")
    unchecked = []
    if cfg.check_student_context:
        if count_tokens is not None and max_context is not None:
            n_tokens = count_tokens(content)
            if n_tokens > max_context:
                return QualityVerdict(False, "too_long", answer, f"{n_tokens} tokens > {max_context}")
        else:
            unchecked.append("context length")
    if cfg.check_student_generation:
        if count_response_tokens is not None and max_new_tokens is not None:
            n_tokens = count_response_tokens(content)
            if n_tokens > max_new_tokens:
                return QualityVerdict(False, "too_long_to_generate", answer,
                                      f"{n_tokens} student tokens > eval.max_new_tokens={max_new_tokens}")
        else:
            unchecked.append("generation length")
    detail = f"{' and '.join(unchecked)} not checked (no student tokenizer given)" if unchecked else ""
    return QualityVerdict(True, None, answer, detail)


__all__ = ["FORMAT_TALK", "QualityVerdict", "REASONS", "check_response", "format_talk", "reasoning_body",
           "repeated_ngram_ratio", "student_token_counters"]
