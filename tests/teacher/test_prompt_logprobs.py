"""P_T of given text through an API teacher: vLLM's prompt_logprobs on a chat request (provenance analysis).

The fake server (tests/support/fake_openai_server.py, real HTTP) answers like vLLM serving gpt-oss: it
renders the request's messages as a harmony prompt with the REAL o200k_harmony tokenizer (the
answer as the last final-channel message, then ``<|end|><|start|>assistant``), gives every prompt
token a logprob and returns them as vLLM's ``prompt_logprobs`` (one dict per position, the first
null, the prompt token with its own rank next to the top-1 token). The answers hold characters
split over several tokens ("☕", "🌍"), whose per-id decode reads "\\ufffd".
"""

from __future__ import annotations

import math
import random
import sys
import zlib
from pathlib import Path

import pytest

from support.fake_openai_server import FakeOpenAIServer
from support.gptoss_answers import ANSWERS
from support.harmony_fixtures import content_of, exact_sentence_probabilities, token_char_spans

from dasd_utils import das
from dasd_utils.align import UnscorableError
from dasd_utils.analyses import provenance
from dasd_utils.config import load_config
from dasd_utils.teacher.responses import make_token_decoder
from dasd_utils.teacher.prompt_logprobs import (
    SCORING_FIELDS,
    PromptScorer,
    locate_answer,
    prompt_tokens,
    teacher_answer_tokens,
)
from dasd_utils.prompts import build_messages
from dasd_utils.segment import sentence_spans

KEY = "sk-TEST-PromptLogprobs-9c1e77a0b3d54f2e"

MINE = content_of("Le café est prêt — c’est l’heure. Un ☕ chaud, ça réveille 🌍. L’élève répond vite.", "B")

SYSTEM = ("You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
          "Current date: 2026-12-01\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
          "Channel must be included for every message.")


def render_harmony(tokenizer, messages):
    """Return (prompt ids, answer start, answer end) as vLLM renders a chat request for gpt-oss."""
    special = tokenizer.convert_tokens_to_ids

    def enc(text):
        return tokenizer.encode(text, add_special_tokens=False)

    ids = []
    span = None

    def block(role, text, channel=None):
        ids.extend([special("<|start|>"), *enc(role)])
        if channel:
            ids.extend([special("<|channel|>"), *enc(channel)])
        ids.append(special("<|message|>"))
        start = len(ids)
        ids.extend(enc(text))
        ids.append(special("<|end|>"))
        return start, len(ids) - 1

    block("system", SYSTEM)
    for m in messages:
        if m["role"] == "system":
            block("developer", "# Instructions\n\n" + m["content"])
        elif m["role"] == "user":
            block("user", m["content"])
        else:
            span = block("assistant", m["content"], channel="final")
    ids.extend([special("<|start|>"), *enc("assistant")])
    return ids, span[0], span[1]


def render_template(tokenizer, messages):
    """Return (prompt ids, answer start, answer end) for a chat template with continue_final_message (Qwen3)."""
    ids = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=True)
    ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    answer = tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
    assert ids[-len(answer):] == answer
    return ids, len(ids) - len(answer), len(ids)


def in_context(tokenizer, ids):
    """Return each token's text as newer vLLM decodes prompt tokens (LogprobsProcessor._verify_tokens).

    A decode ending in "\ufffd" is redone with up to 4 preceding tokens: "" while the character is
    incomplete, then the text after the last "clean" context token (the whole character).
    """
    def alone(i):
        return tokenizer.decode([i])

    out = []
    for k, tid in enumerate(ids):
        text = alone(tid)
        if text.endswith("\ufffd"):
            context, text = ids[max(0, k - 4):k], ""
            for n in range(1, len(context) + 1):
                full = tokenizer.decode(context[-n:] + [tid])
                if full.endswith("\ufffd"):
                    continue
                ctx = context[-n:]
                clean = len(ctx)
                while clean > 0 and alone(ctx[clean - 1]).endswith("\ufffd"):
                    clean -= 1
                prefix = tokenizer.decode(ctx[:clean]) if clean else ""
                text = full[len(prefix):] if full.startswith(prefix) else full
                break
        out.append(text)
    return out


