"""DAS scoring of one example: sentence probabilities, types, teacher-sentence ratio and keep flag.

The sentences (character spans of the response, :mod:`dasd_utils.segment`) get the tokens of
each tokenizer that fall inside them (:mod:`dasd_utils.align`). Sentences too short to own a
token of both tokenizers are merged into the previous sentence (the next one for the first); a
response with no sentence, or without a usable token on either side, is *unscorable*: it is
excluded with a counted reason (:data:`dasd_utils.align.UNSCORABLE_REASONS`), never given a
default probability. The labels follow :mod:`dasd_utils.das.rules`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..align import UnscorableError, assign_tokens, sentence_stats
from ..config import DASConfig
from ..segment import Sentence
from .rules import classify_sentences, keep_example, provenance, ratio_without_final, teacher_sentence_ratio


def merge_groups(
    n_sentences: int, teacher_counts: np.ndarray, student_counts: np.ndarray
) -> list[list[int]]:
    """Return groups of sentence indices so that every group owns >= 1 token of both tokenizers."""
    groups = [[i] for i in range(n_sentences)]
    t = [int(c) for c in teacher_counts]
    s = [int(c) for c in student_counts]
    i = 0
    while i < len(groups):
        if (t[i] == 0 or s[i] == 0) and len(groups) > 1:
            j = i - 1 if i > 0 else i + 1
            lo, hi = min(i, j), max(i, j)
            groups[lo] = groups[lo] + groups[hi]
            t[lo] += t[hi]
            s[lo] += s[hi]
            del groups[hi], t[hi], s[hi]
            i = max(lo - 1, 0)  # the merged group may now satisfy, or need another merge
            continue
        i += 1
    return groups


def score_example(
    content: str,
    sentences: Sequence[Sentence],
    teacher_starts: np.ndarray,
    teacher_ends: np.ndarray,
    teacher_logprobs: np.ndarray,
    student_starts: np.ndarray,
    student_ends: np.ndarray,
    student_logprobs: np.ndarray,
    cfg: DASConfig | None = None,
    distilled_logprobs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Return ``sentences`` (with P_T, P_S, type), ``teacher_sentence_ratio`` and ``keep`` for one response.

    Token spans are character offsets into ``content``. ``distilled_logprobs`` are the distilled
    student's logprobs on the *same* student tokens (same tokenizer). Raises UnscorableError.
    """
    cfg = cfg or DASConfig()
    if not sentences:
        raise UnscorableError("no_sentences", "the response holds no sentence outside markup")
    starts = [s.start for s in sentences]
    ends = [s.end for s in sentences]
    t_assign = assign_tokens(starts, ends, teacher_starts, teacher_ends)
    s_assign = assign_tokens(starts, ends, student_starts, student_ends)
    t_counts, _ = sentence_stats(t_assign, teacher_logprobs, len(sentences))
    s_counts, _ = sentence_stats(s_assign, student_logprobs, len(sentences))
    if t_counts.sum() == 0:
        raise UnscorableError("no_teacher_tokens", "no teacher token falls inside a sentence")
    if s_counts.sum() == 0:
        raise UnscorableError("no_student_tokens", "no student token falls inside a sentence")
    groups = merge_groups(len(sentences), t_counts, s_counts)
    group_of = np.empty(len(sentences), dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g

    def regroup(assign: np.ndarray) -> np.ndarray:
        return np.where(assign >= 0, group_of[np.maximum(assign, 0)], -1)

    t_counts, t_means = sentence_stats(regroup(t_assign), teacher_logprobs, len(groups))
    s_counts, s_means = sentence_stats(regroup(s_assign), student_logprobs, len(groups))
    d_means = None
    if distilled_logprobs is not None:
        if len(distilled_logprobs) != len(student_logprobs):
            raise ValueError("distilled_logprobs must score the same student tokens")
        _, d_means = sentence_stats(regroup(s_assign), distilled_logprobs, len(groups))
    p_t = np.exp(t_means)
    p_s = np.exp(s_means)
    p_d = np.exp(d_means) if d_means is not None else None
    types = classify_sentences(p_t.tolist(), p_s.tolist(), cfg)
    prov = classify_sentences(p_t.tolist(), p_s.tolist(), cfg, p_distilled=p_d.tolist()) if p_d is not None else None
    out_sentences = []
    for g, members in enumerate(groups):
        start = min(sentences[m].start for m in members)
        end = max(sentences[m].end for m in members)
        item = {
            "start": int(start),
            "end": int(end),
            "text": content[start:end],
            "p_teacher": float(p_t[g]),
            "p_student": float(p_s[g]),
            "type": types[g],
            "n_teacher_tokens": int(t_counts[g]),
            "n_student_tokens": int(s_counts[g]),
            "final_answer": any(sentences[m].final_answer for m in members),
        }
        if p_d is not None:
            item["p_distilled"] = float(p_d[g])
            item["provenance"] = prov[g]  # type: ignore[index]
        out_sentences.append(item)
    ratio = teacher_sentence_ratio(types)
    return {
        "sentences": out_sentences,
        "teacher_sentence_ratio": ratio,
        "teacher_sentence_ratio_without_final": ratio_without_final(out_sentences),
        "keep": keep_example(ratio, cfg),
        "n_merged_sentences": len(sentences) - len(groups),
    }


def reclassify(record: dict[str, Any], cfg: DASConfig) -> bool:
    """Recompute types, ratio and keep of a scored record in place for new thresholds; return True if changed."""
    if not record.get("scorable"):
        return False
    sentences = record["sentences"]
    p_t = [s["p_teacher"] for s in sentences]
    p_s = [s["p_student"] for s in sentences]
    types = classify_sentences(p_t, p_s, cfg)
    changed = False
    for s, t in zip(sentences, types):
        if s["type"] != t:
            s["type"], changed = t, True
        if "p_distilled" in s:
            prov = provenance(s["p_teacher"], s["p_student"], s["p_distilled"], cfg)
            if s.get("provenance") != prov:
                s["provenance"], changed = prov, True
    ratio = teacher_sentence_ratio(types)
    keep = keep_example(ratio, cfg)
    if record["teacher_sentence_ratio"] != ratio or record["keep"] != keep:
        record["teacher_sentence_ratio"], record["keep"], changed = ratio, keep, True
    record["teacher_sentence_ratio_without_final"] = ratio_without_final(sentences)
    return changed


def base_record(rec: dict[str, Any], stage: int, messages: list[dict[str, str]]) -> dict[str, Any]:
    """Return a DAS record for a teacher record before scoring: not scorable, no sentences, not kept."""
    return {
        "question_id": rec.get("question_id"),
        "stage": stage,
        "request_hash": rec.get("request_hash"),
        "messages": messages,
        "content": rec.get("content"),
        "scorable": False,
        "unscorable_reason": None,
        "unscorable_detail": None,
        "teacher_alignment": None,
        "sentences": [],
        "teacher_sentence_ratio": None,
        "teacher_sentence_ratio_without_final": None,
        "keep": False,
    }


def mark_unscorable(record: dict[str, Any], exc: UnscorableError) -> dict[str, Any]:
    """Return ``record`` marked unscorable with the exception's reason (no sentences, not kept)."""
    record.update(scorable=False, unscorable_reason=exc.reason, unscorable_detail=exc.detail or None,
                  sentences=[], teacher_sentence_ratio=None, teacher_sentence_ratio_without_final=None, keep=False)
    return record


__all__ = ["base_record", "mark_unscorable", "merge_groups", "reclassify", "score_example"]
