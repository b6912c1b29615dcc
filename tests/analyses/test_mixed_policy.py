"""Mixed-policy distillation (analyses phase): cut rules, continuation requests, training examples, preflight.

The local-teacher and end-to-end tests run the tiny random model; the API tests talk to the fake
OpenAI server over real HTTP. The texts are invented; no number here is a result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support.fake_openai_server import FakeOpenAIServer, answers_from_rows

from dasd_utils import analyses, data, report, teacher
from dasd_utils.analyses import mixed, variants
from dasd_utils.config import load_config
from dasd_utils.data import read_jsonl, write_jsonl
from dasd_utils.prompts import build_messages
from dasd_utils.sft import load_sft_examples, tokenize_sft_example

KEY = "sk-TEST-MixedPolicyFakeKey-5c1e9a7d"
ANSWER = ("<reasoning>\nA river flows downhill because water is pulled by gravity, and a valley is lower than the "
          "hills around it, so the water gathers there and forms a long stream over the years.\n</reasoning>\n"
          "Final Answer: D")


# --------------------------------------------------------------------------- the rules
def test_cut_point_is_a_word_end_past_the_middle_of_the_reasoning():
    body = ANSWER[: ANSWER.index("Final Answer")].rstrip()
    cuts = set()
    for seed in range(40):
        cut = mixed.cut_point(ANSWER, mixed.item_rng(seed, "q1"))
        assert len(body) // 2 < cut < len(body), "past the middle, before the final answer"
        assert ANSWER[cut].isspace() and not ANSWER[cut - 1].isspace(), "the prefix ends on a whole word"
        assert cut == mixed.cut_point(ANSWER, mixed.item_rng(seed, "q1")), "same seed and question: same cut"
        cuts.add(cut)
    assert len(cuts) > 5, "the cut is drawn, not fixed"
    truncated = ANSWER[:120]  # cut off by the length cap: no final answer, the whole text is the reasoning
    assert 60 < mixed.cut_point(truncated, mixed.item_rng(0, "q1")) < len(truncated.rstrip())
    assert mixed.cut_point("Final Answer: B", mixed.item_rng(0, "q")) is None
    assert mixed.cut_point("oneword", mixed.item_rng(0, "q")) is None


def test_divergence_and_length_cap():
    base = {"cut_off": False, "answer": "B", "gold": "B"}
    assert mixed.divergence(base) is None
    assert mixed.divergence(dict(base, cut_off=True)) == "cut_off"
    assert mixed.divergence(dict(base, answer=None)) == "no_answer"
    assert mixed.divergence(dict(base, answer="C")) == "wrong_answer"
    assert mixed.length_cap(10, 1.5) == 15 and mixed.length_cap(7, 1.5) == 11 and mixed.length_cap(0, 1.5) == 1


def test_continuation_problem_tells_a_continuation_from_a_new_answer():
    prefix = ANSWER[:80]
    ok = {"error": None, "content": " valley floor, so it gathers.\n</reasoning>\nFinal Answer: D"}
    assert mixed.continuation_problem(prefix, ok) is None
    assert "new answer" in mixed.continuation_problem(prefix, {"error": None, "content": ANSWER})
    assert "again" in mixed.continuation_problem(prefix, {"error": None, "content": prefix + " more"})
    assert "refused" in mixed.continuation_problem(prefix, {"error": "HTTP 400: unknown continue_final_message"})
    assert "empty" in mixed.continuation_problem(prefix, {"error": None, "content": "  "})


def test_training_examples_join_prefix_and_continuation_exactly(tiny_model_dir):
    from transformers import AutoTokenizer

    row = {"id": "q1", "question": "Where does a river form?", "answerKey": "D",
           "choices": {"label": list("ABCDE"), "text": ["desk", "cloud", "shoe", "valley", "book"]}}
    prefix, continuation = ANSWER[:97], ANSWER[97:]
    item = {"question_id": "q1", "prefix": prefix, "continuation": continuation, "joined": prefix + continuation,
            "used": True}
    off = [{"question_id": "q0", "stage": 2, "messages": [{"role": "system", "content": "s"}]}]
    cfg = load_config("demo")
    plain = mixed.training_examples(cfg, [item, dict(item, used=False)], {"q1": row}, off)
    assert [e["source"] for e in plain] == ["off_policy", "mixed"]
    assert plain[1]["messages"][2]["content"] == prefix + continuation == ANSWER
    assert "mask_prefix_chars" not in plain[1]
    masked = mixed.training_examples(cfg, [item], {"q1": row}, off, masked=True)[1]
    assert masked["mask_prefix_chars"] == len(prefix) and masked["messages"] == plain[1]["messages"]

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    full = tokenize_sft_example(tok, plain[1]["messages"])
    part = tokenize_sft_example(tok, masked["messages"], unsupervised_chars=len(prefix))
    start = part["prompt_len"]
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
    assert all(label == -100 for label in part["labels"][: start + n_prefix]), "the student's prefix is not supervised"
    assert part["labels"][start + n_prefix : part["response_end"]] == part["input_ids"][start + n_prefix : part["response_end"]]
    supervised = lambda t: sum(1 for label in t["labels"] if label != -100)  # noqa: E731
    assert 0 < supervised(part) < supervised(full)
    assert tok.decode(part["input_ids"][start : part["response_end"] - 1]) == ANSWER


def test_sft_loader_checks_the_mask(tmp_path):
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "abc"}]
    path = tmp_path / "sft.jsonl"
    write_jsonl(path, [{"messages": messages, "mask_prefix_chars": 2}])
    assert load_sft_examples(path)[0]["mask_prefix_chars"] == 2
    for bad in (3, -1, "2", True):
        write_jsonl(path, [{"messages": messages, "mask_prefix_chars": bad}])
        with pytest.raises(ValueError, match="mask_prefix_chars"):
            load_sft_examples(path)


# --------------------------------------------------------------------------- the local teacher continues
def _rows(cfg):
    return {r["id"]: r for r in data.load_run_questions(cfg, "train")}


@pytest.mark.model
def test_local_prompt_ends_with_the_students_prefix(tiny_cfg):
    from dasd_utils.teacher.local import LocalTeacher

    data.run_phase(tiny_cfg)
    row = next(iter(_rows(tiny_cfg).values()))
    prefix = "<reasoning>\nThe question asks where, and the first option"
    request = teacher.continuation_requests(tiny_cfg, [(row, prefix)])[0]
    ordinary = teacher.build_requests(tiny_cfg, 2, [row])[0][0]
    assert request.messages == ordinary.messages and request.request_hash != ordinary.request_hash
    backend = LocalTeacher(tiny_cfg, teacher.model_label(tiny_cfg))
    backend.load()
    enc, _ = backend._encode([request])
    ids = [t for t, m in zip(enc["input_ids"][0].tolist(), enc["attention_mask"][0].tolist()) if m]
    prompt = backend.tokenizer.decode(ids)
    expected = backend.tokenizer.apply_chat_template(ordinary.messages, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(prefix) and prompt == expected + prefix

    path = tiny_cfg.run_dir / "continuations.jsonl"
    records = teacher.send_requests(tiny_cfg, [request], path, backend=backend)
    record = records[request.request_hash]
    assert record["prefill"] == prefix and record["error"] is None and record["content"]
    assert record["quality"] == teacher.QualityJudge(tiny_cfg).verdict(dict(record, content=prefix + record["content"]), row)
    assert teacher.send_requests(tiny_cfg, [request], path, backend=None) == records  # stored: nothing sent again


@pytest.mark.model
def test_build_end_to_end(tiny_cfg, smollm2_dir):
    """Student regeneration with a real adapter, cuts, local continuations, items; a second build reuses everything.

    The student is SmolLM2-135M-Instruct (the tiny random model writes only blank lines, which
    have no word to cut at); the teacher stays the tiny model.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tiny_cfg.student.model = str(smollm2_dir)
    data.run_phase(tiny_cfg)
    rows = _rows(tiny_cfg)
    adapter = tiny_cfg.run_dir / "sft" / "stage2"
    model = AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    pool = [{"question_id": qid, "content": ANSWER[: 60 + 7 * k]} for k, qid in enumerate(rows)]
    write_jsonl(tiny_cfg.run_dir / "das" / "stage2_sft.jsonl", [{"question_id": "x", "messages": []}])
    items, summary = mixed.build(tiny_cfg, pool, rows, adapter)

    answers = read_jsonl(tiny_cfg.run_dir / "analyses" / "mixed_policy" / "student_answers.jsonl")
    assert [a["question_id"] for a in answers] == list(rows)
    assert all(a["student_tokens"] <= a["cap_tokens"] for a in answers)
    assert summary["questions"] == len(rows) == summary["complete_and_correct"] + summary["diverging"]
    cut = [i for i in items if i.get("prefix")]
    assert cut, "the random tiny model's answers diverge"
    stored = {r["prefill"]: r for r in read_jsonl(tiny_cfg.run_dir / "analyses" / "mixed_policy" / "continuations.jsonl")}
    for item in cut:
        assert item["student_text"].startswith(item["prefix"])
        assert item["joined"] == item["prefix"] + item["continuation"] == item["prefix"] + stored[item["prefix"]]["content"]
    assert summary["off_policy"] == 1 and summary["training_examples"] == 1 + summary["used"]
    assert read_jsonl(tiny_cfg.run_dir / "analyses" / "mixed_policy" / "items.jsonl") == items

    before = (tiny_cfg.run_dir / "analyses" / "mixed_policy" / "continuations.jsonl").read_text()
    again, _ = mixed.build(tiny_cfg, pool, rows, adapter)
    assert again == items
    assert (tiny_cfg.run_dir / "analyses" / "mixed_policy" / "continuations.jsonl").read_text() == before


