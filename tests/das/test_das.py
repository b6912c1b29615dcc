"""Divergence-Aware Sampling: classification rules, unscorable examples, the phase's outputs and reuse."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from support.das_records import build_synthetic_run, make_response, teacher_record, teacher_tokens, write_teacher_file

from dasd_utils import das
from dasd_utils.align import UNSCORABLE_REASONS, UnscorableError
from dasd_utils.token_recovery import teacher_token_spans
from dasd_utils.config import DASConfig, replace
from dasd_utils.segment import sentence_spans

CFG = DASConfig()


# --------------------------------------------------------------------------- classification
@pytest.mark.parametrize(
    "p_t, p_s, expected",
    [
        (0.9, 0.1, "teacher"),
        (0.6, 0.1, "shared"),  # P_T exactly at 0.6 is not above it
        (0.6000001, 0.1, "teacher"),
        (0.8, 0.6, "shared"),  # P_T - P_S exactly 0.2 (0.20000000000000007 in binary) is not above it
        (0.8, 0.5999999, "teacher"),
        (0.7, 0.5, "shared"),
        (0.1, 0.9, "student"),
        (0.4, 0.6, "shared"),  # P_S exactly 0.6
        (0.6, 0.8, "shared"),  # P_S - P_T exactly 0.2
        (0.5999999, 0.8, "student"),
        (0.95, 0.9, "shared"),
        (0.1, 0.1, "shared"),
    ],
)
def test_sentence_types_at_and_around_the_thresholds(p_t, p_s, expected):
    assert das.classify_sentence(p_t, p_s, CFG) == expected
    assert das.classify_sentences([p_t], [p_s], CFG) == [expected]


def test_thresholds_come_from_the_config():
    strict = DASConfig(teacher_prob_threshold=0.9, divergence_threshold=0.5)
    assert das.classify_sentence(0.85, 0.1, CFG) == "teacher"
    assert das.classify_sentence(0.85, 0.1, strict) == "shared"
    assert das.classify_sentence(0.95, 0.5, strict) == "shared"
    assert das.classify_sentence(0.95, 0.4, strict) == "teacher"


@pytest.mark.parametrize(
    "types, ratio, keep",
    [
        (["teacher"] * 3 + ["shared"] * 7, 0.3, False),  # exactly 0.3 is not above the threshold
        (["teacher"] * 4 + ["shared"] * 6, 0.4, True),
        (["teacher"] + ["student"] * 2, 1 / 3, True),
        (["shared"] * 5, 0.0, False),
        (["teacher"], 1.0, True),
    ],
)
def test_keep_rule(types, ratio, keep):
    assert das.teacher_sentence_ratio(types) == pytest.approx(ratio)
    assert das.keep_example(das.teacher_sentence_ratio(types), CFG) is keep


def test_keep_threshold_from_config():
    assert das.keep_example(0.35, CFG)
    assert not das.keep_example(0.35, DASConfig(keep_ratio_threshold=0.5))
    with pytest.raises(ValueError):
        das.teacher_sentence_ratio([])


@pytest.mark.parametrize(
    "p_t, p_s, p_d, expected",
    [
        (0.9, 0.1, 0.95, "teacher"),
        (0.1, 0.9, 0.95, "student"),
        (0.3, 0.3, 0.9, "boosted"),
        (0.5, 0.4, 0.7, "other"),  # P_D - max(P_T, P_S) exactly 0.2: not boosted; P_D - P_S 0.3: not all close
        (0.5, 0.4, 0.7000001, "boosted"),
        (0.3, 0.2, 0.6, "other"),  # P_D exactly 0.6: not above, and too far from P_S to be shared
        (0.3, 0.2, 0.4, "shared"),  # all three within 0.2
        (0.9, 0.85, 0.99, "shared"),
        (0.5, 0.2, 0.5, "other"),  # P_T - P_S above 0.2 but P_T not above 0.6: neither teacher nor close
        (0.6, 0.6, 0.1, "other"),  # the distilled student moved away from both: counted, not called shared
        (0.1, 0.2, 0.95, "boosted"),
    ],
)
def test_provenance_with_a_distilled_student(p_t, p_s, p_d, expected):
    assert das.provenance(p_t, p_s, p_d, CFG) == expected
    assert das.classify_sentences([p_t], [p_s], CFG, p_distilled=[p_d]) == [expected]


@pytest.mark.parametrize("bad", [None, float("nan"), 1.5, -0.1])
def test_classification_refuses_invalid_probabilities(bad):
    with pytest.raises(ValueError):
        das.classify_sentences([bad], [0.5], CFG)
    with pytest.raises(ValueError):
        das.classify_sentences([0.5, 0.5], [0.5], CFG)


# --------------------------------------------------------------------------- one example
def _spans(tokens):
    ends = np.cumsum([len(t) for t in tokens])
    return ends - np.array([len(t) for t in tokens]), ends


def test_score_example_types_ratio_and_keep_from_known_probabilities():
    content = "<reasoning> Crabs walk. Fish swim. Birds fly. </reasoning>\nFinal Answer: C"
    sentences = sentence_spans(content)
    assert [s.text for s in sentences] == ["Crabs walk.", "Fish swim.", "Birds fly.", "Final Answer: C"]
    t_tokens = ["<reasoning>", " Crabs", " walk.", " Fish", " swim.", " Birds", " fly.", " </reasoning>", "\nFinal", " Answer: C"]
    s_tokens = ["<reasoning> Cr", "abs walk", ".", " Fish swim.", " Birds fly", ". </reasoning>\n", "Final Answer", ": C"]
    assert "".join(t_tokens) == content == "".join(s_tokens)
    t_lp = np.log([0.01, 0.9, 0.9, 0.5, 0.5, 0.95, 0.95, 0.01, 0.99, 0.99])
    s_lp = np.log([0.2, 0.2, 0.2, 0.45, 0.9, 0.9, 0.3, 0.3])
    result = das.score_example(content, sentences, *_spans(t_tokens), t_lp, *_spans(s_tokens), s_lp, CFG)
    got = [(s["text"], round(s["p_teacher"], 6), round(s["p_student"], 6), s["type"]) for s in result["sentences"]]
    assert got == [
        ("Crabs walk.", 0.9, 0.2, "teacher"),
        ("Fish swim.", 0.5, 0.45, "shared"),
        ("Birds fly.", 0.95, 0.9, "shared"),  # ". </reasoning>\n" is anchored at the period
        ("Final Answer: C", 0.99, 0.3, "teacher"),
    ]
    assert [s["n_teacher_tokens"] for s in result["sentences"]] == [2, 2, 2, 2]
    assert [s["n_student_tokens"] for s in result["sentences"]] == [3, 1, 2, 2]
    assert result["teacher_sentence_ratio"] == 0.5 and result["keep"] is True


def test_a_sentence_without_its_own_token_is_merged_not_given_a_default():
    content = "Yes. It is C. Done."
    sentences = sentence_spans(content)
    assert [s.text for s in sentences] == ["Yes.", "It is C.", "Done."]
    t_tokens = ["Yes", ".", " It", " is", " C", ".", " Done", "."]
    s_tokens = ["Yes. It is C.", " Done."]  # the student's first token covers two sentences
    t_lp = np.log([0.9, 0.9, 0.5, 0.5, 0.5, 0.5, 0.7, 0.7])
    s_lp = np.log([0.04, 0.5])
    result = das.score_example(content, sentences, *_spans(t_tokens), t_lp, *_spans(s_tokens), s_lp, CFG)
    # "It is C." owns no student token (its text is inside a token of the first sentence): it is
    # merged into the previous sentence rather than given a made-up P_S.
    assert result["n_merged_sentences"] == 1
    first, last = result["sentences"]
    assert first["text"] == "Yes. It is C." and last["text"] == "Done."
    assert (first["n_teacher_tokens"], first["n_student_tokens"]) == (6, 1)
    assert first["p_teacher"] == pytest.approx(math.exp(np.mean(t_lp[:6])))
    assert first["p_student"] == pytest.approx(0.04)
    assert last["p_teacher"] == pytest.approx(0.7) and last["p_student"] == pytest.approx(0.5)
    # Merging goes backwards, forwards for the first sentence, and repeats until every group owns tokens.
    assert das.merge_groups(3, np.array([0, 3, 2]), np.array([1, 1, 1])) == [[0, 1], [2]]
    assert das.merge_groups(4, np.array([1, 0, 0, 2]), np.array([1, 1, 1, 1])) == [[0, 1, 2], [3]]
    assert das.merge_groups(2, np.array([0, 0]), np.array([1, 1])) == [[0, 1]]


def test_unscorable_examples_raise_with_a_reason():
    content = "<reasoning>\n---\n</reasoning>"
    with pytest.raises(UnscorableError) as err:
        das.score_example(content, sentence_spans(content), np.array([0]), np.array([len(content)]), np.log([0.5]),
                          np.array([0]), np.array([len(content)]), np.log([0.5]), CFG)
    assert err.value.reason == "no_sentences"
    content = "Fine. Ok."
    sentences = sentence_spans(content)
    with pytest.raises(UnscorableError) as err:
        das.score_example(content, sentences, np.array([0]), np.array([4]), np.log([0.5]),
                          np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([]), CFG)
    assert err.value.reason == "no_student_tokens"
    assert set(UNSCORABLE_REASONS) >= {"no_logprobs", "tokens_mismatch", "invalid_logprob"}


def test_select_records_takes_the_first_quality_kept_sample_per_question():
    q1, q2 = {"id": "a", "answerKey": "A"}, {"id": "b", "answerKey": "B"}
    toks = teacher_tokens("Final Answer: A")
    records = [
        teacher_record(q1, 2, "bad", toks, ok=False),
        teacher_record(q1, 2, "first kept", toks, sample=1),
        teacher_record(q1, 2, "second kept", toks, sample=2),
        teacher_record(q2, 2, "other", toks),
        teacher_record({"id": "zzz", "answerKey": "C"}, 2, "unknown", toks),
    ]
    chosen, counts = das.select_records(records, 2, {"a", "b"})
    assert [r["content"] for r in chosen] == ["first kept", "other"]
    assert counts == {"records_read": 5, "quality_rejected": 1, "extra_samples": 1, "unknown_question": 1, "selected": 2}
    with pytest.raises(ValueError, match="stage"):
        das.select_records(records, 1)


# --------------------------------------------------------------------------- the phase
def _no_model(*args, **kwargs):
    raise AssertionError("the student model must not be loaded when outputs are reused")


@pytest.mark.model
def test_run_phase_writes_records_sft_data_summary_and_figures(tiny_cfg):
    facts = build_synthetic_run(tiny_cfg)
    summary = das.run_phase(tiny_cfg)
    run = tiny_cfg.run_dir
    s1, s2 = summary["stages"]["1"], summary["stages"]["2"]
    n = len(facts["questions"])
    # Stage 1: every question once, all scorable.
    assert s1["records_read"] == n and s1["selected"] == n and s1["scored"] == n and s1["n_unscorable"] == 0
    assert s1["kept"] + s1["rejected"] == n
    # Stage 2: question 0's first sample failed quality; question 1 has no logprobs; question 2's
    # tokens do not reproduce the content; question 3 has an extra sample, ignored.
    assert s2["quality_rejected"] == 1 and s2["extra_samples"] == n - 3 and s2["selected"] == n
    assert s2["unscorable"]["no_logprobs"] == 1 and s2["unscorable"]["tokens_mismatch"] == 1
    assert s2["scored"] == n - 2
    recs1 = das.load_das_records(tiny_cfg, 1)
    recs2 = das.load_das_records(tiny_cfg, 2)
    assert [r["question_id"] for r in recs1] == [q["id"] for q in facts["questions"]]
    assert recs2[0]["content"] == make_response(facts["questions"][0], 1)  # the quality-kept second sample
    unscorable = [r for r in recs2 if not r["scorable"]]
    assert {r["unscorable_reason"] for r in unscorable} == {"no_logprobs", "tokens_mismatch"}
    assert all(r["sentences"] == [] and r["teacher_sentence_ratio"] is None and r["keep"] is False for r in unscorable)
    for rec in recs1 + [r for r in recs2 if r["scorable"]]:
        assert rec["messages"][0]["role"] == "system" and rec["messages"][1]["role"] == "user"
        assert rec["messages"][0]["content"] == tiny_cfg.system_prompt
        for s in rec["sentences"]:
            assert rec["content"][s["start"] : s["end"]] == s["text"]
            assert 0.0 <= s["p_teacher"] <= 1.0 and 0.0 <= s["p_student"] <= 1.0
            assert s["type"] == das.classify_sentence(s["p_teacher"], s["p_student"], tiny_cfg.das)
            assert s["n_teacher_tokens"] > 0 and s["n_student_tokens"] > 0
        assert rec["teacher_sentence_ratio"] == das.teacher_sentence_ratio([s["type"] for s in rec["sentences"]])
        assert rec["keep"] == (rec["teacher_sentence_ratio"] > 0.3)
    # SFT data: stage 1 = every quality-kept response; stage 2 = DAS-kept only.
    from dasd_utils.data import read_jsonl

    sft1 = read_jsonl(run / "das" / "stage1_sft.jsonl")
    sft2 = read_jsonl(run / "das" / "stage2_sft.jsonl")
    assert len(sft1) == n and s1["sft_examples"] == n
    assert [r["question_id"] for r in sft2] == [r["question_id"] for r in recs2 if r["keep"]]
    assert sft2 and all(r["stage"] == 2 and [m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in sft2)
    assert sft1[0]["messages"][2]["content"] == recs1[0]["content"]
    saved = json.loads((run / "das" / "summary.json").read_text())
    assert saved["stages"] == summary["stages"]
    for name in ("das_stage1.png", "das_stage2.png", "das_scatter.png", "das_profile.png"):
        data = (run / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.model
def test_run_phase_reuses_reclassifies_and_recomputes(tiny_cfg, monkeypatch):
    build_synthetic_run(tiny_cfg)
    first = das.run_phase(tiny_cfg)
    monkeypatch.setattr(das.stage, "load_scoring_model", _no_model)  # where score_stage and run_phase look it up
    again = das.run_phase(tiny_cfg)
    assert again["reused"] is True and again["stages"] == first["stages"]

    # New thresholds: types and keep flags change without re-running the student.
    strict = replace(tiny_cfg, **{"das.teacher_prob_threshold": 0.99})
    changed = das.run_phase(strict)
    assert changed["reused"] is False and changed["rescored_stages"] == []
    assert changed["stages"]["1"]["sentence_types"]["teacher"] == 0
    assert all(not r["keep"] for r in das.load_das_records(strict, 1))

    # New teacher records for stage 2 only: stage 2 is scored again, stage 1 is reused.
    monkeypatch.undo()
    path = tiny_cfg.run_dir / "teacher" / "stage2.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n")
    redo = das.run_phase(tiny_cfg)
    assert redo["rescored_stages"] == [2]
    assert redo["stages"]["1"] == first["stages"]["1"]
    forced = das.run_phase(tiny_cfg, force=True)
    assert forced["rescored_stages"] == [1, 2]


@pytest.mark.model
def test_filter_stage1_applies_the_keep_rule_to_stage1(tiny_cfg):
    build_synthetic_run(tiny_cfg)
    cfg = replace(tiny_cfg, **{"das.filter_stage1": True})
    summary = das.run_phase(cfg)
    assert summary["stages"]["1"]["sft_examples"] == summary["stages"]["1"]["kept"]
    assert summary["stages"]["1"]["sft_das_filtered"] is True


def test_missing_teacher_records_is_a_clear_error(tiny_cfg):
    from dasd_utils import data

    data.run_phase(tiny_cfg)
    with pytest.raises(FileNotFoundError, match="generate"):
        das.run_phase(tiny_cfg)


@pytest.mark.model
def test_cli_runs_the_das_phase(tiny_cfg, tiny_model_dir, capsys):
    from dasd_utils.cli import main

    build_synthetic_run(tiny_cfg)
    code = main(["das", "--profile", "demo", "--run-dir", str(tiny_cfg.run_dir),
                 "--set", f"student.model={tiny_model_dir}", "--set", "data.n_train=4"])
    assert code == 0
    assert (tiny_cfg.run_dir / "das" / "stage2_sft.jsonl").is_file()
    assert '"kept"' in capsys.readouterr().out


class _FakeProcess:
    """One of N processes, splitting inputs with accelerate's own PartialState logic."""

    def __init__(self, index: int, total: int):
        import torch

        self.process_index, self.num_processes = index, total
        self.is_main_process = index == 0
        self.device = torch.device("cpu")

    def split_between_processes(self, inputs, apply_padding=False):
        from accelerate import PartialState

        return PartialState.split_between_processes(self, inputs, apply_padding)

    def wait_for_everyone(self):
        return None


