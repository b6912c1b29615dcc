"""One rendering of the student's chat turn for SFT, DAS scoring and evaluation.

The student reads the same tokens on the three sides: the chat template rendered with the
generation prompt, then **what the template writes between the generation prompt and the
assistant's text** (the *assistant prefix*), then the response. The assistant prefix is empty
for most templates (SmolLM2, Qwen3-4B-Instruct-2507); Qwen3's hybrid (thinking) template writes
an empty ``<think>\\n\\n</think>\\n\\n`` block there for the last assistant turn. Rendering it
once on every side keeps the three consistent:

* SFT (:func:`dasd_utils.sft.tokenize_sft_example`): ``prompt + response + end-of-turn``, where
  ``prompt = generation prompt + assistant prefix`` is not supervised: the model is never
  trained to write text it is given at inference;
* DAS scoring (:func:`dasd_utils.scoring.chat_prompt`) and evaluation
  (:func:`dasd_utils.evaluation.render_chat_prompt`) use the same ``prompt``. For Qwen3's
  hybrid template this is exactly its non-thinking mode (``enable_thinking=False``).

The prefix is found by rendering the conversation with a probe answer (:data:`PROBE`) and
reading what surrounds it. A template that cannot be rendered this way (it rewrites the
assistant's text, writes text between the response and the end-of-turn token, never closes the
turn, or renders the assistant header incompatibly with the generation prompt) stops with a
:class:`ChatTemplateError` that names the template.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

#: Special tokens that close a chat turn in common templates (ChatML, Llama 3, Gemma, Phi-3).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
#: The probe answer: plain ASCII words that no template rewrites and no tokenizer treats as special.
PROBE = "DASD probe answer 7f3a"


class ChatTemplateError(ValueError):
    """The student's chat template cannot give one rendering for training, scoring and evaluation."""


@dataclass(frozen=True)
class TurnLayout:
    """How a template lays out the assistant turn after a given history (the text around the answer)."""

    #: The template rendered with ``add_generation_prompt=True``.
    generation_prompt: str
    #: What the template writes after the generation prompt, before the assistant's text ("" for most).
    assistant_prefix: str
    #: The end-of-turn token's text and id: the last supervised token.
    end_of_turn: str
    end_of_turn_id: int
    #: What the template writes after the end-of-turn token (e.g. "\n"); never supervised.
    tail: str
    #: The full rendering's text before the assistant's text (== prompt unless ``header_mismatch``).
    head: str
    #: The generation prompt is not how the template writes the start of a past assistant turn (it
    #: holds more text); the prompt seen at inference (the generation prompt) is used everywhere.
    header_mismatch: bool

    @property
    def prompt(self) -> str:
        """Return the text the student reads before its first response token."""
        return self.generation_prompt + self.assistant_prefix


def end_of_turn_ids(tokenizer) -> set[int]:
    """Return the ids of the tokens that may close an assistant turn (EOS plus known end-of-turn tokens)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    # Token by token, not through get_vocab(): building a 150k-entry dict per example is slow.
    for token in END_OF_TURN_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and tokenizer.convert_ids_to_tokens(token_id) == token:
            ids.add(int(token_id))
    return ids


def template_name(tokenizer) -> str:
    """Return a short name for the tokenizer's chat template: its tokenizer's path and a hash of the template."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else repr(tokenizer.chat_template)
    digest = hashlib.sha256((template or "").encode("utf-8")).hexdigest()[:12]
    return f"the chat template of {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!s} (sha256 {digest})"


