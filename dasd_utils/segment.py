"""Sentences of a teacher response as character spans ``[start, end)`` of the original text.

Divergence-Aware Sampling compares teacher and student probabilities sentence by sentence. The
two models use different tokenizers, so a sentence is defined on the *characters* of the response
(``content``), never on re-joined strings or token counts. :func:`sentence_spans` returns spans
whose ``text`` is exactly ``content[start:end]``.

What counts as a sentence in a reasoning response (the rules, in the order they apply):

1. **Markup is not a sentence.** ``<reasoning>`` and ``</reasoning>`` tags (any case, optional
   spaces) belong to no sentence: they are formatting that both models predict almost surely
   once trained, and counting them would measure the format rather than the reasoning. A tag is
   also a hard boundary: text on either side of it never shares a sentence.
2. **A line break ends a sentence.** Each line is segmented on its own, so a list item
   (``- item``, ``1. item``, ``A. option``) is its own sentence and blank lines produce nothing.
3. **The "Final Answer" line is one sentence.** When a line starts with the ``Final Answer``
   marker (optionally preceded by markdown such as ``**``, ``#`` or ``- ``), or the marker follows
   ``</reasoning>``, the marker and the rest of its line are one sentence, flagged
   ``final_answer``. Elsewhere the words are prose and force no boundary: "So the final answer
   is C." stays one sentence. A sentence that the segmenter starts with ``Final Answer:`` (a
   capitalised marker and a colon, e.g. ``... so C. Final Answer: C``) is flagged too. It is
   scored like any other sentence; DAS also reports the ratio without it.
4. **Inside a line**, sentence boundaries come from the segmenter: ``pysbd`` (default; rule-based,
   maintained, knows abbreviations such as "e.g.", "i.e.", "Dr.", "U.S.", decimals such as
   "3.5", and treats a single capital letter followed by a period, "A.", as a label rather than
   a sentence end) or ``regex`` (a small fallback with the same exceptions, see
   :func:`_regex_starts`). Only the segmenter's sentence *starts* are used, located in the
   original line in order, so the spans always cover the whole line (nothing the segmenter
   rewrites or drops can be lost). pysbd's own ``char_span=True`` mode is not used: it finds
   each sentence again with a regex search and silently drops a sentence it cannot find.
   **Option letters.** Both segmenters never end a sentence after a single capital letter and
   a period, which in multiple-choice reasoning merges "... the answer is C. Therefore ..."
   into one sentence. So a period after a lone option letter A-E *does* end the sentence when
   the letter does not open its sentence (it is not a label) and the next word starts with a
   capital letter, a quote or a bracket. "A. fish market" (a label) and "options A. and B."
   (lower-case continuation) stay whole.
5. **Markdown emphasis is not cut.** No sentence ends inside a ``**bold**`` or ``__bold__`` span
   of its line: "**C. Fishmongers** sell crabs." and "the answer is **C. bank**." stay whole.
6. **Fragments are merged, not dropped.** A fragment that is only an enumeration label ("A.",
   "(b)", "2)", also in markdown: "- **A.", "**Step 1.**") is merged with the following sentence
   of its line; a tiny fragment (at most one letter or digit: "...", "**", "C.") is merged with
   the previous sentence of its line (or the next one when it comes first). A line with no
   letter or digit at all (``---``) holds no sentence.
7. **Headings are not sentences of their own.** A line that is only a label ("B)") or a
   markdown option label (``**C. Fishmongers**``, ``- **A. fish market**:``) joins the next
   sentence of its region (the span then holds the line break), or the previous one when nothing
   follows or when what follows is the final-answer line; a line that is a tiny fragment joins
   the previous sentence (or the next). Plain list items (``A. fish market``) stay sentences.
8. Spans are trimmed of surrounding whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

SEGMENTERS = ("pysbd", "regex")

_TAG_RE = re.compile(r"<\s*/?\s*reasoning\s*>", re.IGNORECASE)
# The marker at the start of a line (after optional markdown: emphasis, heading, quote, bullet).
_FINAL_RE = re.compile(r"(?:[*_#>\-]+\s*)?final\s*answer\b", re.IGNORECASE)
# A sentence the segmenter starts with the marker used as a label: capitalised, then a colon.
_FINAL_LABEL_RE = re.compile(r"(?:[*_]+\s*)?Final\s+Answer\s*(?:[*_]+\s*)?:")
# An enumeration label alone, possibly in markdown: "A.", "(b)", "2)", "- **A.", "**Step 1.**".
_LABEL_ONLY_RE = re.compile(
    r"^\s*(?:[-+•>#]\s*|\*\s+)*(?:\*\*|__|\*|_)?\s*(?:(?i:option|choice|step)\s+)?"
    r"(?:\(?[A-Ea-e]\)|[A-E][.:]|\(?\d{1,2}[.):]|\([A-Ea-e\d]{1,2}\))\s*(?:\*\*|__|\*|_)?\s*$"
)
# A markdown option label on its own line: "**C. Fishmongers**", "- **A) fish market**:".
_LABEL_LINE_RE = re.compile(
    r"^(?:[-+•>#]\s*|\*\s+)*(\*\*|__)\s*(?:(?i:option|choice)\s+)?\(?[A-E][.):]\s*[^*_\n]{0,80}?\s*\1\s*:?$"
)
_EMPHASIS_RE = re.compile(r"\*\*|__")
_ALNUM_RE = re.compile(r"[^\W_]")  # a letter or a digit, in any script

# The regex segmenter: a sentence ends at . ! ? (possibly repeated, possibly followed by closing
# quotes or brackets) followed by whitespace; the next sentence starts at the next non-space.
_REGEX_END_RE = re.compile(r"[.!?]+[\"')\]»”’]*(?=\s+\S)")
# "... is C. Therefore" -> a boundary before "Therefore" (see rule 4 in the module docstring).
_OPTION_END_RE = re.compile(r"(?<=\S )\(?([A-E])\)?\.(\s+)(?=[A-Z\"“'(\[«])")
_ABBREVIATIONS = {
    "e.g", "i.e", "etc", "vs", "cf", "dr", "mr", "mrs", "ms", "prof", "st", "no", "fig", "approx",
    "u.s", "u.k", "jr", "sr", "inc", "ltd", "a.m", "p.m",
}


@dataclass(frozen=True)
class Sentence:
    """One sentence: ``text == content[start:end]``."""

    start: int
    end: int
    text: str
    #: True for the "Final Answer: X" line.
    final_answer: bool = False


@lru_cache(maxsize=4)
def _pysbd_segmenter(language: str = "en"):
    import pysbd

    return pysbd.Segmenter(language=language, clean=False, char_span=False)


def _regex_starts(line: str) -> list[int]:
    """Return sentence start offsets inside ``line`` found by the fallback regex segmenter."""
    starts = [0]
    for m in _REGEX_END_RE.finditer(line):
        before = line[: m.start()]
        word = re.search(r"(\S+)$", before)
        token = word.group(1).lower().strip("\"'([«“‘") if word else ""
        if m.group(0).startswith(".") and len(m.group(0).rstrip("\"')]»”’")) == 1:
            if token in _ABBREVIATIONS:
                continue  # "e.g." / "Dr." do not end a sentence
            if len(token) == 1 and token.isalpha():
                continue  # "A." is an option label or an initial
        nxt = re.compile(r"\S").search(line, m.end())
        if nxt is not None:
            starts.append(nxt.start())
    return starts


def _pysbd_starts(line: str) -> list[int]:
    """Return sentence start offsets inside ``line`` from pysbd, located in order in the line."""
    starts: list[int] = []
    cursor = 0
    for piece in _pysbd_segmenter().segment(line):
        piece = piece.strip()
        if not piece:
            continue
        found = line.find(piece, cursor)
        if found < 0:
            # pysbd rewrote this piece: keep the previous boundary (merge), never lose text.
            continue
        starts.append(found)
        cursor = found + len(piece)
    return starts or [0]


def _option_letter_starts(body: str, starts: list[int]) -> list[int]:
    """Return extra sentence starts after an option letter that ends a sentence ("... is C. Then")."""
    extra = []
    start_set = set(starts)
    for m in _OPTION_END_RE.finditer(body):
        # The letter must not open its sentence: then it is a label ("B. Pet shop is ...").
        sentence_start = max((s for s in start_set if s <= m.start()), default=0)
        if body[sentence_start : m.start()].strip() == "":
            continue
        extra.append(m.end())
    return extra


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _outside_emphasis(line: str, starts: list[int]) -> list[int]:
    """Return ``starts`` without those inside a ``**...**`` / ``__...__`` span closed later on the line."""
    kept = []
    for start in starts:
        inside = False
        for mark in ("**", "__"):
            positions = [m.start() for m in _EMPHASIS_RE.finditer(line) if m.group(0) == mark]
            before = sum(1 for pos in positions if pos < start)
            inside = inside or (before % 2 == 1 and any(pos >= start for pos in positions))
        if not inside:
            kept.append(start)
    return kept


def _is_tiny(chunk: str) -> bool:
    """Return True for a fragment with at most one letter or digit ("...", "**", "C.")."""
    return len(_ALNUM_RE.findall(chunk)) < 2


# A piece of a region: (start, end, final_answer, heading), offsets into the whole text.
_Piece = tuple[int, int, bool, bool]


def _segment_line(text: str, start: int, end: int, segmenter: str) -> list[_Piece]:
    """Return the pieces of ``text[start:end]`` (one line between hard boundaries)."""
    start, end = _trim(text, start, end)
    if start >= end:
        return []
    line = text[start:end]
    if _FINAL_RE.match(line):
        return [(start, end, True, False)]
    if _LABEL_LINE_RE.match(line) or _LABEL_ONLY_RE.match(line):
        return [(start, end, False, True)]
    starts = _pysbd_starts(line) if segmenter == "pysbd" else _regex_starts(line)
    starts = sorted({s for s in starts if 0 <= s < len(line)} | {0})
    starts = sorted(set(starts) | set(_option_letter_starts(line, starts)))
    bounds = _outside_emphasis(line, starts) + [len(line)]
    pieces: list[tuple[int, int, bool]] = []
    for a, b in zip(bounds, bounds[1:]):
        a, b = _trim(line, a, b)
        if a < b:
            pieces.append((a, b, bool(_FINAL_LABEL_RE.match(line, a))))
    return [(start + a, start + b, fa, False) for a, b, fa in _merge_fragments(line, pieces)]


def _merge_fragments(line: str, pieces: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Return pieces with label-only fragments merged forward and tiny ones merged back."""
    out: list[tuple[int, int, bool]] = []
    pending: int | None = None  # start of a label fragment waiting for its sentence
    for a, b, fa in pieces:
        chunk = line[a:b]
        if pending is not None:
            a, pending = pending, None
        if not fa and _LABEL_ONLY_RE.match(line[a:b]):
            pending = a
            continue
        if not fa and _is_tiny(chunk):
            if out:
                pa, _, pfa = out[-1]
                out[-1] = (pa, b, pfa)
            else:
                pending = a
            continue
        out.append((a, b, fa))
    if pending is not None:
        if out:
            pa, _, pfa = out[-1]
            out[-1] = (pa, pieces[-1][1], pfa)
        elif _ALNUM_RE.search(line[pending : pieces[-1][1]]):
            out.append((pending, pieces[-1][1], False))
    return out


