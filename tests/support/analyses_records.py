"""Invented DAS records and predictions for the analyses tests (numbers test code paths, not results)."""

from __future__ import annotations

SYSTEM = "sys"


def pool_record(i: int, keep: bool, scorable: bool = True) -> dict:
    """Return a DAS record of the stage-2 pool (kept or not, scorable or not)."""
    rec = {
        "question_id": f"q{i}", "stage": 2,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Question {i}?"}],
        "content": f"<reasoning>\nBecause {i}.\n</reasoning>\nFinal Answer: A", "scorable": scorable, "keep": keep and scorable,
    }
    if scorable:
        rec.update(teacher_sentence_ratio=0.5 if keep else 0.0, teacher_sentence_ratio_without_final=0.0,
                   sentences=[{"type": "teacher" if keep else "shared"}, {"type": "shared"}])
    return rec


def pool_records(n: int = 20) -> list[dict]:
    """Return a pool of ``n`` records: every third kept, every seventh unscorable."""
    return [pool_record(i, keep=i % 3 == 0, scorable=i % 7 != 6) for i in range(n)]


def predictions(correct: list[bool]) -> list[dict]:
    """Return evaluation predictions with the given correctness."""
    return [{"question_id": f"e{i}", "correct": c} for i, c in enumerate(correct)]
