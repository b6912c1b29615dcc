"""The stage-2 training sets compared by the analyses: DAS-kept, random subsets of the pool, the whole pool.

The *pool* is every quality-kept stage-2 (high-temperature) teacher response the DAS phase
selected, one per question: ``das/stage2.jsonl``, whether DAS kept it or not, scorable or not
(an unscorable response has text and passed the quality filter; only DAS could not judge it).
With ``teacher.reasoning_source=analysis`` a response whose analysis target failed the quality
filter is not in the pool: nothing would train on it.
The DAS set is the pool's ``keep`` records, i.e. exactly ``das/stage2_sft.jsonl``. A random
subset draws as many records as the DAS set holds, from the same pool, with ``random.Random(seed)``:
the same seed always gives the same subset, so the comparison is at equal budget and reproducible.
"""

from __future__ import annotations

import random
import statistics
from typing import Any, Iterable, Mapping, Sequence

from .. import das, layout
from ..data import read_jsonl


def pool_records(run_dir) -> list[dict[str, Any]]:
    """Return the stage-2 pool (``das/stage2.jsonl`` records that hold a response), in file order."""
    path = layout.das_records(run_dir, 2)
    if not path.is_file():
        raise layout.MissingPhaseOutput(path, "das")
    return [r for r in read_jsonl(path)
            if isinstance(r.get("content"), str) and r["content"] and not das.target_rejected(r)]


def das_kept(pool: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the records DAS kept (the normal stage-2 training set)."""
    return [dict(r) for r in pool if r.get("scorable") and r.get("keep")]


def random_subset(pool: Sequence[Mapping[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """Return ``size`` records of ``pool`` drawn without replacement with ``random.Random(seed)``, in pool order.

    The draw depends only on the pool's order, ``size`` and ``seed``. Raises ValueError when the
    pool holds fewer than ``size`` records.
    """
    if size > len(pool):
        raise ValueError(f"cannot draw {size} records from a pool of {len(pool)}")
    chosen = sorted(random.Random(seed).sample(range(len(pool)), size))
    return [dict(pool[i]) for i in chosen]


def sft_examples(records: Sequence[Mapping[str, Any]], cfg) -> list[dict[str, Any]]:
    """Return SFT-ready examples for ``records`` in the format the DAS phase writes (``das.sft_rows``)."""
    return das.sft_rows([dict(r, keep=True) for r in records], 2, cfg)


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def set_statistics(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the sentence statistics of one training set (teacher-sentence ratio, lengths, DAS-kept share)."""
    scored = [r for r in records if r.get("scorable")]
    without_final = [r["teacher_sentence_ratio_without_final"] for r in scored
                     if r.get("teacher_sentence_ratio_without_final") is not None]
    return {
        "n": len(records),
        "n_scored": len(scored),
        "das_kept": sum(1 for r in scored if r.get("keep")),
        "teacher_sentence_ratio": _mean([r["teacher_sentence_ratio"] for r in scored]),
        "teacher_sentence_ratio_without_final": _mean(without_final),
        "mean_sentences": _mean([len(r.get("sentences") or []) for r in scored]),
        "mean_chars": _mean([len(r["content"]) for r in records]),
        "mean_words": _mean([len(r["content"].split()) for r in records]),
        "mixed_policy_examples": sum(1 for r in records if r.get("source") == "mixed"),
    }


__all__ = ["das_kept", "pool_records", "random_subset", "set_statistics", "sft_examples"]