class VLLMGptOss:
    """The fake server's ``prompt_logprobs`` callable; ``served[answer]`` keeps the answer's ids and logprobs."""

    def __init__(self, tokenizer, with_ids=True, alter=None, render=render_harmony, corrected=False):
        self.tokenizer = tokenizer
        self.with_ids = with_ids
        self.alter = alter
        self.render = render
        self.corrected = corrected
        self.served = {}
        # Once: len() of a 200k-token tokenizer costs about 0.25 s a call with transformers 5.0 (the lower bound).
        self.vocab_size = len(tokenizer)

    def __call__(self, body):
        messages = body["messages"]
        if self.alter:
            messages = [*messages[:-1], dict(messages[-1], content=self.alter(messages[-1]["content"]))]
        ids, a, b = self.render(self.tokenizer, messages)
        texts = in_context(self.tokenizer, ids) if self.corrected else [self.tokenizer.decode([i]) for i in ids]
        rng = random.Random(zlib.crc32(messages[-1]["content"].encode()))
        positions, logprobs = [None], [None]
        for pos in range(1, len(ids)):
            tid = ids[pos]
            lp = 0.0 if rng.random() < 0.05 else round(math.log(1.0 - 0.999 * rng.random() ** 3), 6)
            logprobs.append(lp)
            mine = {"logprob": lp, "rank": 1, "decoded_token": texts[pos]}
            if pos % 3 == 0:
                positions.append({str(tid): mine})
                continue
            # The top-1 token first (another id, rank 1), the prompt token after it with its own rank.
            other = tid + 1 if tid + 1 < self.vocab_size - 1 else tid - 1
            top = {"logprob": round(max(lp, -0.05), 6), "rank": 1, "decoded_token": self.tokenizer.decode([other])}
            positions.append({str(other): top, str(tid): dict(mine, rank=2 + pos % 7)})
        self.served[body["messages"][-1]["content"]] = (ids[a:b], logprobs[a:b])
        fields = {"prompt_logprobs": positions}
        if self.with_ids:
            fields["prompt_token_ids"] = ids
        return fields


def exact_pt(tokenizer, answer, ids, logprobs, sentences):
    return exact_sentence_probabilities(token_char_spans(tokenizer, answer, ids), logprobs, sentences)


def found_pt(found, sentences):
    return exact_sentence_probabilities(list(zip(found.starts.tolist(), found.ends.tolist())), found.logprobs.tolist(),
                                        sentences)


def answers(n=12):
    return [MINE] + [content_of(r, letter) for _, r, letter in ANSWERS[:n - 1]]


ROW = {"id": "q0", "question": "Where is coffee served?", "answerKey": "B",
       "choices": {"label": list("ABCDE"), "text": ["a café", "a bank", "a ship", "a field", "a lake"]}}


# --------------------------------------------------------------------------- the response, no server
@pytest.mark.parametrize("with_ids", [True, False])
@pytest.mark.parametrize("reading", ["strings", "token_ids"])
def test_answer_tokens_located_with_exact_sentence_probabilities(gptoss_tokenizer, with_ids, reading):
    fake = VLLMGptOss(gptoss_tokenizer, with_ids=with_ids)
    decode = make_token_decoder(gptoss_tokenizer) if reading == "token_ids" else None
    split = 0
    for answer in answers():
        body = {"messages": build_messages(ROW) + [{"role": "assistant", "content": answer}]}
        tokens = prompt_tokens(fake(body))
        ids, truth = fake.served[answer]
        split += sum("\ufffd" in gptoss_tokenizer.decode([i]) for i in ids)
        found = locate_answer(answer, tokens, decode)
        assert found.logprobs.tolist() == truth
        sentences = sentence_spans(answer)
        expected = exact_pt(gptoss_tokenizer, answer, ids, truth, sentences)
        assert all(e is not None for e in expected)
        assert max(abs(a - b) for a, b in zip(found_pt(found, sentences), expected)) <= 1e-12
    assert split >= 4  # the fixtures really hold pieces of characters


