"""Chat-completion bodies of an OpenAI-compatible endpoint: the record fields, and logprobs made usable.

Provider variants handled by :func:`parse_completion`: ``logprobs`` absent / null /
``{"content": null}`` (``tokens`` is then null and ``logprobs_note`` says why: no probability is
ever invented), ``content`` null because reasoning used up ``max_tokens``, a separate
``reasoning`` / ``reasoning_content`` field (kept), ``bytes`` absent, OpenAI-style ``bytes:\\x..``
placeholders for partial UTF-8 tokens, and logprobs that cover the whole harmony stream (analysis
channel, channel markers, final channel, ``<|return|>``) with ``"\\ufffd"`` pieces of multi-byte
characters or ``token_id:N`` strings: the content's tokens are located with
:func:`dasd_utils.token_recovery.locate_text` and stored with their exact bytes; the analysis tokens are
stored apart (``reasoning_tokens``) when the reasoning text is found among them.
"""

from __future__ import annotations

import codecs
import math
from typing import Any, Sequence

from ..align import UnscorableError
from ..secrets import scrub
from ..token_recovery import LOGPROB_CLIP, TokenDecoder, clip_note, is_byte_level, locate_text, located_note, token_bytes, token_reading


class MalformedResponse(ValueError):
    """The endpoint answered 200 with a body that is not a chat completion."""


# ----------------------------------------------------------------------------- parsing
def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _incremental_strings(pieces: Sequence[bytes]) -> list[str]:
    """Return strings that join to the decoded bytes: a character goes to the token holding its last byte."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = [decoder.decode(piece) for piece in pieces]
    tail = decoder.decode(b"", final=True)
    if tail and out:
        out[-1] += tail
    return out


def _with_exact_bytes(entries: Sequence[dict[str, Any]], pieces: Sequence[bytes | None]) -> list[dict[str, Any]]:
    """Return copies of ``entries`` carrying their exact bytes (strings that join to the text when all are known).

    A token whose bytes are not uniquely determined (None) is kept as received.
    """
    if all(p is not None for p in pieces):
        texts = _incremental_strings(pieces)  # type: ignore[arg-type]
    else:
        texts = [p.decode("utf-8", "replace") if p is not None else "" for p in pieces]
    return [
        {"token": text, "logprob": entry["logprob"], "bytes": list(piece)} if piece is not None else dict(entry)
        for entry, piece, text in zip(entries, pieces, texts)
    ]


class TokenizerUnavailable(RuntimeError):
    """The teacher tokenizer needed to decode token ids cannot be loaded; the message says why it is needed."""


class TeacherTokenizer:
    """The teacher tokenizer's decoder of token ids (exact bytes), loaded once, safely from several threads.

    ``purpose`` says why the ids must be decoded (it goes into the error when the tokenizer cannot be
    loaded). Loading imports transformers: done under a lock, because a first import of
    ``transformers`` from several threads at once can fail ("cannot import name 'AutoTokenizer'"),
    and a failure is kept so that every later call says the same.
    """

    def __init__(self, name: str, purpose: str) -> None:
        import threading

        self.name = name
        self.purpose = purpose
        self._lock = threading.Lock()
        self._decoder: TokenDecoder | None = None
        self._error: str | None = None

    def load(self) -> bool:
        """Return True when the decoder is (now) available; load it on the first call."""
        with self._lock:
            if self._decoder is None and self._error is None:
                try:
                    from transformers import AutoTokenizer

                    self._decoder = make_token_decoder(AutoTokenizer.from_pretrained(self.name, trust_remote_code=False))
                except Exception as exc:  # noqa: BLE001 - offline, unknown name...: said in every note
                    detail = " ".join(str(exc).split())[:160]
                    self._error = scrub(
                        f"{self.purpose}, and the teacher tokenizer '{self.name}' could not be loaded to decode them "
                        f"({type(exc).__name__}: {detail}); set teacher.tokenizer to a loadable tokenizer "
                        "(a local folder works offline)"
                    )
            return self._decoder is not None

    def __call__(self, token_id: int) -> bytes | str:
        if not self.load():
            raise TokenizerUnavailable(self._error)
        return self._decoder(token_id)  # type: ignore[misc]


def make_token_decoder(tokenizer: Any) -> TokenDecoder:
    """Return a function giving the exact bytes of a token id (lossy text when the tokenizer does not expose them)."""

    byte_level = is_byte_level(tokenizer)
    cache: dict[int, bytes | str] = {}

    def decode(token_id: int) -> bytes | str:
        if token_id not in cache:
            if tokenizer.convert_ids_to_tokens(token_id) is None:
                raise TokenizerUnavailable(f"token id {token_id} is not in the teacher tokenizer's vocabulary")
            raw = token_bytes(tokenizer, token_id, byte_level)
            cache[token_id] = bytes(raw) if raw is not None else tokenizer.decode([token_id])
        return cache[token_id]

    return decode


def _valid_entries(entries: list[Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Return (token/logprob/bytes entries, a clipping note) or (None, why they are unusable)."""
    tokens = []
    clipped = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None, "a logprobs entry has no token string"
        logprob = entry.get("logprob")
        if not isinstance(logprob, (int, float)) or isinstance(logprob, bool) or math.isnan(logprob) or logprob > LOGPROB_CLIP:
            return None, f"a token has no valid logprob ({logprob!r})"
        if logprob > 0:  # rounding noise above 0: clipped, said in the note
            clipped.append(float(logprob))
            logprob = 0.0
        raw = entry.get("bytes")
        tokens.append({"token": entry["token"], "logprob": float(logprob), "bytes": list(raw) if isinstance(raw, list) else None})
    return tokens, clip_note(clipped)


