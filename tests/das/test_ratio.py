"""The teacher-sentence ratio with and without the final-answer line (issue 10 item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.das_records import build_synthetic_run

from dasd_utils import das
from dasd_utils.config import DASConfig, replace
from dasd_utils.segment import sentence_spans

CONTENT = "<reasoning> Crabs walk. Fish swim. Birds fly. </reasoning>\nFinal Answer: C"


def _spans(tokens):
    ends = np.cumsum([len(t) for t in tokens])
    return ends - np.array([len(t) for t in tokens]), ends


def _scored():
    t_tokens = ["<reasoning>", " Crabs", " walk.", " Fish", " swim.", " Birds", " fly.", " </reasoning>", "\nFinal", " Answer: C"]
    s_tokens = ["<reasoning> Crabs", " walk.", " Fish swim.", " Birds fly.", " </reasoning>\n", "Final Answer: C"]
    t_lp = np.log([0.01, 0.9, 0.9, 0.5, 0.5, 0.95, 0.95, 0.01, 0.99, 0.99])
    s_lp = np.log([0.2, 0.2, 0.45, 0.9, 0.3, 0.3])
    return das.score_example(CONTENT, sentence_spans(CONTENT), *_spans(t_tokens), t_lp, *_spans(s_tokens), s_lp, DASConfig())


def test_ratio_without_the_final_answer_line_is_recorded_next_to_the_keep_ratio():
    result = _scored()
    assert [(s["text"], s["type"], s["final_answer"]) for s in result["sentences"]] == [
        ("Crabs walk.", "teacher", False),
        ("Fish swim.", "shared", False),
        ("Birds fly.", "shared", False),
        ("Final Answer: C", "teacher", True),
    ]
    assert result["teacher_sentence_ratio"] == 0.5  # the keep rule: over all sentences, as in the course
    assert result["teacher_sentence_ratio_without_final"] == pytest.approx(1 / 3)
    assert result["keep"] is True


def test_ratio_without_final_is_none_when_only_the_final_line_is_left():
    assert das.ratio_without_final([{"type": "teacher", "final_answer": True}]) is None
    assert das.ratio_without_final([{"type": "teacher", "final_answer": False}, {"type": "shared", "final_answer": True}]) == 1.0


def test_reclassify_updates_both_ratios():
    record = {"scorable": True, **_scored()}
    assert das.reclassify(record, replace(DASConfig(), teacher_prob_threshold=0.92))
    # P_T 0.9 ("Crabs walk.") is no longer above 0.92; "Final Answer: C" (0.99) still is.
    assert record["teacher_sentence_ratio"] == 0.25
    assert record["teacher_sentence_ratio_without_final"] == 0.0


@pytest.mark.model
def test_run_phase_records_and_summarizes_the_ratio_without_final(tiny_cfg):
    build_synthetic_run(tiny_cfg)
    summary = das.run_phase(tiny_cfg)
    for stage in (1, 2):
        records = [r for r in das.load_das_records(tiny_cfg, stage)]
        expected = []
        for rec in records:
            if not rec["scorable"]:
                assert rec["teacher_sentence_ratio_without_final"] is None
                continue
            assert sum(s["final_answer"] for s in rec["sentences"]) == 1
            others = [s["type"] for s in rec["sentences"] if not s["final_answer"]]
            assert rec["teacher_sentence_ratio_without_final"] == das.teacher_sentence_ratio(others)
            expected.append(rec["teacher_sentence_ratio_without_final"])
        got = summary["stages"][str(stage)]["teacher_sentence_ratio_without_final"]
        assert got["mean"] == pytest.approx(sum(expected) / len(expected))
    saved = json.loads((tiny_cfg.run_dir / "das" / "summary.json").read_text())
    assert saved["stages"]["1"]["teacher_sentence_ratio_without_final"] == summary["stages"]["1"]["teacher_sentence_ratio_without_final"]
