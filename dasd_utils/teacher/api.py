"""The ``openai`` teacher backend: any OpenAI-compatible chat endpoint, concurrent, with retries.

Uses ``openai.AsyncOpenAI`` with ``max_retries=0``: retries are ours, so that they are visible,
bounded and shared between requests.

* **Preflight** (:class:`Preflight`): the first request of every stage goes alone, so a 401/403/404
  costs one request, and (``teacher.preflight``) its answer is checked before the others go out:
  auth, model name, content present, logprobs present and alignable on the content, reasoning
  field, ``finish_reason=length`` (``max_tokens`` too small for gpt-oss's analysis channel). When
  the answer has no logprobs, the same request is sent once more with the other ``top_logprobs``
  setting (llama.cpp and older vLLM need ``top_logprobs >= 1``; some servers reject it), and the
  verdict says which one the endpoint needed; the run then uses it. A fatal verdict (401/403/404,
  an unreachable host, no usable logprobs while DAS needs them) stops the run.
* During the run, ``teacher.max_consecutive_without_logprobs`` consecutive answers without usable
  logprobs stop it too (:class:`TeacherFatalError`).
* Concurrency: at most ``teacher.concurrency`` requests in flight (an ``asyncio.Semaphore``).
* Retries, up to ``teacher.max_retries`` per request: 429 (waits ``Retry-After`` /
  ``retry-after-ms`` when given, and pauses *every* worker until then, so a rate limit does not
  turn into a retry storm), 408/409/5xx, timeouts, connection errors (named with the host, never
  the credentials) and malformed bodies, with exponential backoff and jitter otherwise.
* 401, 403 and 404 stop the whole run at once (:class:`TeacherFatalError`): a wrong key, a model
  the key may not use or a wrong URL will not fix itself by retrying.
* Other 4xx (400, 422...) fail that request only; the record keeps the (scrubbed) message.

Parsing a response body and making its logprobs usable: :mod:`dasd_utils.teacher.responses`
(re-exported here).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import math
import random
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping, Sequence

from ..config import Config, require_api_endpoint
from ..secrets import get_api_key, install_log_scrubber, quiet_http_request_logs, scrub
from .responses import (
    MalformedResponse,
    TeacherTokenizer,
    TokenizerUnavailable,
    make_token_decoder,
    normalize_logprobs,
    normalize_tokens,
    parse_completion,
)

log = logging.getLogger(__name__)

#: Extra parameters of a continuation request (vLLM's chat API). A server that does not know them
#: refuses the request or starts a new answer: the mixed-policy preflight says so.
CONTINUE_FINAL_MESSAGE = {"continue_final_message": True, "add_generation_prompt": False}

#: Longest wait accepted from a Retry-After header (seconds); longer values are capped.
MAX_RETRY_AFTER_S = 600.0


class TeacherFatalError(RuntimeError):
    """The endpoint refused the run (401/403/404): retrying cannot help; the message says what to check."""


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Return the delay asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date), or None."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            except (TypeError, ValueError):
                parsed = None
            if parsed is None:
                continue
            seconds = parsed.timestamp() - time.time()
        if math.isfinite(seconds):
            return max(0.0, min(seconds, MAX_RETRY_AFTER_S))
    return None


# ----------------------------------------------------------------------------- preflight
class TeacherPreflightError(TeacherFatalError):
    """The preflight request showed that the run cannot give what the pipeline needs; the message is the verdict."""


def endpoint_host(base_url: str | None) -> str:
    """Return ``host[:port]`` of an endpoint URL, without credentials or path (for messages)."""
    parts = urllib.parse.urlsplit(base_url or "https://api.openai.com/v1")
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def _url_without_secrets(base_url: str | None) -> str:
    """Return ``scheme://host[:port]/path`` of an endpoint URL: no user-info, query or fragment (they may hold keys)."""
    parts = urllib.parse.urlsplit(base_url or "https://api.openai.com/v1")
    return f"{parts.scheme}://{endpoint_host(base_url)}{parts.path}"