@pytest.mark.model
def test_shards_merge_to_the_single_process_result(tiny_cfg):
    from accelerate import PartialState

    build_synthetic_run(tiny_cfg)
    model, tokenizer = das.load_scoring_model(tiny_cfg)
    single, counts = das.score_stage(tiny_cfg, 2, model=model, tokenizer=tokenizer, state=PartialState())
    # Process 1 writes its shard and returns nothing; process 0 writes its own and merges both.
    assert das.score_stage(tiny_cfg, 2, model=model, tokenizer=tokenizer, state=_FakeProcess(1, 2))[0] is None
    parts = sorted(p.name for p in (tiny_cfg.run_dir / "das").glob(".stage2.part*"))
    assert parts == [".stage2.part1-of-2.jsonl"]
    merged, counts2 = das.score_stage(tiny_cfg, 2, model=model, tokenizer=tokenizer, state=_FakeProcess(0, 2))
    assert counts2 == counts
    assert not list((tiny_cfg.run_dir / "das").glob(".stage2.part*")), "part files are removed after the merge"
    assert [r["question_id"] for r in merged] == [r["question_id"] for r in single]
    for a, b in zip(merged, single):
        assert a["scorable"] == b["scorable"] and a["keep"] == b["keep"]
        assert [s["type"] for s in a["sentences"]] == [s["type"] for s in b["sentences"]]
        assert [s["p_student"] for s in a["sentences"]] == pytest.approx([s["p_student"] for s in b["sentences"]], rel=1e-5)


