"""The ``openai`` teacher backend: any OpenAI-compatible chat endpoint, concurrent, with retries.

Uses ``openai.AsyncOpenAI`` with ``max_retries=0``: retries are ours, so that they are visible,
bounded and shared between requests.

* Concurrency: at most ``teacher.concurrency`` requests in flight (an ``asyncio.Semaphore``).
* Retries, up to ``teacher.max_retries`` per request: 429 (waits ``Retry-After`` /
  ``retry-after-ms`` when given, and pauses *every* worker until then, so a rate limit does not
  turn into a retry storm), 408/409/5xx, timeouts, connection errors and malformed bodies, with
  exponential backoff and jitter otherwise.
* 401, 403 and 404 stop the whole run at once (:class:`TeacherFatalError`): a wrong key, a model
  the key may not use or a wrong URL will not fix itself by retrying.
* Other 4xx (400, 422...) fail that request only; the record keeps the (scrubbed) message.

Provider variants handled by :func:`parse_completion`: ``logprobs`` absent / null /
``{"content": null}`` (``tokens`` is then null and ``logprobs_note`` says why: no probability is
ever invented), ``content`` null because reasoning used up ``max_tokens``, a separate
``reasoning`` / ``reasoning_content`` field (kept), ``bytes`` absent, OpenAI-style ``bytes:\\x..``
placeholders for partial UTF-8 tokens (token strings are rebuilt from the bytes), and logprobs
that also cover the reasoning (trimmed to the content when a token boundary allows it).
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import email.utils
import json
import logging
import math
import random
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from .config import Config, require_api_endpoint
from .secrets import get_api_key, install_log_scrubber, scrub

log = logging.getLogger(__name__)

#: Longest wait accepted from a Retry-After header (seconds); longer values are capped.
MAX_RETRY_AFTER_S = 600.0


class TeacherFatalError(RuntimeError):
    """The endpoint refused the run (401/403/404): retrying cannot help; the message says what to check."""


class MalformedResponse(ValueError):
    """The endpoint answered 200 with a body that is not a chat completion."""


# ----------------------------------------------------------------------------- parsing
def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _rebuild_from_bytes(entries: list[dict[str, Any]]) -> list[str] | None:
    """Return token strings decoded incrementally from their bytes, or None when a token has none."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for entry in entries:
        raw = entry.get("bytes")
        if not isinstance(raw, list):
            return None
        out.append(decoder.decode(bytes(raw)))
    tail = decoder.decode(b"", final=True)
    if tail and out:
        out[-1] += tail
    return out