class Preflight:
    """The verdict on one probe request: lines marked ``ok`` / ``warn`` / ``FATAL``, and the setting that worked."""

    def __init__(self, host: str, model: str) -> None:
        self.host = host
        self.model = model
        self.lines: list[tuple[str, str]] = []
        self.top_logprobs: int | None = None
        self.requests = 0
        #: The top_logprobs settings the probe was sent with.
        self.tried: list[int | None] = []

    def add(self, level: str, text: str) -> None:
        self.lines.append((level, scrub(text)))

    @property
    def fatal(self) -> bool:
        return any(level == "FATAL" for level, _ in self.lines)

    @property
    def verdict(self) -> str:
        if self.fatal:
            return "stop"
        return "go, with warnings" if any(level == "warn" for level, _ in self.lines) else "go"

    def text(self) -> str:
        """Return the verdict as printed: a header, one line per check, what happens next."""
        head = f"teacher preflight: {self.requests} request(s) to {self.host}, model '{self.model}' -> {self.verdict.upper()}"
        body = [f"  [{level}] {text}" for level, text in self.lines]
        tail = ("  Run stopped before any other request was sent; fix the [FATAL] line(s) and re-run "
                "(completed requests are kept and never sent again).") if self.fatal else None
        return "\n".join([head, *body, *([tail] if tail else [])])

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "host": self.host, "requests": self.requests, "top_logprobs": self.top_logprobs,
                "checks": [{"level": level, "text": text} for level, text in self.lines]}


def _no_logprobs_message(cfg: Config, note: str | None, tried: Sequence[int | None]) -> str:
    t = cfg.teacher
    settings = " and ".join(f"top_logprobs={v}" if v is not None else "without top_logprobs" for v in tried)
    return (f"no usable logprobs: {note or 'none returned'} (tried {settings}). DAS needs the "
            f"teacher's token logprobs: use a provider or server that returns them for '{t.model}' (vLLM, SGLang "
            "without a reasoning parser, OpenAI), or set teacher.require_logprobs=false to generate SFT data only")


