"""Evaluation through an OpenAI-compatible server (as vLLM with --enable-lora), against a local fake server."""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dasd_utils import data, evaluation
from dasd_utils.config import load_config
from dasd_utils.data import read_jsonl
from dasd_utils.evaluation import EvaluationError
from dasd_utils.prompts import LETTERS, build_messages

SECRET = "sk-test-DO-NOT-LEAK-4242"
KEY_ENV = "DASD_EVAL_TEST_KEY"


class FakeServer:
    """A stdlib HTTP server speaking the two endpoints the evaluation uses.

    ``/v1/chat/completions``: answers "Final Answer: X" where X is chosen per served model by
    ``policy[model](question, gold)``. ``/v1/completions`` with ``echo``: returns per-token
    log-probabilities of the echoed prompt (the context as one token, then the continuation),
    the chosen letter scoring -0.1 and the others -2.0. ``echo_logprobs=False`` mimics servers
    that only return the generated token's log-probability.
    """

    def __init__(self, gold_by_question, policy, echo_logprobs=True):
        self.gold = gold_by_question
        self.policy = policy
        self.echo_logprobs = echo_logprobs
        self.fail = lambda model, question: False
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                model = body.get("model")
                if model not in outer.policy:
                    return self._send(404, {"error": {"message": f"model {model} does not exist", "type": "NotFound"}})
                if self.path.endswith("/chat/completions"):
                    user = body["messages"][-1]["content"]
                    question = re.search(r"^Question: (.*)$", user, re.M).group(1)
                    if outer.fail(model, question):
                        # a badly behaved server that echoes the caller's credentials in its error
                        return self._send(500, {"error": {"message": f"boom for {self.headers.get('Authorization')}"}})
                    letter = outer.policy[model](question, outer.gold[question])
                    content = f"<reasoning>The question is about {question[:20]}.</reasoning>\nFinal Answer: {letter}"
                    return self._send(200, {
                        "id": "x", "object": "chat.completion", "created": 0, "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
                    })
                if self.path.endswith("/completions"):
                    prompt = body["prompt"]
                    context, cont = prompt[:-2], prompt[-2:]
                    assert context.endswith("\nAnswer:") and cont[0] == " "
                    question = context.split("\n")[0][len("Question: "):]
                    letter = outer.policy[model](question, outer.gold[question])
                    lp = -0.1 if cont[1] == letter else -2.0
                    if outer.echo_logprobs and body.get("echo"):
                        logprobs = {"tokens": [context, cont, "\n"], "token_logprobs": [None, lp, -0.5],
                                    "text_offset": [0, len(context), len(prompt)], "top_logprobs": None}
                    else:
                        logprobs = {"tokens": ["\n"], "token_logprobs": [-0.5], "text_offset": [len(prompt)],
                                    "top_logprobs": None}
                    return self._send(200, {
                        "id": "y", "object": "text_completion", "created": 0, "model": model,
                        "choices": [{"index": 0, "text": prompt + "\n", "finish_reason": "length", "logprobs": logprobs}],
                        "usage": {"prompt_tokens": 60, "completion_tokens": 1, "total_tokens": 61},
                    })
                return self._send(404, {"error": {"message": "unknown path"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def run_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={
        "data.n_train": 4, "data.n_eval": 8, "eval.backend": "openai", "eval.api_key_env": KEY_ENV,
        "eval.max_new_tokens": 64, "eval.max_retries": 0, "eval.concurrency": 4,
        "eval.qualitative_index": 3, "eval.n_random_examples": 2,
        "eval.served_models": {"base": "smol-base"},
    })
    data.run_phase(cfg)
    rows = data.load_run_questions(cfg, "eval")
    # stage1's adapter is on this machine (fingerprinted); stage2 exists only on the server
    stage1 = cfg.run_dir / "sft" / "stage1"
    stage1.mkdir(parents=True)
    (stage1 / "adapter_config.json").write_text('{"r": 4}')
    (stage1 / "adapter_model.safetensors").write_bytes(b"not read by the openai backend")
    return cfg, rows


def _policy(rows):
    """base always says A, stage1 always gold, stage2 gold except on the first item."""
    first = rows[0]["question"]
    return {
        "smol-base": lambda q, gold: "A",
        "stage1": lambda q, gold: gold,
        "stage2": lambda q, gold: gold if q != first else LETTERS[(LETTERS.index(gold) + 1) % 5],
    }


def _all_text(folder):
    return "".join(p.read_text(errors="ignore") for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl"))


def test_openai_backend_end_to_end(run_cfg, caplog):
    cfg, rows = run_cfg
    gold = {r["question"]: r["answerKey"] for r in rows}
    for name in ("dasd_utils", "openai", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeServer(gold, _policy(rows)) as server:
        cfg.eval.base_url = server.base_url
        summary = evaluation.run_phase(cfg)
        n_first = len(server.requests)
        again = evaluation.run_phase(cfg)
        assert len(server.requests) == n_first, "a re-run must not call the server again"
    assert again["models"] == summary["models"]

    chats = [r for r in server.requests if r["path"].endswith("/chat/completions")]
    scores = [r for r in server.requests if r["path"] == "/v1/completions"]
    assert len(chats) == 3 * 8 and len(scores) == 3 * 8 * 5
    assert {r["auth"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert {r["body"]["model"] for r in chats} == {"smol-base", "stage1", "stage2"}
    by_question = {r["question"]: r for r in rows}
    for r in chats:
        body = r["body"]
        question = re.search(r"^Question: (.*)$", body["messages"][-1]["content"], re.M).group(1)
        assert body["messages"] == build_messages(by_question[question], cfg.system_prompt)
        assert body["temperature"] == 0 and body["max_tokens"] == 64
        # Qwen3's hybrid template in its non-thinking mode, as the hf backend renders it (vLLM's parameter).
        assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert all(r["body"]["echo"] is True and r["body"]["max_tokens"] == 1 for r in scores)

    n_a = sum(1 for r in rows if r["answerKey"] == "A")
    m = summary["models"]
    assert m["base"]["correct"] == n_a and m["stage1"]["correct"] == 8 and m["stage2"]["correct"] == 7
    assert m["base"]["answer_distribution"]["A"] == 8 and m["stage1"]["format_rate"] == 1.0
    assert [m[k]["loglik_correct"] for k in ("base", "stage1", "stage2")] == [n_a, 8, 7]
    assert m["stage1"]["adapter_fingerprint"] is not None and m["stage2"]["adapter_fingerprint"] is None
    comp = {(c["a"], c["b"]): c for c in summary["comparisons"]}
    assert comp[("stage1", "stage2")]["only_a_correct"] == 1 and comp[("stage1", "stage2")]["only_b_correct"] == 0
    assert read_jsonl(cfg.run_dir / "eval" / "predictions_stage2.jsonl")[0]["response"].startswith("<reasoning>")

    # the key never lands in a file, a log or the returned summary
    assert SECRET not in _all_text(cfg.run_dir)
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(summary)


def test_server_without_prompt_logprobs_gives_no_loglik_metric(run_cfg):
    cfg, rows = run_cfg
    cfg.eval.models = ["base"]
    gold = {r["question"]: r["answerKey"] for r in rows}
    with FakeServer(gold, _policy(rows), echo_logprobs=False) as server:
        cfg.eval.base_url = server.base_url
        summary = evaluation.run_phase(cfg)
    base = summary["models"]["base"]
    assert base["loglik_accuracy"] is None and base["loglik_correct"] is None
    assert "no prompt log-probabilities" in base["loglik_error"]
    assert not (cfg.run_dir / "eval" / "loglik_base.jsonl").exists()
    assert base["n"] == 8  # the generative metric is unaffected


def test_failed_requests_are_reported_cached_and_retried(run_cfg):
    cfg, rows = run_cfg
    cfg.eval.models = ["stage1"]
    cfg.eval.loglik = False
    gold = {r["question"]: r["answerKey"] for r in rows}
    failing = {rows[1]["question"], rows[5]["question"]}
    with FakeServer(gold, _policy(rows)) as server:
        cfg.eval.base_url = server.base_url
        server.fail = lambda model, question: question in failing
        with pytest.raises(EvaluationError) as err:
            evaluation.run_phase(cfg)
        message = str(err.value)
        assert "2 of 8 requests" in message and SECRET not in message and "***" in message
        kept = read_jsonl(cfg.run_dir / "eval" / "predictions_stage1.jsonl")
        assert len(kept) == 6 and {k["index"] for k in kept} == {0, 2, 3, 4, 6, 7}
        server.fail = lambda model, question: False
        server.requests.clear()
        summary = evaluation.run_phase(cfg)
        assert len(server.requests) == 2 and summary["generated"] == {"stage1": 2}
    assert summary["models"]["stage1"]["correct"] == 8


def test_enable_thinking_is_sent_as_chat_template_kwargs_or_not_at_all(run_cfg):
    cfg, rows = run_cfg
    cfg.eval.models = ["base"]
    cfg.eval.loglik = False
    gold = {r["question"]: r["answerKey"] for r in rows}
    with FakeServer(gold, _policy(rows)) as server:
        cfg.eval.base_url = server.base_url
        cfg.eval.enable_thinking = None  # a server that refuses unknown fields
        evaluation.run_phase(cfg)
        assert server.requests and all("chat_template_kwargs" not in r["body"] for r in server.requests)
        server.requests.clear()
        cfg.eval.enable_thinking = True  # another mode: other outputs, so the cached predictions are not reused
        evaluation.run_phase(cfg)
        assert len(server.requests) == 8
        assert all(r["body"]["chat_template_kwargs"] == {"enable_thinking": True} for r in server.requests)


def test_unknown_served_model_is_an_error(run_cfg):
    cfg, rows = run_cfg
    cfg.eval.models = ["base"]
    cfg.eval.served_models = {"base": "not-served"}
    cfg.eval.loglik = False
    with FakeServer({r["question"]: r["answerKey"] for r in rows}, _policy(rows)) as server:
        cfg.eval.base_url = server.base_url
        with pytest.raises(EvaluationError, match="not-served"):
            evaluation.run_phase(cfg)


def test_openai_backend_needs_a_base_url(run_cfg):
    cfg, _ = run_cfg
    cfg.eval.base_url = None
    with pytest.raises(ValueError, match="base_url"):
        evaluation.run_phase(cfg)