def test_strings_decoded_in_context_are_never_trusted(gptoss_tokenizer):
    """Newer vLLM: a piece of a character reads "" and the whole character sits on the last piece."""
    fake = VLLMGptOss(gptoss_tokenizer, corrected=True)
    tokens = prompt_tokens(fake({"messages": build_messages(ROW) + [{"role": "assistant", "content": MINE}]}))
    assert "" in [t["token"] for t in tokens] and "\ufffd" not in "".join(t["token"] for t in tokens)
    with pytest.raises(UnscorableError):  # the strings join to the answer, yet never used: no guess
        locate_answer(MINE, tokens)
    found = locate_answer(MINE, tokens, make_token_decoder(gptoss_tokenizer))
    ids, truth = fake.served[MINE]
    sentences = sentence_spans(MINE)
    assert found.logprobs.tolist() == truth
    assert found_pt(found, sentences) == pytest.approx(exact_pt(gptoss_tokenizer, MINE, ids, truth, sentences), abs=1e-12)


@pytest.mark.parametrize("decoder", [False, True])
def test_a_chat_template_with_continue_final_message(decoder):
    """Models with a chat template (here Qwen3's): the prompt ends with the answer."""
    from support.real_tokenizers import load_tokenizer, qwen3_instruct_2507_template

    qwen3_tokenizer = load_tokenizer("qwen3")  # its own copy: the session fixture keeps its template
    qwen3_tokenizer.chat_template = qwen3_instruct_2507_template
    fake = VLLMGptOss(qwen3_tokenizer, render=render_template)
    decode = make_token_decoder(qwen3_tokenizer) if decoder else None
    for answer in answers(6):
        tokens = prompt_tokens(fake({"messages": build_messages(ROW) + [{"role": "assistant", "content": answer}]}))
        found = locate_answer(answer, tokens, decode)
        ids, truth = fake.served[answer]
        assert found.logprobs.tolist() == truth
        sentences = sentence_spans(answer)
        assert found_pt(found, sentences) == pytest.approx(exact_pt(qwen3_tokenizer, answer, ids, truth, sentences), abs=1e-12)


def test_surrounding_whitespace_keeps_offsets_into_the_answer(gptoss_tokenizer):
    fake = VLLMGptOss(gptoss_tokenizer)
    answer = "\n  " + MINE + "\n"
    tokens = prompt_tokens(fake({"messages": build_messages(ROW) + [{"role": "assistant", "content": MINE}]}))
    found = locate_answer(answer, tokens, make_token_decoder(gptoss_tokenizer))
    ids, truth = fake.served[MINE]
    sentences = sentence_spans(answer)
    spans = [(a + 3, b + 3) for a, b in token_char_spans(gptoss_tokenizer, MINE, ids)]
    assert found_pt(found, sentences) == pytest.approx(exact_sentence_probabilities(spans, truth, sentences), abs=1e-12)


def test_no_prompt_logprobs_and_unreadable_positions():
    assert prompt_tokens({"choices": [{"message": {"content": "x"}}]}) is None
    two_top = {"prompt_logprobs": [None, {"1": {"logprob": -1, "rank": 1}, "2": {"logprob": -1, "rank": 1}}]}
    with pytest.raises(ValueError, match="cannot be told"):
        prompt_tokens(two_top)
    with pytest.raises(UnscorableError):
        locate_answer("Final Answer: B", [{"id": 5, "token": "nothing", "logprob": -0.1}])


# --------------------------------------------------------------------------- through the fake server
@pytest.fixture
def api_cfg(tmp_path, monkeypatch):
    from support.real_tokenizers import tokenizer_dir

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return load_config("colab", run_dir=tmp_path / "run", overrides={
        "teacher.base_url": "http://127.0.0.1:9/v1",
        "teacher.tokenizer": str(tokenizer_dir("gptoss")),
        "teacher.concurrency": 3,
        "teacher.max_retries": 1,
        "teacher.timeout_s": 5.0,
        "teacher.extra_body": {"reasoning_effort": "low"},
    })


def rows_and_answers(n):
    rows = [dict(ROW, id=f"q{i}", question=f"Where is coffee served, case {i}?") for i in range(n)]
    return rows, answers(n)