# ----------------------------------------------------------------------------- client
class OpenAITeacher:
    """Concurrent chat completions against one OpenAI-compatible endpoint."""

    def __init__(self, cfg: Config, model_label: str) -> None:
        self.cfg = cfg
        self.model_label = model_label
        self._key: str | None = None
        #: The top_logprobs setting sent (the preflight may change it for the rest of the run).
        self.top_logprobs: int | None = cfg.teacher.top_logprobs
        #: The last preflight's verdict (``Preflight.to_dict()``), for the stage summary.
        self.last_preflight: dict[str, Any] | None = None
        self._tokenizer = TeacherTokenizer(
            cfg.teacher.tokenizer or cfg.teacher.model,
            "the logprob tokens are 'token_id:N' strings (vLLM's return_tokens_as_token_ids)",
        )

    def _api_key(self) -> str:
        if self._key is None:
            require_api_endpoint(self.cfg)  # never send the key to api.openai.com by default
            self._key = get_api_key(self.cfg.teacher.api_key_env, self.cfg.teacher.dotenv_path)
            install_log_scrubber()
        return self._key

    def decode_token_id(self, token_id: int) -> bytes | str:
        """Return the exact bytes of a teacher token id (loads ``teacher.tokenizer`` or the model's on first use, once)."""
        return self._tokenizer(token_id)

    def generate(self, requests: Sequence[Any], on_result: Callable[[Any, dict[str, Any]], None]) -> None:
        """Send every request and call ``on_result(request, raw_result)`` as each one completes.

        The first request goes alone (preflight); the others follow only when its verdict is not
        fatal. Works from plain Python and from a running event loop (Jupyter): in the latter case
        the requests run in a worker thread with their own loop. Raises TeacherFatalError on
        401/403/404, a fatal preflight (:class:`TeacherPreflightError`) or too many consecutive
        answers without usable logprobs.
        """
        if not requests:
            return
        key = self._api_key()
        quiet_http_request_logs()
        coro = self._run_all(list(requests), on_result, key)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)  # plain Python: Ctrl-C cancels the requests
            return
        # A loop is already running (Jupyter): run ours in a worker thread, and make an interrupt
        # of the cell cancel the requests instead of waiting for all of them.
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="teacher-openai", daemon=True)
        thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
            try:
                future.result()
            except BaseException:
                future.cancel()
                concurrent.futures.wait([future], timeout=30)
                raise
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            if not thread.is_alive():
                loop.close()

    async def _run_all(self, requests: list[Any], on_result: Callable[[Any, dict[str, Any]], None], key: str) -> None:
        import openai

        t = self.cfg.teacher
        client = openai.AsyncOpenAI(api_key=key, base_url=t.base_url, max_retries=0, timeout=t.timeout_s,
                                    default_query={k: str(v) for k, v in t.default_query.items()} or None)
        self._semaphore = asyncio.Semaphore(t.concurrency)
        self._pause_until = 0.0
        self._fatal_error: TeacherFatalError | None = None
        self._without_logprobs = 0
        rng = random.Random(t.seed)
        try:
            # The first request goes alone: a refused key or a server without logprobs costs one request.
            # A request refused on its own (400, 422) does not tell about the endpoint: the next one probes.
            check = Preflight(endpoint_host(t.base_url), t.model)
            pending = list(requests)
            for probe in range(1, MAX_PROBES + 1):
                request, result = await self._preflight(check, client, pending.pop(0), rng,
                                                        last=not pending or probe == MAX_PROBES)
                on_result(request, result)
                if self._fatal_error is not None:
                    raise self._fatal_error
                if not _refused_alone(result) or not pending:
                    break
            tasks = [asyncio.create_task(self._one(client, request, rng)) for request in pending]
            handed: set[int] = set()
            try:
                for finished in asyncio.as_completed(tasks):
                    request, result = await finished
                    handed.add(id(request))
                    on_result(request, result)
                    if self._fatal_error is not None:
                        raise self._fatal_error
            except BaseException:
                for task in tasks:
                    task.cancel()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                if self._fatal_error is not None:
                    # Answers that arrived while stopping were paid for: keep them too.
                    for outcome in outcomes:
                        if isinstance(outcome, tuple) and id(outcome[0]) not in handed:
                            on_result(*outcome)
                    raise self._fatal_error from None
                raise
        finally:
            await client.close()

    def _usable(self, result: Mapping[str, Any]) -> bool:
        usable = bool(result.get("logprobs_usable"))
        if self.cfg.teacher.reasoning_source == "analysis":
            usable = usable and bool(result.get("reasoning_tokens"))
        return usable

    def _count_logprobs(self, result: Mapping[str, Any]) -> None:
        """Stop the run after K consecutive answers (with content) without usable logprobs."""
        t = self.cfg.teacher
        if result.get("error") is not None or not result.get("content"):
            return
        self._without_logprobs = 0 if self._usable(result) else self._without_logprobs + 1
        limit = t.max_consecutive_without_logprobs
        if t.require_logprobs and limit and self._without_logprobs >= limit and self._fatal_error is None:
            self._fatal_error = TeacherFatalError(scrub(
                f"teacher at {endpoint_host(t.base_url)}: {limit} consecutive answers came without usable logprobs; "
                + _no_logprobs_message(self.cfg, result.get("logprobs_note"), [self.top_logprobs])
                + ". Run stopped; what was received is kept, re-run to continue."
            ))

    async def _preflight(self, check: Preflight, client: Any, request: Any, rng: random.Random,
                         last: bool) -> tuple[Any, dict[str, Any]]:
        """Return a probe request's result after checking the endpoint with it; sets the run's fatal error."""
        t = self.cfg.teacher
        check.requests += 1
        check.tried = [self.top_logprobs]
        try:
            request, result = await self._one(client, request, rng, self.top_logprobs)
        except TeacherFatalError as exc:
            check.add("FATAL", str(exc))
            self._report(check)
            raise
        if not t.preflight:
            return request, result
        # Another top_logprobs setting when this one was refused or gave no logprobs (llama.cpp, older vLLM).
        other = None if self.top_logprobs else 1
        error = str(result.get("error") or "")
        rejected = _refused_alone(result) and "logprobs" in error.lower() and self.top_logprobs is not None
        missing = not error and result.get("content") and result.get("tokens") is None
        if rejected or missing:
            before = result
            request, result = await self._one(client, request, rng, other)
            check.requests += 1
            check.tried.append(other)
            if result.get("error") is None and result.get("tokens") is not None:
                why = "rejects" if rejected else "returns no logprobs with"
                check.add("warn", f"the endpoint {why} top_logprobs={self.top_logprobs}; top_logprobs={other} works: "
                          f"used for the rest of the run (set teacher.top_logprobs={'null' if other is None else other} "
                          "to skip this retry)")
                self.top_logprobs = other
            elif result.get("error") is not None:
                result = before
        check.top_logprobs = self.top_logprobs
        if _refused_alone(result) and not last:
            check.add("warn", f"probe request refused on its own ({result['error']}); the next request probes")
            return request, result
        self._judge(check, result)
        self._report(check)
        if check.fatal:
            self._fatal_error = TeacherPreflightError(check.text())
        return request, result

    def _judge(self, check: Preflight, result: Mapping[str, Any]) -> None:
        t = self.cfg.teacher
        if result.get("error") is not None:
            check.add("FATAL", f"the probe request failed: {result['error']}")
            return
        check.add("ok", "authentication and model accepted")
        if result.get("response_model") and result["response_model"] != t.model:
            check.add("ok", f"the server answered as model '{result['response_model']}'")
        content, finish = result.get("content"), result.get("finish_reason")
        if not content:
            level = "FATAL" if finish == "length" else "warn"
            hint = (f" (finish_reason=length: the analysis channel used up max_tokens={t.max_tokens}; raise "
                    "teacher.max_tokens or lower extra_body.reasoning_effort)") if finish == "length" else ""
            check.add(level, f"the answer has no content{hint}")
            return
        check.add("ok", f"content present ({len(content)} characters)")
        if finish == "length":
            check.add("warn", f"finish_reason=length: the answer was cut at max_tokens={t.max_tokens}; "
                      "raise teacher.max_tokens (gpt-oss writes its analysis first)")
        note = result.get("logprobs_note")
        if not result.get("logprobs_usable"):  # none, or not alignable on the content
            check.add("FATAL" if t.require_logprobs else "warn", _no_logprobs_message(self.cfg, note, check.tried))
        else:
            check.add("ok", f"logprobs present and aligned on the content ({len(result['tokens'])} tokens"
                      + (f"; {note}" if note else "") + ")")
        reasoning = result.get("reasoning")
        if reasoning:
            check.add("ok", f"reasoning field present ({len(reasoning)} characters); teacher.reasoning_source="
                      f"{t.reasoning_source}" + (": P_T is that of the content, written after this hidden analysis"
                                                 if t.reasoning_source == "content" else ""))
        else:
            check.add("ok", "no reasoning field in the answer")
        if t.reasoning_source == "analysis" and not result.get("reasoning_tokens"):
            check.add("FATAL" if t.require_logprobs else "warn",
                      "teacher.reasoning_source=analysis needs the analysis text and its logprobs, and "
                      + ("the answer has no reasoning field" if not reasoning else "the logprobs do not cover it")
                      + " (vLLM serving gpt-oss returns both; use reasoning_source=content otherwise)")

    def _report(self, check: Preflight) -> None:
        self.last_preflight = check.to_dict()
        print(check.text(), flush=True)

    async def _wait_for_pause(self) -> None:
        while True:
            delay = self._pause_until - time.monotonic()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, rng: random.Random) -> float:
        t = self.cfg.teacher
        ceiling = min(t.backoff_max_s, t.backoff_base_s * (2 ** attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)  # "equal jitter": never 0, never in lockstep

    def _fatal(self, exc: Any) -> TeacherFatalError:
        t = self.cfg.teacher
        status = getattr(exc, "status_code", "?")
        what = {
            401: f"the API key was refused: check the key in the variable {t.api_key_env} (its value is not shown)",
            403: f"the key in {t.api_key_env} may not use model '{t.model}' at this endpoint",
            404: f"model '{t.model}' or the URL {_url_without_secrets(t.base_url)} was not found: check teacher.model and teacher.base_url "
            "(Infomaniak: https://api.infomaniak.com/2/ai/<product_id>/openai/v1)",
        }.get(status, "the endpoint refused the request")
        return TeacherFatalError(scrub(f"teacher API answered {status}: {what}. Server said: {short_error(exc)}. Run stopped, nothing retried."))

    def _connection_error(self, exc: Any) -> str:
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {short_error(cause, 160)}" if cause is not None else short_error(exc)
        return scrub(f"connection error to {endpoint_host(self.cfg.teacher.base_url)}: {detail}")

    async def _one(self, client: Any, request: Any, rng: random.Random, top_logprobs: Any = "run") -> tuple[Any, dict[str, Any]]:
        import openai

        t = self.cfg.teacher
        top = self.top_logprobs if top_logprobs == "run" else top_logprobs
        kwargs: dict[str, Any] = {
            "model": t.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "logprobs": True,
        }
        if top is not None:
            kwargs["top_logprobs"] = top
        if t.seed is not None:
            kwargs["seed"] = t.seed
        if t.extra_body:
            kwargs["extra_body"] = dict(t.extra_body)
        prefill = getattr(request, "prefill", None)
        if prefill is not None:
            # Mixed-policy distillation: the teacher continues the answer it is given (vLLM:
            # continue_final_message renders the last assistant message open, without a new turn).
            kwargs["messages"] = [*request.messages, {"role": "assistant", "content": prefill}]
            kwargs["extra_body"] = {**kwargs.get("extra_body", {}), **CONTINUE_FINAL_MESSAGE}
        attempt = 0
        errors: list[str] = []
        while True:
            await self._wait_for_pause()
            delay: float | None = None
            async with self._semaphore:
                if self._fatal_error is not None:  # another request hit 401/403/404: send nothing more
                    raise self._fatal_error
                started = time.perf_counter()
                try:
                    raw = await client.chat.completions.with_raw_response.create(**kwargs)
                    body = raw.http_response.text
                    try:
                        data = json.loads(body)
                    except json.JSONDecodeError as exc:
                        raise MalformedResponse(f"response body is not JSON ({exc.msg} at char {exc.pos})") from None
                    result = parse_completion(data, self.decode_token_id)
                    self._count_logprobs(result)  # before the slot is freed: the next request sees a stop
                    result["latency_s"] = round(time.perf_counter() - started, 4)
                    result["attempts"] = attempt + 1
                    result["retry_errors"] = errors or None
                    return request, result
                except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                    self._fatal_error = self._fatal(exc)
                    raise self._fatal_error from None
                except openai.RateLimitError as exc:
                    retry_after = parse_retry_after(exc.response.headers)
                    delay = retry_after if retry_after is not None else self._backoff(attempt, rng)
                    # Everyone waits: the limit is per key, not per request.
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                    errors.append(scrub(f"429 rate limited (waited {delay:.2f} s)"))
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    message = scrub(f"HTTP {status}: {short_error(exc)}")
                    if status < 500 and status not in (408, 409):
                        return request, _failure(message, attempt + 1, errors, started)
                    errors.append(message)
                except openai.APITimeoutError:
                    errors.append(f"timeout after {t.timeout_s:g} s waiting for {endpoint_host(t.base_url)}")
                except openai.APIConnectionError as exc:
                    errors.append(self._connection_error(exc))
                except (MalformedResponse, openai.APIResponseValidationError) as exc:
                    errors.append(scrub(f"malformed response: {short_error(exc)}"))
            attempt += 1
            if attempt > t.max_retries:
                return request, _failure(f"gave up after {attempt} attempts; last error: {errors[-1]}", attempt, errors, started)
            await asyncio.sleep(delay if delay is not None else self._backoff(attempt - 1, rng))


#: Requests refused one by one (400, 422) before the preflight gives up probing.
MAX_PROBES = 3


def _refused_alone(result: Mapping[str, Any]) -> bool:
    """Return True when a request failed with a 4xx of its own (not 401/403/404, which stop the run)."""
    return str(result.get("error") or "").startswith("HTTP 4")


def short_error(exc: Any, limit: int = 300) -> str:
    """Return a one-line, length-limited, scrubbed description of an exception."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return scrub(text if len(text) <= limit else text[:limit] + "...")


def _failure(message: str, attempts: int, errors: list[str], started: float) -> dict[str, Any]:
    return {
        "content": None,
        "reasoning": None,
        "tokens": None,
        "reasoning_tokens": None,
        "logprobs_note": None,
        "logprobs_usable": False,
        "finish_reason": None,
        "usage": None,
        "response_model": None,
        "latency_s": round(time.perf_counter() - started, 4),
        "attempts": attempts,
        "retry_errors": [scrub(e) for e in errors] or None,
        "error": scrub(message),
    }


__all__ = [
    "CONTINUE_FINAL_MESSAGE",
    "MalformedResponse",
    "OpenAITeacher",
    "Preflight",
    "TeacherFatalError",
    "TeacherPreflightError",
    "TokenizerUnavailable",
    "endpoint_host",
    "make_token_decoder",
    "normalize_logprobs",
    "normalize_tokens",
    "parse_completion",
    "parse_retry_after",
    "short_error",
]
