"""The local teacher backend (tiny random model, and SmolLM2 in a slow test) and the generation engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dasd_utils import data, teacher
from dasd_utils.config import load_config
from dasd_utils.data import bundled_path, read_jsonl
from dasd_utils.prompts import build_messages, build_sft_example
from dasd_utils.teacher.local import FEW_SHOT_EXAMPLES, LocalTeacher, teacher_messages, token_bytes, token_strings


# --------------------------------------------------------------------------- token strings
@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("text", [
    "<reasoning>\nA crab is sold at a fish market.\n</reasoning>\nFinal Answer: C",
    "café ☕ 日本語 — naïve façade 🦀🦀 end",
    "  leading spaces,\ttabs\n\nand \u00a0non-breaking",
])
def test_token_strings_join_to_the_decoded_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces, decoded = token_strings(tokenizer, ids)
    assert decoded == text and "".join(pieces) == text and len(pieces) == len(ids)
    raw = [token_bytes(tokenizer, i) for i in ids]
    assert all(b is not None for b in raw)
    assert b"".join(bytes(b) for b in raw) == text.encode("utf-8")
    # A token that stops inside a multi-byte character gets "" (the next one carries the character).
    for piece, token_raw in zip(pieces, raw):
        if piece == "":
            with pytest.raises(UnicodeDecodeError):
                bytes(token_raw).decode("utf-8")


# --------------------------------------------------------------------------- prompts
def test_few_shot_examples_are_not_dataset_questions():
    bundled = {row["question"].strip().lower() for row in read_jsonl(bundled_path())}
    for example in FEW_SHOT_EXAMPLES:
        assert example["question"].strip().lower() not in bundled
        assert example["response"].rstrip().endswith(f"Final Answer: {example['answerKey']}")
        assert "hint" not in example["response"].lower()
    assert len({e["answerKey"] for e in FEW_SHOT_EXAMPLES}) == len(FEW_SHOT_EXAMPLES)


def test_teacher_messages_hold_hint_and_examples_student_messages_do_not(demo_cfg):
    row = read_jsonl(bundled_path())[60]
    messages = teacher_messages(row, demo_cfg.system_prompt, few_shot=2, gold_hint=True)
    assert len(messages) == 1 + 2 * 2 + 1
    assert f"the correct answer is {row['answerKey']}" in messages[-1]["content"]
    student = build_messages(row, demo_cfg.system_prompt)
    assert "Hint" not in json.dumps(student) and FEW_SHOT_EXAMPLES[0]["question"] not in json.dumps(student)
    with pytest.raises(ValueError):
        teacher_messages(row, demo_cfg.system_prompt, few_shot=len(FEW_SHOT_EXAMPLES) + 1)


# --------------------------------------------------------------------------- engine with a scripted backend
class ScriptedBackend:
    """A backend whose answers depend on the sample index: used to test best-of-n bookkeeping."""

    def __init__(self, good_from: dict[str, int]):
        self.good_from = good_from
        self.calls: list[tuple[str, int]] = []

    def generate(self, requests, on_result):
        for request in requests:
            self.calls.append((request.question_id, request.sample_index))
            good = request.sample_index >= self.good_from.get(request.question_id, 0)
            letter = request.row["answerKey"] if good else "Z"
            content = f"<reasoning>\nSample {request.sample_index} explains the question at length.\n</reasoning>\nFinal Answer: {letter}"
            on_result(request, {"content": content, "tokens": [{"token": content, "logprob": -0.5, "bytes": None}],
                                "finish_reason": "stop", "usage": None, "latency_s": 0.0, "error": None})


def test_best_of_n_keeps_the_first_passing_sample(tiny_cfg):
    cfg = tiny_cfg
    cfg.teacher.local_best_of_n = 3
    data.run_phase(cfg)
    rows = data.load_run_questions(cfg, "train")
    good_from = {rows[0]["id"]: 0, rows[1]["id"]: 1, rows[2]["id"]: 2, rows[3]["id"]: 9}
    backend = ScriptedBackend(good_from)
    summary = teacher.generate_stage(cfg, 1, backend=backend)
    assert sorted(backend.calls) == sorted([(rows[0]["id"], 0), (rows[1]["id"], 0), (rows[1]["id"], 1),
                                            (rows[2]["id"], 0), (rows[2]["id"], 1), (rows[2]["id"], 2),
                                            (rows[3]["id"], 0), (rows[3]["id"], 1), (rows[3]["id"], 2)])
    records = teacher.load_records(cfg, 1)
    assert len({r["request_hash"] for r in records}) == len(records) == 9
    kept = teacher.load_kept(cfg, 1)
    assert {(r["question_id"], r["sample_index"]) for r in kept} == {(rows[0]["id"], 0), (rows[1]["id"], 1), (rows[2]["id"], 2)}
    assert summary["kept"] == 3 and summary["questions"] == 4 and summary["requests"] == 9
    assert summary["accuracy"] == 0.25  # first samples only: one right out of four
    # Rejected samples say why; every record keeps the teacher messages, SFT examples use the student's.
    assert summary["rejected"] == {"no_final_answer": 6}
    for example in teacher.kept_sft_examples(cfg, 1):
        row = next(r for r in rows if r["id"] == example["question_id"])
        assert example["messages"][:2] == build_messages(row, cfg.system_prompt)
    # Nothing to do the second time.
    again = ScriptedBackend(good_from)
    assert teacher.generate_stage(cfg, 1, backend=again)["sent"] == 0 and again.calls == []


def test_duplicate_question_ids_are_refused(tiny_cfg):
    data.run_phase(tiny_cfg)
    rows = data.load_run_questions(tiny_cfg, "train")
    with pytest.raises(teacher.TeacherError, match="duplicate"):
        teacher.generate_stage(tiny_cfg, 1, questions=[rows[0], rows[0]], backend=ScriptedBackend({}))
    with pytest.raises(ValueError):
        teacher.stage_path(tiny_cfg, 3)


def test_hint_mentions_are_rejected(tiny_cfg):
    data.run_phase(tiny_cfg)
    rows = data.load_run_questions(tiny_cfg, "train")[:1]

    class HintBackend:
        def generate(self, requests, on_result):
            for r in requests:
                content = f"<reasoning>\nAs the hint says, the answer is {r.row['answerKey']}.\n</reasoning>\nFinal Answer: {r.row['answerKey']}"
                on_result(r, {"content": content, "tokens": None, "error": None})

    summary = teacher.generate_stage(tiny_cfg, 1, questions=rows, backend=HintBackend())
    assert summary["rejected"] == {"mentions_hint": tiny_cfg.teacher.local_best_of_n}


# --------------------------------------------------------------------------- local backend, tiny random model
def _recompute_logprobs(model_dir, messages, token_ids, temperature=1.0):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + list(token_ids)])
    with torch.inference_mode():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(1, torch.tensor(token_ids)[:, None]).squeeze(1).tolist()


@pytest.mark.model
def test_local_backend_records_raw_logprobs_and_exact_tokens(tiny_cfg, tiny_model_dir):
    cfg = tiny_cfg
    data.run_phase(cfg)
    summary = teacher.run_phase(cfg)
    for stage, temperature in ((1, 0.3), (2, 0.9)):
        records = teacher.load_records(cfg, stage)
        stage_summary = summary["stages"][f"stage{stage}"]
        assert stage_summary["requests"] == len(records) >= 4 and stage_summary["sent"] == len(records)
        for record in records:
            assert record["model"].endswith("(stand-in teacher)") and record["temperature"] == temperature
            assert record["error"] is None and record["finish_reason"] in ("stop", "length")
            assert record["tokens_match_content"] is True
            assert "".join(t["token"] for t in record["tokens"]) == record["content"]
            assert all(t["logprob"] <= 0 and t["bytes"] is not None for t in record["tokens"])
            assert len(record["tokens"]) <= cfg.teacher.max_tokens
            assert "Hint" in record["messages"][-1]["content"]  # the stand-in saw the gold hint
    # The logprobs are the model's raw ones (temperature 1), not the temperature-scaled ones.
    record = teacher.load_records(cfg, 1)[0]
    ids = [t["id"] for t in record["tokens"]]
    recorded = [t["logprob"] for t in record["tokens"]]
    raw = _recompute_logprobs(tiny_model_dir, record["messages"], ids)
    scaled = _recompute_logprobs(tiny_model_dir, record["messages"], ids, temperature=0.3)
    raw_gap = max(abs(a - b) for a, b in zip(recorded, raw))
    scaled_gap = max(abs(a - b) for a, b in zip(recorded, scaled))
    assert raw_gap < 1e-3 and scaled_gap > 10 * raw_gap
    assert (cfg.run_dir / "figures" / "teacher_quality.png").is_file()
    assert "stand-in" in json.loads((cfg.run_dir / "teacher" / "summary.json").read_text())["note"]

    # A second run sends nothing and does not even load the model.
    backend = LocalTeacher(cfg, teacher.model_label(cfg))
    again = teacher.generate_stage(cfg, 1, backend=backend)
    assert again["sent"] == 0 and backend.model is None


# --------------------------------------------------------------------------- local backend, SmolLM2 (slow)
@pytest.mark.model
def test_smollm2_stand_in_teacher_follows_the_format(tmp_path, smollm2_dir):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={
        "data.n_train": 4, "teacher.max_tokens": 96, "teacher.local_best_of_n": 1, "teacher.local_batch_size": 4})
    data.run_phase(cfg)
    summary = teacher.generate_stage(cfg, 1)
    records = teacher.load_records(cfg, 1)
    assert len(records) == 4 and summary["sent"] == 4
    for record in records:
        assert record["content"] and record["tokens_match_content"] is True
        assert 0 < record["mean_token_prob"] <= 1
        assert record["quality"]["reason"] in (None, "no_final_answer", "wrong_answer", "repetitive", "mentions_hint")
    # With few-shot examples, the hint and the answer-line constraint, most responses pass.
    assert summary["kept"] >= 2, [r["content"] for r in records]
    kept: Any = teacher.load_kept(cfg, 1)[0]
    assert kept["content"].rstrip().endswith(f"Final Answer: {kept['gold']}")
    row = next(r for r in data.load_run_questions(cfg, "train") if r["id"] == kept["question_id"])
    assert teacher.kept_sft_examples(cfg, 1)[0]["messages"] == build_sft_example(row, kept["content"], cfg.system_prompt)


def test_hinted_answer_contradicting_the_reasoning_is_rejected(tiny_cfg):
    data.run_phase(tiny_cfg)
    rows = data.load_run_questions(tiny_cfg, "train")[:1]
    gold = rows[0]["answerKey"]
    other = "A" if gold != "A" else "B"

    class ContradictingBackend:
        def generate(self, requests, on_result):
            for r in requests:
                content = f"<reasoning>\nThis option fits the question best. So the answer is {other}.\n</reasoning>\nFinal Answer: {gold}"
                on_result(r, {"content": content, "tokens": None, "error": None})

    summary = teacher.generate_stage(tiny_cfg, 1, questions=rows, backend=ContradictingBackend())
    assert summary["rejected"] == {"inconsistent_answer": tiny_cfg.teacher.local_best_of_n}