def test_missing_shard_is_an_error_not_a_silent_loss(tiny_cfg):
    build_synthetic_run(tiny_cfg)
    model, tokenizer = das.load_scoring_model(tiny_cfg)
    with pytest.raises(RuntimeError, match="shard"):
        das.score_stage(tiny_cfg, 1, model=model, tokenizer=tokenizer, state=_FakeProcess(0, 2))


@pytest.mark.model
def test_distilled_adapter_adds_p_distilled_and_provenance(tiny_cfg, tmp_path, monkeypatch):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    build_synthetic_run(tiny_cfg)
    base = AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model, dtype=torch.float32)
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                           init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    records, _ = das.score_stage(tiny_cfg, 1, distilled_adapter=str(adapter), progress=False)
    plain, _ = das.score_stage(tiny_cfg, 1, progress=False)
    # Reference for the distilled student: the adapter merged into a fresh copy of the base.
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model, dtype=torch.float32), str(adapter)
    ).merge_and_unload().eval()
    _, tokenizer = das.load_scoring_model(tiny_cfg)
    as_student, _ = das.score_stage(tiny_cfg, 1, model=merged, tokenizer=tokenizer, progress=False)
    for rec, ref, dist in zip(records, plain, as_student):
        p_s = [s["p_student"] for s in rec["sentences"]]
        p_d = [s["p_distilled"] for s in rec["sentences"]]
        assert p_s == pytest.approx([s["p_student"] for s in ref["sentences"]], rel=1e-4)
        assert p_d == pytest.approx([s["p_student"] for s in dist["sentences"]], rel=1e-4)
        assert max(abs(math.log(d) - math.log(s)) for d, s in zip(p_d, p_s)) > 1e-3, "the adapter changes the scores"
        for s in rec["sentences"]:
            assert s["provenance"] == das.provenance(s["p_teacher"], s["p_student"], s["p_distilled"], tiny_cfg.das)

    # The notebook's entry point: writes das/provenance_stage1.jsonl and reuses it on a second call.
    summary = das.provenance_analysis(tiny_cfg, str(adapter), stage=1)
    assert sum(summary["provenance"].values()) == summary["sentences"] > 0
    assert summary["mean_p_distilled"] is not None
    assert (tiny_cfg.run_dir / "das" / "provenance_stage1.jsonl").is_file()
    monkeypatch.setattr(das.stage, "load_scoring_model", _no_model)  # where score_stage and run_phase look it up
    assert das.provenance_analysis(tiny_cfg, str(adapter), stage=1) == summary