def test_api_route_scores_every_answer_after_a_preflight(api_cfg, gptoss_tokenizer):
    rows, texts = rows_and_answers(6)
    fake = VLLMGptOss(gptoss_tokenizer, with_ids=False)
    with FakeOpenAIServer(default="prompt_logprobs", prompt_logprobs=fake, latency_s=0.05) as server:
        api_cfg.teacher.base_url = server.base_url
        pairs = [(build_messages(r, api_cfg.system_prompt), t) for r, t in zip(rows, texts)]
        found = teacher_answer_tokens(api_cfg, pairs)
    assert len(server.requests) == len(rows)
    first, *others = sorted(server.requests, key=lambda r: r["start"])
    assert all(r["start"] >= first["start"] + 0.05 for r in others)  # the preflight went alone
    assert server.max_in_flight <= api_cfg.teacher.concurrency
    for r in server.requests:
        body = r["body"]
        assert r["auth"] == f"Bearer {KEY}"
        assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["reasoning_effort"] == "low"
        assert {k: body[k] for k in SCORING_FIELDS} == SCORING_FIELDS
        assert body["messages"][-1]["role"] == "assistant"
    for (messages, answer), result in zip(pairs, found):
        ids, truth = fake.served[answer]
        assert result.logprobs.tolist() == truth
        sentences = sentence_spans(answer)
        assert found_pt(result, sentences) == pytest.approx(exact_pt(gptoss_tokenizer, answer, ids, truth, sentences), abs=1e-12)


def test_an_answer_failing_after_the_preflight_is_unscorable(api_cfg, gptoss_tokenizer):
    rows, texts = rows_and_answers(3)
    fake = VLLMGptOss(gptoss_tokenizer)
    with FakeOpenAIServer(default="prompt_logprobs", prompt_logprobs=fake, plan={rows[2]["question"]: ["ok"]}) as server:
        api_cfg.teacher.base_url = server.base_url
        found = teacher_answer_tokens(api_cfg, [(build_messages(r, api_cfg.system_prompt), t) for r, t in zip(rows, texts)])
    assert not isinstance(found[1], UnscorableError)
    assert isinstance(found[2], UnscorableError) and found[2].reason == "no_logprobs"
    assert "prompt_logprobs" in found[2].detail


@pytest.fixture
def chat_route(monkeypatch):
    """The chat route whatever the model: its own checks, with the gpt-oss fixtures (which model takes which
    route is tested in tests/analyses/test_harmony_route.py)."""
    from dasd_utils.teacher import routes

    monkeypatch.setattr(routes, "decide", lambda cfg: routes.Route("chat", "forced by the test"))


@pytest.mark.parametrize("action", ["ok", "rejects_prompt_logprobs", "400_echo_auth"])
def test_an_endpoint_without_prompt_logprobs_stops_the_analysis(api_cfg, action, chat_route):
    with FakeOpenAIServer(default=action) as server:
        api_cfg.teacher.base_url = server.base_url
        host = f"127.0.0.1:{server.port}"
        with pytest.raises(provenance.ProvenanceUnavailable) as err:
            provenance.check_teacher(api_cfg)
    message = str(err.value)
    assert host in message and "prompt_logprobs" in message
    assert "analyses.provenance=false" in message and "teacher.backend=local" in message
    assert KEY not in message
    if action == "ok":
        assert "returned no prompt_logprobs" in message
    else:
        assert "HTTP 400" in message
    assert len(server.requests) == 1 and server.requests[0]["auth"] == f"Bearer {KEY}"


def test_prompt_tokens_that_do_not_reproduce_the_answer_stop_the_analysis(api_cfg, gptoss_tokenizer, chat_route):
    fake = VLLMGptOss(gptoss_tokenizer, alter=lambda text: text.replace("Final Answer", "Réponse"))
    with FakeOpenAIServer(default="prompt_logprobs", prompt_logprobs=fake) as server:
        api_cfg.teacher.base_url = server.base_url
        with pytest.raises(provenance.ProvenanceUnavailable, match="do not reproduce the answer"):
            provenance.check_teacher(api_cfg)