# --------------------------------------------------------------------------- an API teacher continues
@pytest.fixture
def api_cfg(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = load_config("colab", run_dir=tmp_path / "run", overrides={
        "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50, "data.n_train": 3,
        "data.n_eval": 2, "student.model": str(tiny_model_dir), "teacher.max_retries": 0, "teacher.timeout_s": 5.0,
        "teacher.base_url": "http://127.0.0.1:9/v1",
        # A chat-template teacher (the chat route: continue_final_message); gpt-oss takes the harmony
        # route, tested in test_harmony_route.py.
        "teacher.model": "chat-template-teacher",
    })
    data.run_phase(cfg)
    return cfg


def _items(cfg):
    return [{"question_id": qid, "prefix": f"<reasoning>\nThe question asks about {row['question'][:30]}"}
            for qid, row in _rows(cfg).items()]


def test_api_continuation_sends_the_prefix_with_continue_final_message(api_cfg):
    rows = _rows(api_cfg)
    items = _items(api_cfg)
    with FakeOpenAIServer(answers=answers_from_rows(rows.values())) as server:
        api_cfg.teacher.base_url = server.base_url
        mixed.continue_answers(api_cfg, items, rows)
        bodies = [r["body"] for r in server.requests]
    assert len(bodies) == len(items)  # the checked first one is not sent twice
    by_prefix = {i["prefix"]: rows[i["question_id"]] for i in items}
    assert {body["messages"][-1]["content"] for body in bodies} == set(by_prefix)
    for body in bodies:
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        last = body["messages"][-1]
        assert last["role"] == "assistant"
        assert body["messages"][:-1] == build_messages(by_prefix[last["content"]], api_cfg.system_prompt)
    for item in items:
        assert item["joined"] == item["prefix"] + item["continuation"] and item["continuation_error"] is None
        assert item["used"] and item["teacher_answer"] == rows[item["question_id"]]["answerKey"]


@pytest.mark.parametrize("action, words", [("ignores_continue", "new answer"), ("rejects_continue", "refused")])
def test_preflight_stops_a_server_that_cannot_continue(api_cfg, action, words, caplog, capfd):
    rows = _rows(api_cfg)
    with FakeOpenAIServer(answers=answers_from_rows(rows.values()), default=action) as server:
        api_cfg.teacher.base_url = server.base_url
        with pytest.raises(mixed.MixedPolicyUnavailable) as info:
            mixed.continue_answers(api_cfg, _items(api_cfg), rows)
        assert server.n_requests == 1, "only the checked first continuation is sent"
    message = str(info.value)
    assert words in message and "continue_final_message" in message and "127.0.0.1" in message
    assert "analyses.mixed_policy=false" in message
    out = capfd.readouterr()
    assert KEY not in message + caplog.text + out.out + out.err


# --------------------------------------------------------------------------- the phase
def _fake_phase(cfg, monkeypatch, mixed_result):
    from support.analyses_records import pool_records, predictions

    write_jsonl(cfg.run_dir / "das" / "stage2.jsonl", pool_records())
    write_jsonl(cfg.run_dir / "data" / "eval.jsonl", [{"id": f"e{i}"} for i in range(20)])
    write_jsonl(cfg.run_dir / "data" / "train.jsonl", [{"id": f"q{i}", "question": f"Question {i}?", "answerKey": "A",
                                                                   "choices": {"label": list("ABCDE"), "text": list("vwxyz")}}
                                                                  for i in range(20)])
    write_jsonl(cfg.run_dir / "das" / "stage2_sft.jsonl", [{"question_id": "q0", "stage": 2, "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}])
    cfg.analyses.provenance = False
    trained = []
    monkeypatch.setattr(variants, "train", lambda c, v, force=False: trained.append(v) or {})
    monkeypatch.setattr(variants, "evaluate", lambda c, todo, rows, force=False: {
        v.name: {"predictions": predictions([True] * 12 + [False] * 8 if v.name.startswith("mixed") else [True] * 10 + [False] * 10),
                 "generated": 1} for v in todo})
    monkeypatch.setattr(mixed, "build", mixed_result)
    return trained


def _one_mixed_item(cfg, pool, rows, adapter, force=False):
    """Stand-in for mixed.build: one continued answer, kept."""
    item = {"question_id": "q1", "prefix": "<reasoning>\nBecause", "joined": "<reasoning>\nBecause x.\n</reasoning>\nFinal Answer: A",
            "used": True}
    return [item], mixed.summarize([dict(item, divergence="cut_off", continuation=" x.", quality={"ok": True, "reason": None},
                                         teacher_answer="A", gold="A")], 1)


def test_phase_trains_the_mixed_variants_from_the_stage2_adapter(demo_cfg, monkeypatch):
    demo_cfg.analyses.mixed_masked = True
    trained = _fake_phase(demo_cfg, monkeypatch, _one_mixed_item)
    results = analyses.run_phase(demo_cfg)
    assert [v.name for v in trained] == ["das", "random_s1", "mixed", "mixed_masked"]
    das_adapter = variants.adapter_dir(demo_cfg, trained[0])
    for v, masked in zip(trained[2:], (False, True)):
        assert v.parent == das_adapter and v.overrides == {"sft.epochs": demo_cfg.analyses.mixed_epochs}
        assert [e["source"] for e in v.examples] == ["off_policy", "mixed"]
        assert ("mask_prefix_chars" in v.examples[1]) is masked
    assert results["mixed_policy"]["used"] == 1 and results["mixed_policy"]["available"] is True
    assert {c["b"] for c in results["comparisons"]} == {"random_s1", "mixed", "mixed_masked"}
    assert "Politique mixte" in results["mixed_verdict"] and "analyses.mixed_control" in results["mixed_verdict"]
    assert "aucun test ne porte" in results["mixed_verdict"] and "significati" not in results["mixed_verdict"]
    assert results["mixed_vs_control"] is None and "mixed_vs_control" not in results["families"]
    text = report.render_markdown(report.collect_context(demo_cfg.run_dir, demo_cfg.to_dict()))
    assert "politique mixte (préfixe masqué)" in text and "Politique mixte :" in text


def test_the_control_trains_the_same_epoch_without_the_mixed_answers(demo_cfg, monkeypatch):
    demo_cfg.analyses.mixed_control = True
    trained = _fake_phase(demo_cfg, monkeypatch, _one_mixed_item)
    results = analyses.run_phase(demo_cfg)  # mixed right on 12 items, the control (like DAS) on 10
    assert [v.name for v in trained] == ["das", "random_s1", "mixed", "control_extra_epoch"]
    control = trained[3]
    assert control.parent == trained[2].parent and control.overrides == trained[2].overrides
    assert [e["source"] for e in control.examples] == ["off_policy"]
    assert control.examples == trained[2].examples[:1]  # the same off-policy examples, without the mixed one
    vs = results["mixed_vs_control"]
    assert vs == results["families"]["mixed_vs_control"] and vs["planned"]
    assert (vs["a"], vs["b"], vs["only_a_correct"], vs["only_b_correct"]) == ("mixed", "control_extra_epoch", 2, 0)
    assert vs["mcnemar_p"] == 0.5 and "Contre le témoin" in results["mixed_verdict"]
    assert "n'est pas significatif (p de McNemar 0,5" in results["mixed_verdict"]


def test_phase_goes_on_when_the_teacher_cannot_continue(demo_cfg, monkeypatch):
    def unavailable(cfg, pool, rows, adapter, force=False):
        raise mixed.MixedPolicyUnavailable("teacher at example.org: the endpoint refused the continuation request")

    trained = _fake_phase(demo_cfg, monkeypatch, unavailable)
    results = analyses.run_phase(demo_cfg)
    assert [v.name for v in trained] == ["das", "random_s1"]
    assert results["mixed_policy"] == {"available": False, "reason": "teacher at example.org: the endpoint refused the continuation request"}
    assert results["mixed_verdict"] is None
    text = report.render_markdown(report.collect_context(demo_cfg.run_dir, demo_cfg.to_dict()))
    assert "refused the continuation request" in text


def test_prepare_links_the_mixed_variant_to_its_parent(demo_cfg):
    parent = demo_cfg.run_dir / "sft" / "stage2"
    parent.mkdir(parents=True)
    examples = [{"question_id": "q1", "source": "mixed", "messages": []}]
    v = variants.Variant("mixed", [], examples=examples, parent=parent, overrides={"sft.epochs": 0.5})
    vcfg = variants.prepare(demo_cfg, v)
    assert vcfg.sft.epochs == 0.5 and vcfg.run_dir == demo_cfg.run_dir / "analyses" / "mixed"
    assert read_jsonl(vcfg.run_dir / "das" / "stage2_sft.jsonl") == examples
    assert (vcfg.run_dir / "sft" / "stage1").resolve() == parent.resolve()