def normalize_logprobs(
    entries: Any, content: str | None, reasoning: str | None = None, decode_id: TokenDecoder | None = None,
) -> dict[str, Any]:
    """Return ``tokens``, ``reasoning_tokens``, ``logprobs_note`` and ``logprobs_usable`` from ``logprobs.content``.

    ``tokens`` are the content's tokens with their exact bytes when the content was located in the
    provider's stream (``logprobs_usable`` True); otherwise the provider's tokens as received (or
    null), and the note says what was seen. Never invents a probability: a token without a valid
    logprob makes the whole list null.
    """
    out: dict[str, Any] = {"tokens": None, "reasoning_tokens": None, "logprobs_note": None, "logprobs_usable": False}
    if entries is None:
        out["logprobs_note"] = "logprobs.content is null"
        return out
    if not isinstance(entries, list):
        out["logprobs_note"] = f"logprobs.content is a {type(entries).__name__}, not a list"
        return out
    if content is None:
        out["logprobs_note"] = "no content to attach logprobs to"
        return out
    tokens, clip = _valid_entries(entries)
    if tokens is None:
        out["logprobs_note"] = clip
        return out
    notes = []
    strings = [t["token"] for t in tokens]
    if "".join(strings) == content and all(t["bytes"] in (None, list(t["token"].encode("utf-8", "surrogatepass"))) for t in tokens):
        out.update(tokens=tokens, logprobs_usable=True)
        start = 0
    else:
        try:
            located = locate_text(tokens, content, decode_id)
        except TokenizerUnavailable as exc:
            out.update(tokens=tokens, logprobs_note=scrub(f"logprobs not aligned to the content: {exc}"))
            return out
        except UnscorableError as exc:
            out.update(tokens=tokens, logprobs_note=f"logprobs not aligned to the content: {exc.detail or exc.reason}")
            return out
        start = located.start
        content_tokens = _with_exact_bytes(tokens[located.start:located.end], located.pieces)
        rebuilt = [t["token"] for t in content_tokens] != strings[located.start:located.end]
        notes += [located_note(located, len(tokens)), "token strings rebuilt from bytes" if rebuilt else None]
        out.update(tokens=content_tokens, logprobs_usable=True)
    if reasoning and start > 0:
        found = _locate_reasoning(tokens[:start], reasoning, decode_id)
        if isinstance(found, str):
            notes.append(found)
        else:
            out["reasoning_tokens"] = found
            notes.append(f"{len(found)} analysis tokens kept in reasoning_tokens")
    notes.append(clip)
    out["logprobs_note"] = "; ".join(n for n in notes if n) or None
    return out


def _locate_reasoning(entries: list[dict[str, Any]], reasoning: str, decode_id: TokenDecoder | None) -> list[dict[str, Any]] | str:
    """Return the analysis tokens (exact bytes) found before the content, or a note saying why not."""
    # Harmony: <|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant<|channel|>final<|message|>
    def is_marker(entry: dict[str, Any]) -> bool:
        try:
            exact, _ = token_reading(entry, decode_id)
        except (UnscorableError, TokenizerUnavailable):
            return False
        return exact is not None and exact.startswith(b"<|") and exact.endswith(b"|>")

    ends = [len(entries)] + [j for j in range(len(entries) - 1, max(-1, len(entries) - 16), -1) if is_marker(entries[j])]
    try:
        located = locate_text(entries, reasoning, decode_id, ends=ends)
    except (UnscorableError, TokenizerUnavailable) as exc:
        return f"analysis text not found in the logprobs ({getattr(exc, 'detail', '') or exc})"
    return _with_exact_bytes(entries[located.start:located.end], located.pieces)


def normalize_tokens(entries: Any, content: str | None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Return (``tokens`` for the record, a note or None) from a provider's ``logprobs.content``."""
    out = normalize_logprobs(entries, content)
    return out["tokens"], out["logprobs_note"]


def parse_completion(data: Any, decode_id: TokenDecoder | None = None) -> dict[str, Any]:
    """Return the record fields of a chat-completion JSON body; raise MalformedResponse when it is not one."""
    if not isinstance(data, dict):
        raise MalformedResponse(f"response body is a {type(data).__name__}, not an object")
    if "error" in data and not data.get("choices"):
        raise MalformedResponse(f"response carries an error: {data['error']}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("choice has no message")
    content = _content_text(message.get("content"))
    reasoning = None
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str) and message[key]:
            reasoning = message[key]
            break
    if "logprobs" not in choice:
        logprobs = {"tokens": None, "reasoning_tokens": None, "logprobs_usable": False,
                    "logprobs_note": "no logprobs in the response (the provider may not support them)"}
    elif choice["logprobs"] is None:
        logprobs = {"tokens": None, "reasoning_tokens": None, "logprobs_usable": False, "logprobs_note": "logprobs is null"}
    elif not isinstance(choice["logprobs"], dict):
        logprobs = {"tokens": None, "reasoning_tokens": None, "logprobs_usable": False, "logprobs_note": "logprobs is not an object"}
    else:
        logprobs = normalize_logprobs(choice["logprobs"].get("content"), content, reasoning, decode_id)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    return {
        "content": content,
        "reasoning": reasoning,
        **logprobs,
        "finish_reason": choice.get("finish_reason"),
        "usage": usage,
        "response_model": data.get("model"),
        "error": None,
    }


__all__ = [
    "MalformedResponse",
    "TeacherTokenizer",
    "TokenizerUnavailable",
    "make_token_decoder",
    "normalize_logprobs",
    "normalize_tokens",
    "parse_completion",
]