# --------------------------------------------------------------------------- the provenance analysis
@pytest.mark.model
def test_provenance_with_an_api_teacher(tiny_cfg, tmp_path, monkeypatch, gptoss_tokenizer, chat_route):
    """P_T from the fake vLLM server, P_S and P_D from the tiny local student and its adapter."""
    from peft import LoraConfig, get_peft_model
    from support.real_tokenizers import tokenizer_dir
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    tiny_cfg.teacher.backend = "openai"
    tiny_cfg.teacher.model = "openai/gpt-oss-120b"
    tiny_cfg.teacher.tokenizer = str(tokenizer_dir("gptoss"))
    rows, texts = rows_and_answers(3)
    predictions = [{"question_id": r["id"], "correct": i != 1, "response": t} for i, (r, t) in enumerate(zip(rows, texts))]
    fake = VLLMGptOss(gptoss_tokenizer)
    with FakeOpenAIServer(default="prompt_logprobs", prompt_logprobs=fake) as server:
        tiny_cfg.teacher.base_url = server.base_url
        records = provenance.score_answers(tiny_cfg, predictions, rows, str(adapter))
    assert len(server.requests) == 3
    for request, row in zip(sorted(server.requests, key=lambda r: r["body"]["messages"][1]["content"]), rows):
        assert request["body"]["messages"][:-1] == build_messages(row, tiny_cfg.system_prompt)
    for record, answer in zip(records, texts):
        assert record["scorable"] and record["sentences"]
        ids, truth = fake.served[answer]
        sentences = sentence_spans(answer, tiny_cfg.das.segmenter)
        expected = exact_pt(gptoss_tokenizer, answer, ids, truth, sentences)
        assert [s["p_teacher"] for s in record["sentences"]] == pytest.approx(expected, abs=1e-12)


def test_provenance_stops_before_loading_a_model(tiny_cfg, monkeypatch, chat_route):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(das, "load_scoring_model", lambda *a, **k: pytest.fail("no model before the preflight"))
    tiny_cfg.teacher.backend = "openai"
    rows, texts = rows_and_answers(2)
    predictions = [{"question_id": r["id"], "correct": True, "response": t} for r, t in zip(rows, texts)]
    with FakeOpenAIServer(default="ok") as server:
        tiny_cfg.teacher.base_url = server.base_url
        with pytest.raises(provenance.ProvenanceUnavailable, match="returned no prompt_logprobs"):
            provenance.score_answers(tiny_cfg, predictions, rows, "unused")
    assert len(server.requests) == 1


def test_teacher_tokenizer_says_why_ids_must_be_decoded(tmp_path):
    from dasd_utils.teacher.responses import TeacherTokenizer, TokenizerUnavailable

    missing = TeacherTokenizer(str(tmp_path / "no-tokenizer"), "vLLM's prompt_logprobs are keyed by token id")
    assert missing.load() is False
    with pytest.raises(TokenizerUnavailable, match="prompt_logprobs are keyed by token id.*teacher.tokenizer") as exc:
        missing(5)
    assert "return_tokens_as_token_ids" not in str(exc.value)  # this route never asked for token ids


def test_the_prompt_scorer_loads_its_tokenizer_before_its_threads_start(tmp_path, monkeypatch, gptoss_tokenizer):
    from support.real_tokenizers import tokenizer_dir

    cfg = load_config("colab", run_dir=tmp_path / "run", overrides={
        "teacher.base_url": "http://127.0.0.1:9/v1", "teacher.tokenizer": str(tokenizer_dir("gptoss"))})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-123456")
    scorer = PromptScorer(cfg)
    assert scorer.decode_id._decoder is not None  # loaded in __init__, in this thread
    assert scorer.decode_id(gptoss_tokenizer.convert_tokens_to_ids("<|return|>")) == b"<|return|>"


def test_first_use_from_many_threads_in_a_fresh_process_loads_once(tmp_path):
    # The race seen against a real vLLM: the first import of transformers from several threads at
    # once failed 1 of 26 answers in 2 of 3 runs. A fresh process, 16 threads, the same first call.
    import subprocess
    import sys

    from support.real_tokenizers import tokenizer_dir

    script = (
        "import threading\n"
        "from dasd_utils.teacher.responses import TeacherTokenizer\n"
        f"tok = TeacherTokenizer({str(tokenizer_dir('gptoss'))!r}, 'test')\n"
        "results, errors = [], []\n"
        "def use():\n"
        "    try: results.append(tok(200002))\n"
        "    except Exception as exc: errors.append(repr(exc))\n"
        "threads = [threading.Thread(target=use) for _ in range(16)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(results), len(set(results)), errors)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "16 1 []"