def normalize_tokens(entries: Any, content: str | None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Return (``tokens`` for the record, a note or None) from a provider's ``logprobs.content``.

    Never invents a probability: a token without a finite logprob makes the whole list null.
    """
    if entries is None:
        return None, "logprobs.content is null"
    if not isinstance(entries, list):
        return None, f"logprobs.content is a {type(entries).__name__}, not a list"
    if content is None:
        return None, "no content to attach logprobs to"
    tokens = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None, "a logprobs entry has no token string"
        logprob = entry.get("logprob")
        if not isinstance(logprob, (int, float)) or isinstance(logprob, bool) or math.isnan(logprob) or logprob > 1e-6:
            return None, f"a token has no valid logprob ({logprob!r})"
        raw = entry.get("bytes")
        tokens.append({"token": entry["token"], "logprob": float(logprob), "bytes": list(raw) if isinstance(raw, list) else None})
    note = None
    if "".join(t["token"] for t in tokens) != content:
        rebuilt = _rebuild_from_bytes(tokens)
        if rebuilt is not None and "".join(rebuilt) == content:
            for token, text in zip(tokens, rebuilt):
                token["token"] = text
            note = "token strings rebuilt from bytes"
        else:
            # Logprobs covering reasoning + content: keep the tokens after the boundary where content starts.
            texts = rebuilt if rebuilt is not None and content in "".join(rebuilt) else [t["token"] for t in tokens]
            suffix = ""
            for i in range(len(texts) - 1, -1, -1):
                suffix = texts[i] + suffix
                if suffix == content:
                    tokens = tokens[i:]
                    for token, text in zip(tokens, texts[i:]):
                        token["token"] = text
                    note = f"first {i} logprob tokens (reasoning) dropped"
                    break
                if len(suffix) > len(content):
                    break
    return tokens, note


def parse_completion(data: Any) -> dict[str, Any]:
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
        tokens, note = None, "no logprobs in the response (the provider may not support them)"
    elif choice["logprobs"] is None:
        tokens, note = None, "logprobs is null"
    elif not isinstance(choice["logprobs"], dict):
        tokens, note = None, "logprobs is not an object"
    else:
        tokens, note = normalize_tokens(choice["logprobs"].get("content"), content)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    return {
        "content": content,
        "reasoning": reasoning,
        "tokens": tokens,
        "logprobs_note": note,
        "finish_reason": choice.get("finish_reason"),
        "usage": usage,
        "response_model": data.get("model"),
        "error": None,
    }


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


# ----------------------------------------------------------------------------- client
class OpenAITeacher:
    """Concurrent chat completions against one OpenAI-compatible endpoint."""

    def __init__(self, cfg: Config, model_label: str) -> None:
        self.cfg = cfg
        self.model_label = model_label
        self._key: str | None = None

    def _api_key(self) -> str:
        if self._key is None:
            require_api_endpoint(self.cfg)  # never send the key to api.openai.com by default
            self._key = get_api_key(self.cfg.teacher.api_key_env, self.cfg.teacher.dotenv_path)
            install_log_scrubber()
        return self._key

    def generate(self, requests: Sequence[Any], on_result: Callable[[Any, dict[str, Any]], None]) -> None:
        """Send every request and call ``on_result(request, raw_result)`` as each one completes.

        Works from plain Python and from a running event loop (Jupyter): in the latter case the
        requests run in a worker thread with their own loop. Raises TeacherFatalError on 401/403/404.
        """
        if not requests:
            return
        key = self._api_key()
        # One INFO line per HTTP request would bury the progress bar (hundreds of requests);
        # warnings and errors still show. Only when nobody chose a level for these loggers.
        for name in ("httpx", "httpx2"):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
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
        client = openai.AsyncOpenAI(api_key=key, base_url=t.base_url, max_retries=0, timeout=t.timeout_s)
        self._semaphore = asyncio.Semaphore(t.concurrency)
        self._pause_until = 0.0
        self._fatal_error: TeacherFatalError | None = None
        rng = random.Random(t.seed)
        try:
            tasks = [asyncio.create_task(self._one(client, request, rng)) for request in requests]
            try:
                for finished in asyncio.as_completed(tasks):
                    request, result = await finished
                    on_result(request, result)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if self._fatal_error is not None:
                    raise self._fatal_error from None
                raise
        finally:
            await client.close()

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
            404: f"model '{t.model}' or the URL {t.base_url} was not found: check teacher.model and teacher.base_url "
            "(Infomaniak: https://api.infomaniak.com/2/ai/<product_id>/openai/v1)",
        }.get(status, "the endpoint refused the request")
        return TeacherFatalError(scrub(f"teacher API answered {status}: {what}. Server said: {_short(exc)}. Run stopped, nothing retried."))

    async def _one(self, client: Any, request: Any, rng: random.Random) -> tuple[Any, dict[str, Any]]:
        import openai

        t = self.cfg.teacher
        kwargs: dict[str, Any] = {
            "model": t.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "logprobs": True,
        }
        if t.seed is not None:
            kwargs["seed"] = t.seed
        if t.extra_body:
            kwargs["extra_body"] = dict(t.extra_body)
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
                    result = parse_completion(data)
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
                    message = scrub(f"HTTP {status}: {_short(exc)}")
                    if status < 500 and status not in (408, 409):
                        return request, _failure(message, attempt + 1, errors, started)
                    errors.append(message)
                except openai.APITimeoutError:
                    errors.append(f"timeout after {t.timeout_s:g} s")
                except openai.APIConnectionError as exc:
                    errors.append(scrub(f"connection error: {_short(exc)}"))
                except (MalformedResponse, openai.APIResponseValidationError) as exc:
                    errors.append(scrub(f"malformed response: {_short(exc)}"))
            attempt += 1
            if attempt > t.max_retries:
                return request, _failure(f"gave up after {attempt} attempts; last error: {errors[-1]}", attempt, errors, started)
            await asyncio.sleep(delay if delay is not None else self._backoff(attempt - 1, rng))


def _short(exc: Any, limit: int = 300) -> str:
    """Return a one-line, length-limited, scrubbed description of an exception."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return scrub(text if len(text) <= limit else text[:limit] + "...")


def _failure(message: str, attempts: int, errors: list[str], started: float) -> dict[str, Any]:
    return {
        "content": None,
        "reasoning": None,
        "tokens": None,
        "logprobs_note": None,
        "finish_reason": None,
        "usage": None,
        "response_model": None,
        "latency_s": round(time.perf_counter() - started, 4),
        "attempts": attempts,
        "retry_errors": [scrub(e) for e in errors] or None,
        "error": scrub(message),
    }


__all__ = ["MalformedResponse", "OpenAITeacher", "TeacherFatalError", "normalize_tokens", "parse_completion", "parse_retry_after"]