def _merge_headings(text: str, pieces: list[_Piece]) -> list[list]:
    """Return ``[start, end, final_answer]`` of a region, headings joined to the next sentence, tiny lines to the previous."""
    out: list[list] = []
    waiting: list[int] | None = None  # [start, end] of heading lines waiting for their sentence
    for a, b, fa, heading in pieces:
        if heading or (not out and not fa and _is_tiny(text[a:b])):
            waiting = [waiting[0] if waiting else a, b]
            continue
        if waiting and fa:  # a heading never joins the final-answer line
            if out:
                out[-1][1] = waiting[1]
            else:
                out.append([waiting[0], waiting[1], False])
        elif waiting:
            a = waiting[0]
        waiting = None
        if not fa and out and _is_tiny(text[a:b]):
            out[-1][1] = b
            continue
        out.append([a, b, fa])
    if waiting:
        if out:
            out[-1][1] = waiting[1]
        else:
            out.append([waiting[0], waiting[1], False])
    return out


def sentence_spans(text: str | None, segmenter: str = "pysbd") -> list[Sentence]:
    """Return the sentences of a response as character spans of ``text`` (see the module rules)."""
    if segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {segmenter!r} (choose one of: {', '.join(SEGMENTERS)})")
    if not text:
        return []
    # Hard boundaries: reasoning tags (excluded from every sentence) and line breaks.
    regions: list[tuple[int, int]] = []
    cursor = 0
    for tag in _TAG_RE.finditer(text):
        regions.append((cursor, tag.start()))
        cursor = tag.end()
    regions.append((cursor, len(text)))
    sentences: list[Sentence] = []
    for r_start, r_end in regions:
        pieces: list[_Piece] = []
        line_start = r_start
        while line_start < r_end:
            newline = text.find("\n", line_start, r_end)
            line_end = r_end if newline < 0 else newline
            pieces.extend(_segment_line(text, line_start, line_end, segmenter))
            line_start = line_end + 1
        sentences.extend(Sentence(a, b, text[a:b], fa) for a, b, fa in _merge_headings(text, pieces))
    return sentences


__all__ = ["SEGMENTERS", "Sentence", "sentence_spans"]
