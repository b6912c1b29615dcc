"""Chat messages for a CommonsenseQA question, and parsing of the model's answer.

The same messages (system prompt + user question) are used for teacher generation, DAS scoring,
SFT and evaluation, so the student always sees one context. The response format asked for is::

    <reasoning> ... </reasoning>
    Final Answer: C
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .config import COURSE_SYSTEM_PROMPT

LETTERS = ("A", "B", "C", "D", "E")


def format_question(row: Mapping[str, Any]) -> str:
    """Return the user message: the question followed by its lettered choices, one per line."""
    labels = row["choices"]["label"]
    texts = row["choices"]["text"]
    lines = [f"Question: {row['question'].strip()}", "", "Options:"]
    lines += [f"{label}. {text}" for label, text in zip(labels, texts)]
    return "\n".join(lines)


def build_messages(row: Mapping[str, Any], system_prompt: str = COURSE_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Return the chat messages ``[system, user]`` shown to every model for this question."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": format_question(row)},
    ]


def build_sft_example(row: Mapping[str, Any], response: str, system_prompt: str = COURSE_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Return ``[system, user, assistant]`` messages for supervised fine-tuning on ``response``."""
    return build_messages(row, system_prompt) + [{"role": "assistant", "content": response}]


# --------------------------------------------------------------------------- answer extraction
# "Final Answer" followed by decorations (markdown bold/italics, colon, "is", brackets, \boxed{...},
# "Option"), then one letter A-E that is not the start of a word.
_DECOR = r"[\s*_:`'\"=\-–—>]*"
_FINAL_RE = re.compile(
    r"final\s*answer" + _DECOR + r"(?:is\b)?" + _DECOR +
    r"(?:\$?\\boxed\{\s*|\\text\{\s*)?[\(\[\{]?\s*(?:option|choice|answer)?\s*[\(\[]?\s*" +
    r"(?P<letter>[A-Ea-e])(?P<after>.?.?)",
    re.IGNORECASE,
)
# Weaker conclusions ("The answer is C", "Answer: C", a bare \boxed{C}), used only when no
# "Final Answer" marker is present (lenient mode).
_FALLBACK_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:correct|right|best)\s+(?:answer|option|choice)\s+is|\banswer\s+is|^\s*answer\s*:|\\boxed\{)"
    + _DECOR + r"[\(\[]?\s*(?:option|choice)?\s*[\(\[]?\s*(?P<letter>[A-Ea-e])(?P<after>.?.?)",
    re.IGNORECASE | re.MULTILINE,
)


def _letter_ok(letter: str, after: str) -> bool:
    """Return True when the matched letter stands alone (not the first letter of a word)."""
    if after[:1].isalpha():
        return False  # "Final Answer: Bank" or "final answer: apple"
    if letter.islower():
        # A lower-case letter must be clearly a label: "c", "(c)", "c.", "c)" at a word end,
        # not the article in "final answer: a fishmonger".
        rest = after[:1]
        if rest == "" or rest in ").:,]}*\n":
            return True
        return False
    return True


# A hedge right after the letter ("C or D", "C/D", "C and E"): the marker names two letters.
_HEDGE_RE = re.compile(
    r"[ \t]*[\)\]\}*]*[ \t]*(?:(?i:or|and)|/|&)[ \t]*[\(\[*]*[ \t]*(?:(?i:option)[ \t]*)?"
    r"(?P<other>[A-E])(?![A-Za-z])"
)


def _find_letters(pattern: re.Pattern[str], text: str) -> list[str]:
    found = []
    for m in pattern.finditer(text):
        letter, after = m.group("letter"), m.group("after")
        if _letter_ok(letter, after):
            found.append(letter.upper())
            hedge = _HEDGE_RE.match(text, m.end("letter"))
            if hedge is not None:
                # Keep the second letter too, so that "C or D" counts as two different answers.
                found.append(hedge.group("other").upper())
    return found


def final_answer_letters(text: str | None) -> list[str]:
    """Return every letter given after a "Final Answer" marker, in order of appearance.

    When the response closes a ``<reasoning>`` block and gives a final answer after it, only the
    markers after the block count: a "Final Answer: X" written while reasoning is a draft, the
    one after ``</reasoning>`` is the answer the format asks for.
    """
    if not text:
        return []
    closings = list(_REASONING_CLOSE.finditer(text))
    if closings:
        after_block = _find_letters(_FINAL_RE, text[closings[-1].end() :])
        if after_block:
            return after_block
    return _find_letters(_FINAL_RE, text)


def extract_answer(text: str | None, strict: bool = False) -> str | None:
    """Return the final answer letter (A-E), or None when no single letter is clear.

    Looks for "Final Answer" markers first (``Final Answer: C``, ``**Final Answer:** (c).``,
    ``Final answer: \\boxed{C}``...). When several markers give different letters the answer is
    ambiguous and None is returned. Without any marker, and unless ``strict``, weaker conclusions
    such as "The answer is C" or "Answer: C" are accepted under the same single-letter rule.
    """
    if not text or not text.strip():
        return None
    letters = final_answer_letters(text)
    if not letters and not strict:
        letters = _find_letters(_FALLBACK_RE, text)
    unique = set(letters)
    if len(unique) == 1:
        return letters[0]
    return None


def has_final_answer_format(text: str | None) -> bool:
    """Return True when the response ends its reasoning with exactly one clear "Final Answer: X"."""
    return extract_answer(text, strict=True) is not None


_REASONING_OPEN = re.compile(r"<\s*reasoning\s*>", re.IGNORECASE)
_REASONING_CLOSE = re.compile(r"<\s*/\s*reasoning\s*>", re.IGNORECASE)
_FINAL_LINE = re.compile(r"^[\s*_#>]*final\s*answer", re.IGNORECASE | re.MULTILINE)


def answer_line_complete(text: str | None) -> bool:
    """Return True once ``text`` holds a complete "Final Answer" line where the course's format puts it.

    Complete: a "Final Answer" marker with a letter (as :func:`final_answer_letters` reads it), and
    a line break after that letter. Where the format puts it: after the ``</reasoning>`` that closes
    the response's ``<reasoning>`` block, or anywhere when no block was opened. Generation stops
    there (a stop sequence on the answer line): the answer is that line, whatever the model would
    have written after it.
    """
    if not text:
        return False
    if _REASONING_OPEN.search(text):
        closings = list(_REASONING_CLOSE.finditer(text))
        if not closings:
            return False
        text = text[closings[-1].end():]
    for match in _FINAL_RE.finditer(text):
        if _letter_ok(match.group("letter"), match.group("after")) and "\n" in text[match.end("letter"):]:
            return True
    return False


def extract_reasoning(text: str | None) -> str | None:
    """Return the text inside ``<reasoning>...</reasoning>`` (stripped), or None when there is no block.

    A missing closing tag is tolerated: the reasoning then runs to the "Final Answer" line, or
    to the end of the text.
    """
    if not text:
        return None
    opening = _REASONING_OPEN.search(text)
    if opening is None:
        return None
    start = opening.end()
    closing = _REASONING_CLOSE.search(text, start)
    if closing is not None:
        end = closing.start()
    else:
        final = _FINAL_LINE.search(text, start)
        end = final.start() if final else len(text)
    return text[start:end].strip()


__all__ = [
    "LETTERS",
    "answer_line_complete",
    "build_messages",
    "build_sft_example",
    "extract_answer",
    "extract_reasoning",
    "final_answer_letters",
    "format_question",
    "has_final_answer_format",
]