@pytest.mark.model
def test_unscorable_record_in_a_stage_of_only_bad_records(tiny_cfg):
    from dasd_utils import data

    data.run_phase(tiny_cfg)
    questions = data.load_run_questions(tiny_cfg, "train")
    content = make_response(questions[0], 0)
    bad = teacher_tokens(content)
    bad[2] = dict(bad[2], logprob=None)
    write_teacher_file(tiny_cfg.run_dir / "teacher" / "stage1.jsonl",
                       [teacher_record(questions[0], 1, content, bad), teacher_record(questions[1], 1, content, None)])
    write_teacher_file(tiny_cfg.run_dir / "teacher" / "stage2.jsonl", [])
    summary = das.run_phase(tiny_cfg)
    s1 = summary["stages"]["1"]
    assert s1["scored"] == 0 and s1["unscorable"]["invalid_logprob"] == 1 and s1["unscorable"]["no_logprobs"] == 1
    assert s1["sft_examples"] == 2, "stage 1 trains on every quality-kept response unless filter_stage1"
    assert summary["stages"]["2"]["selected"] == 0 and summary["stages"]["2"]["sft_examples"] == 0
    with pytest.raises(UnscorableError):
        teacher_token_spans(content, bad)


@pytest.mark.model
def test_two_real_processes_merge_to_the_single_process_result(tiny_cfg, tiny_model_dir, tmp_path):
    """Two CPU processes (torchrun + gloo, accelerate's PartialState) against one process."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    build_synthetic_run(tiny_cfg)
    single = das.run_phase(tiny_cfg)
    run2 = tmp_path / "run2"
    shutil.copytree(tiny_cfg.run_dir / "data", run2 / "data")
    shutil.copytree(tiny_cfg.run_dir / "teacher", run2 / "teacher")
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to the interpreter")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(das.__file__).resolve().parents[2])  # das is a package
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "dasd_utils", "das", "--profile", "demo",
           "--run-dir", str(run2), "--set", f"student.model={tiny_model_dir}", "--set", "data.n_train=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"process_index": 1' in proc.stdout
    summary = json.loads((run2 / "das" / "summary.json").read_text())
    assert summary["num_processes"] == 2
    for stage in ("1", "2"):
        for key in ("selected", "scored", "kept", "rejected", "unscorable", "sentence_types", "sft_examples"):
            assert summary["stages"][stage][key] == single["stages"][stage][key]
    assert not list((run2 / "das").glob(".stage*"))


def test_analysis_targets_go_through_the_quality_filter(tiny_cfg, monkeypatch):
    """reasoning_source=analysis trains on the analysis: its loops, its talk about the format, its length are judged."""
    from dasd_utils import data
    from dasd_utils.das import stage as das_stage

    data.run_phase(tiny_cfg)
    questions = data.load_run_questions(tiny_cfg, "train")[:3]
    tiny_cfg.teacher.backend, tiny_cfg.teacher.reasoning_source = "openai", "analysis"
    tiny_cfg.quality.check_student_generation = True  # eval.max_new_tokens is 16 in this configuration
    analyses = [
        "We need to output <reasoning> tags and then Final Answer: X. The answer fits.",  # the format, planned
        "loop " * 200,  # a repetition loop: the teacher's verdict on content never saw it
        "The fishmonger sells crabs at the market every single day of the week, so crabs excite him most.",
    ]
    records = []
    for q, analysis in zip(questions, analyses):
        content = f"<reasoning>\nShort.\n</reasoning>\nFinal Answer: {q['answerKey']}"
        rec = teacher_record(q, 1, content, teacher_tokens(content))
        records.append(dict(rec, reasoning=analysis, reasoning_tokens=teacher_tokens(analysis)))
    write_teacher_file(tiny_cfg.run_dir / "teacher" / "stage1.jsonl", records)
    monkeypatch.setattr(das_stage, "load_scoring_model", _no_model)  # nothing is left to score
    scored, counts = das.score_stage(tiny_cfg, 1, progress=False)
    reasons = [r["target_quality"]["reason"] for r in scored]
    assert reasons == ["format_talk", "repetitive", "too_long_to_generate"]
    assert all(r["content"].startswith("<reasoning>\n") for r in scored)  # the target kept, with its verdict
    assert all(not r["scorable"] and r["unscorable_reason"] is None and not r["keep"] for r in scored)
    assert das.sft_rows(scored, 1, tiny_cfg) == []  # stage 1 trains on every kept record: not on these
    summary = das.summarize_stage(scored, counts, 1, tiny_cfg)
    assert summary["target_quality_rejected"] == {"format_talk": 1, "repetitive": 1, "too_long_to_generate": 1}
    assert summary["n_unscorable"] == 0 and summary["quality_rejected"] == 0  # the teacher's verdict (content) was ok
    from dasd_utils.summaries import DasStage

    DasStage.from_dict(summary)  # the typed summary knows the field