def _render(tokenizer, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def _end_of_turn(tokenizer, after: str, name: str) -> tuple[str, int]:
    """Return the end-of-turn token (text, id) that ``after`` (the text after the answer) starts with."""
    tokens = {tokenizer.convert_ids_to_tokens(i): i for i in end_of_turn_ids(tokenizer)}
    for text, token_id in sorted(tokens.items(), key=lambda kv: -len(kv[0] or "")):
        if text and after.startswith(text):
            return text, token_id
    found = [(after.find(t), t) for t in tokens if t and t in after]
    if found:
        pos, text = min(found)
        raise ChatTemplateError(
            f"{name} writes {after[:pos]!r} between the assistant's text and the end-of-turn token {text!r}: "
            "an SFT example must be exactly generation prompt + response + end-of-turn token. Use a template "
            "that closes the turn right after the assistant's text (set tokenizer.chat_template)."
        )
    raise ChatTemplateError(
        f"{name} does not close the assistant turn with a known end-of-turn token "
        f"({', '.join(END_OF_TURN_TOKENS)} or the tokenizer's EOS): the model would never learn to stop"
    )


def turn_layout(tokenizer, history: Sequence[Mapping[str, str]]) -> TurnLayout:
    """Return the layout of the assistant turn that follows ``history`` ([system, user] messages).

    Raises ChatTemplateError (naming the template) when the template rewrites the assistant's
    text, renders the assistant header incompatibly with its generation prompt, writes text
    between the answer and the end-of-turn token, or never closes the turn.
    """
    return _turn_layout(tokenizer, tuple((m["role"], m["content"]) for m in history))


def _turn_layout(tokenizer, history: tuple[tuple[str, str], ...]) -> TurnLayout:
    messages = [{"role": role, "content": content} for role, content in history]
    name = template_name(tokenizer)
    generation_prompt = _render(tokenizer, messages, add_generation_prompt=True)
    full = _render(tokenizer, messages + [{"role": "assistant", "content": PROBE}], add_generation_prompt=False)
    at = full.find(PROBE)
    if at < 0:
        raise ChatTemplateError(f"{name} does not write the assistant's text as given (probe {PROBE!r} not found)")
    head, after = full[:at], full[at + len(PROBE) :]
    if head.startswith(generation_prompt):
        prefix, header_mismatch = head[len(generation_prompt) :], False
    elif generation_prompt.startswith(head):
        # The generation prompt holds more than a past turn's header (e.g. an extra newline): the
        # model reads the generation prompt at inference, so training uses it too.
        prefix, header_mismatch = "", True
    else:
        raise ChatTemplateError(
            f"{name} starts a past assistant turn with {head[-40:]!r} but its generation prompt ends with "
            f"{generation_prompt[-40:]!r}: neither extends the other, so a training example cannot read the "
            "prompt the model sees at inference"
        )
    eot_text, eot_id = _end_of_turn(tokenizer, after, name)
    layout = TurnLayout(generation_prompt, prefix, eot_text, eot_id, after[len(eot_text) :], head, header_mismatch)
    if prefix:
        _announce_prefix(name, prefix)
    return layout


@lru_cache(maxsize=16)
def _announce_prefix(name: str, prefix: str) -> None:
    log.info(
        "%s writes %r after the generation prompt of the last assistant turn: it is part of the prompt for "
        "training (not supervised), DAS scoring and evaluation alike", name, prefix,
    )


def generation_prompt(tokenizer, history: Sequence[Mapping[str, str]]) -> str:
    """Return the text the student reads before answering ``history``: generation prompt + assistant prefix."""
    return turn_layout(tokenizer, history).prompt


@dataclass(frozen=True)
class RenderedTurn:
    """One conversation rendered as prompt + response + end-of-turn + tail (texts and the layout)."""

    layout: TurnLayout
    response: str
    #: The template's own rendering of the whole conversation differs from this one: it rewrites
    #: the response (e.g. Qwen3's hybrid template strips leading newlines or moves a ``<think>``
    #: block out of it). Training still uses the response as scored and kept by DAS.
    response_rewritten: bool


def render_turn(tokenizer, messages: Sequence[Mapping[str, str]]) -> RenderedTurn:
    """Return ``messages`` (history + final assistant message) laid out as prompt, response, end-of-turn and tail."""
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError("a rendered turn must end with an assistant message")
    layout = turn_layout(tokenizer, messages[:-1])
    response = messages[-1]["content"]
    full = _render(tokenizer, messages, add_generation_prompt=False)
    rewritten = full != layout.head + response + layout.end_of_turn + layout.tail
    return RenderedTurn(layout, response, rewritten)


__all__ = [
    "END_OF_TURN_TOKENS",
    "PROBE",
    "ChatTemplateError",
    "RenderedTurn",
    "TurnLayout",
    "end_of_turn_ids",
    "generation_prompt",
    "render_turn",
    "template_name",
    "turn_layout",
]
