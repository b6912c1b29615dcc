"""Which route the analyses take to the teacher, decided from the model and checked against the server, never silently.

Three routes (docs/teacher.md, "Which analyses run, and how"):

* ``local``: the local teacher (``teacher.backend: local``): teacher forcing and a prompt that
  ends with the student's prefix;
* ``harmony``: gpt-oss, whose server renders harmony itself (vLLM): raw prompts on
  ``/v1/completions`` (:mod:`dasd_utils.teacher.raw_completions`);
* ``chat``: a chat-template model: ``prompt_logprobs`` and ``continue_final_message`` on
  ``/v1/chat/completions`` (:mod:`dasd_utils.teacher.prompt_logprobs`, the teacher backend).

:func:`decide` reads the teacher tokenizer (``teacher.tokenizer``, else ``teacher.model``: the Hub's
``openai/gpt-oss-120b`` on Colab): harmony when it holds harmony's special tokens. When it cannot
be loaded, the model's name decides (``gpt-oss`` in it) and the route says so. On the harmony
route, :func:`check_rendering` asks the server how it renders one chat request (one request,
``max_tokens: 1``, ``return_token_ids``) and compares it token for token with
:func:`dasd_utils.teacher.harmony.render_chat`: a server that renders otherwise stops the analysis
with the first difference shown, since P_T would not be conditioned like the teacher's own
generation.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..prompts import build_messages
from ..secrets import scrub
from .harmony import is_harmony, reasoning_effort, render_chat, rendered_date

#: What to do when the harmony route cannot be taken.
WAY_OUT = ("The harmony route needs gpt-oss served by vLLM (its chat API and /v1/completions with prompt_logprobs). "
           "Use such a server, the local teacher (teacher.backend=local) on a GPU, or skip these analyses "
           "(analyses.provenance=false, analyses.mixed_policy=false).")

_LOCK = threading.Lock()
_TOKENIZERS: dict[str, tuple[Any, str | None]] = {}
_RENDERING: dict[str, dict[str, Any]] = {}


class RouteUnavailable(RuntimeError):
    """The server does not render the teacher's conversations as the harmony route writes them."""


@dataclass
class Route:
    """How the analyses reach the teacher: ``kind`` (local, chat, harmony) and why."""

    kind: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def teacher_tokenizer(cfg) -> tuple[Any, str | None]:
    """Return (the teacher tokenizer, None) or (None, why it could not be loaded); loaded once per name."""
    name = cfg.teacher.tokenizer or cfg.teacher.model
    with _LOCK:  # a first import of transformers from several threads can fail
        if name not in _TOKENIZERS:
            try:
                from transformers import AutoTokenizer

                _TOKENIZERS[name] = (AutoTokenizer.from_pretrained(name, trust_remote_code=False), None)
            except Exception as exc:  # noqa: BLE001 - offline, unknown name...: said in the route
                _TOKENIZERS[name] = (None, scrub(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"))
        return _TOKENIZERS[name]


def decide(cfg) -> Route:
    """Return the route of ``cfg``'s teacher (no request is sent)."""
    t = cfg.teacher
    if t.backend == "local":
        return Route("local", "the local teacher: teacher forcing in its own prompt")
    name = t.tokenizer or t.model
    tokenizer, error = teacher_tokenizer(cfg)
    if tokenizer is not None:
        harmony = is_harmony(tokenizer)
        why = (f"the teacher tokenizer '{name}' holds harmony's special tokens: gpt-oss, rendered by the server itself"
               if harmony else f"the teacher tokenizer '{name}' has no harmony tokens: a chat-template model")
    else:
        harmony = "gpt-oss" in t.model.lower()
        why = (f"decided from the model name '{t.model}' ({'gpt-oss' if harmony else 'not gpt-oss'}): the teacher "
               f"tokenizer '{name}' could not be loaded ({error}); set teacher.tokenizer to a loadable one")
    return Route("harmony" if harmony else "chat", why)


#: The conversation the rendering check sends (the probe question of the prompt-scoring preflight).
def _probe_messages(cfg) -> list[dict[str, str]]:
    from .prompt_logprobs import PROBE_ROW

    return build_messages(PROBE_ROW, cfg.system_prompt)


def _difference(ours: list[int], theirs: list[int], decode: Callable[[list[int]], str]) -> str:
    k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    around = slice(max(0, k - 6), k + 6)
    return (f"first difference at prompt token {k} of {len(theirs)}: the server has {decode(theirs[around])!r}, "
            f"the harmony route {decode(ours[around])!r}")


def check_rendering(cfg, error: Callable[[str], Exception] = RouteUnavailable) -> dict[str, Any]:
    """Return how the server's rendering of a chat request compares with :func:`render_chat` (checked once per endpoint).

    ``{"compared": True, "server_date": ...}`` when identical; ``{"compared": False, "note": ...}``
    when the server returns no prompt token ids (the route then goes on, and says so). Raises
    ``error`` (a message naming the host and the first difference) when they differ, or when the
    request fails.
    """
    import openai

    from .api import endpoint_host, short_error
    from .raw_completions import CompletionsClient

    t = cfg.teacher
    key = json.dumps([t.base_url, t.model, t.extra_body, cfg.system_prompt], sort_keys=True, default=str)
    if key in _RENDERING:
        return _RENDERING[key]
    tokenizer, why = teacher_tokenizer(cfg)
    host = endpoint_host(t.base_url)
    if tokenizer is None:
        raise error(f"teacher at {host}: the harmony route needs the teacher tokenizer ({why}); set teacher.tokenizer "
                    "to a loadable one (a local folder works offline)")
    messages = _probe_messages(cfg)
    client = CompletionsClient(cfg, error).client
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=t.model, messages=messages, max_tokens=1, temperature=0.0,
            extra_body={**dict(t.extra_body or {}), "return_token_ids": True})
        data = json.loads(raw.http_response.text)
    except openai.APIStatusError as exc:
        raise error(scrub(f"teacher at {host}: the rendering check (one chat request, max_tokens 1) was refused "
                          f"(HTTP {exc.status_code}: {short_error(exc)}). {WAY_OUT}")) from None
    except Exception as exc:  # noqa: BLE001 - connection, timeout, not JSON
        raise error(scrub(f"teacher at {host}: the rendering check failed ({type(exc).__name__}: {short_error(exc)}). "
                          f"{WAY_OUT}")) from None
    ids = data.get("prompt_token_ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids:
        verdict = {"compared": False, "note": "the server returned no prompt_token_ids for a chat request: its harmony "
                   "rendering could not be compared with the route's (P_T assumes vLLM's rendering)"}
    else:
        decode = lambda part: tokenizer.decode(part, skip_special_tokens=False)  # noqa: E731
        date = rendered_date(decode(ids))
        ours = tokenizer(render_chat(messages, date, reasoning_effort(t.extra_body)), add_special_tokens=False)["input_ids"]
        if list(ours) != list(ids):
            raise error(scrub(
                f"teacher at {host}: the server renders a chat request differently from the harmony route ("
                f"{_difference(list(ours), list(ids), decode)}): P_T and continuations would not be conditioned as "
                f"the teacher's own generation was. {WAY_OUT}"))
        verdict = {"compared": True, "server_date": date, "prompt_tokens": len(ids)}
    _RENDERING[key] = verdict
    return verdict


def forget_checks() -> None:
    """Forget the rendering checks made in this process (a new server at the same address)."""
    with _LOCK:
        _RENDERING.clear()


__all__ = ["Route", "RouteUnavailable", "WAY_OUT", "check_rendering", "decide", "forget_checks", "teacher_tokenizer"]
