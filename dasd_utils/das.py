"""Phase 4, Divergence-Aware Sampling (DAS): which teacher responses teach the student something.

For every quality-kept teacher response (one per question and stage, see
:func:`select_records`):

1. the response is cut into sentences, as character spans (:mod:`dasd_utils.segment`);
2. each sentence gets the teacher's probability ``P_T`` from the API logprobs (teacher tokenizer)
   and the student's ``P_S`` from teacher forcing in the student's own chat context (student
   tokenizer), both aligned on characters (:mod:`dasd_utils.align`, :mod:`dasd_utils.scoring`);
   ``P = exp(mean token logprob)`` over the sentence's tokens;
3. each sentence is a *teacher*, *shared* or *student* sentence (:func:`classify_sentences`);
4. an example is kept when its share of teacher sentences is above ``das.keep_ratio_threshold``.

Classification (thresholds from :class:`~dasd_utils.config.DASConfig`, the course's values):

* ``teacher``: ``P_T > 0.6`` and ``P_T - P_S > 0.2`` — the teacher is confident and the student
  is not: the sentence carries what the student has to learn;
* ``student``: ``P_S > 0.6`` and ``P_S - P_T > 0.2`` — the mirror case: the student's own way of
  saying it, which the teacher would not favour;
* ``shared``: everything else (both confident, both unsure, or close).

"Greater than" is strict, and a value within ``1e-9`` of its threshold counts as *on* it (so the
floating-point result of ``0.8 - 0.6`` is not above ``0.2``). An example whose
``teacher_sentence_ratio`` is exactly ``0.3`` is therefore rejected.

Provenance with a third model (``das.distilled_adapter``: the distilled student). Each sentence
also gets ``p_distilled`` (``P_D``) and one of four labels, our reading of the DASD paper's
analysis of where the distilled student's sentences come from:

* ``teacher`` and ``student``: as above (defined by ``P_T`` and ``P_S`` only);
* ``boosted``: neither, but ``P_D > 0.6`` and ``P_D - max(P_T, P_S) > 0.2`` — the distilled
  student is confident about a sentence that neither its teacher nor its former self favoured:
  the sentence was boosted by the training itself;
* ``shared``: the rest.

Sentences too short to own a token of both tokenizers (see the token-to-sentence rule in
:mod:`dasd_utils.align`) are merged into the previous sentence (the next one for the first);
a response with no sentence, or without a usable token on either side, is *unscorable*: it is
excluded with a counted reason (:data:`dasd_utils.align.UNSCORABLE_REASONS`), never given a
default probability.

Several processes: under ``accelerate launch --num_processes N -m dasd_utils das ...`` (GPUs) or
``torchrun --nproc_per_node N -m dasd_utils das ...`` (CPU: ``accelerate launch --cpu`` starts a
single process unless given an MPI hostfile), each process scores its shard of the examples
(``accelerate.PartialState.split_between_processes``) on its own device and writes it to a part
file; the main process merges the parts in the original order and writes every output.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .align import (
    UNSCORABLE_REASONS,
    UnscorableError,
    analysis_target,
    analysis_text,
    assign_tokens,
    sentence_stats,
    teacher_token_spans,
)
from .config import Config, DASConfig, phase_settings
from .data import load_run_questions, read_jsonl, write_jsonl
from .hashing import adapter_sha256, file_sha256
from .jsonl import iter_records
from .prompts import build_messages
from .segment import Sentence, sentence_spans
from .summaries import DasSummary, write_summary
from .timing import timed_phase

log = logging.getLogger(__name__)

#: Bump when the scoring of a record changes, so that old outputs are recomputed.
DAS_FORMAT_VERSION = 3  # 2: sentence rules of issue 10 item 5 (+ ratio without final); 3: located teacher tokens, reasoning_source
STAGES = (1, 2)
SENTENCE_TYPES = ("teacher", "shared", "student")
PROVENANCE_TYPES = ("teacher", "boosted", "shared", "student")
#: Values within this distance of a threshold count as equal to it (not strictly above).
THRESHOLD_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- classification
def _above(value: float, threshold: float) -> bool:
    return value > threshold + THRESHOLD_TOLERANCE


def classify_sentence(p_teacher: float, p_student: float, cfg: DASConfig | None = None) -> str:
    """Return ``teacher``, ``shared`` or ``student`` for one sentence (rules in the module docstring)."""
    cfg = cfg or DASConfig()
    if _above(p_teacher, cfg.teacher_prob_threshold) and _above(p_teacher - p_student, cfg.divergence_threshold):
        return "teacher"
    if _above(p_student, cfg.teacher_prob_threshold) and _above(p_student - p_teacher, cfg.divergence_threshold):
        return "student"
    return "shared"


def provenance(p_teacher: float, p_student: float, p_distilled: float, cfg: DASConfig | None = None) -> str:
    """Return ``teacher``, ``boosted``, ``shared`` or ``student`` (four-way provenance, module docstring)."""
    cfg = cfg or DASConfig()
    base = classify_sentence(p_teacher, p_student, cfg)
    if base != "shared":
        return base
    if _above(p_distilled, cfg.teacher_prob_threshold) and _above(
        p_distilled - max(p_teacher, p_student), cfg.divergence_threshold
    ):
        return "boosted"
    return "shared"


def classify_sentences(
    p_teacher: Sequence[float],
    p_student: Sequence[float],
    cfg: DASConfig | None = None,
    p_distilled: Sequence[float] | None = None,
) -> list[str]:
    """Return one label per sentence: the three DAS types, or the four-way provenance when ``p_distilled`` is given."""
    if len(p_teacher) != len(p_student) or (p_distilled is not None and len(p_distilled) != len(p_teacher)):
        raise ValueError("p_teacher, p_student (and p_distilled) must have one value per sentence")
    for name, values in (("p_teacher", p_teacher), ("p_student", p_student), ("p_distilled", p_distilled or [])):
        for v in values:
            if v is None or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} holds {v!r}: sentence probabilities must be numbers in [0, 1]")
    if p_distilled is None:
        return [classify_sentence(t, s, cfg) for t, s in zip(p_teacher, p_student)]
    return [provenance(t, s, d, cfg) for t, s, d in zip(p_teacher, p_student, p_distilled)]


def teacher_sentence_ratio(types: Sequence[str]) -> float:
    """Return the share of ``teacher`` sentences (an example needs at least one sentence)."""
    if not types:
        raise ValueError("teacher_sentence_ratio needs at least one sentence")
    return sum(t == "teacher" for t in types) / len(types)


def ratio_without_final(sentences: Sequence[Mapping[str, Any]]) -> float | None:
    """Return the teacher-sentence ratio over the sentences that are not the final-answer line (None if none is left).

    Reported next to ``teacher_sentence_ratio`` (which the keep rule uses, as in the course): the
    "Final Answer: X" line is one sentence of a few tokens that both models predict easily, so it
    moves the ratio of a short answer without saying anything about its reasoning.
    """
    types = [s["type"] for s in sentences if not s.get("final_answer")]
    return teacher_sentence_ratio(types) if types else None


def keep_example(ratio: float, cfg: DASConfig | None = None) -> bool:
    """Return True when the example's teacher-sentence ratio is strictly above the keep threshold."""
    cfg = cfg or DASConfig()
    return _above(ratio, cfg.keep_ratio_threshold)


# --------------------------------------------------------------------------- one example
def _merge_groups(
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
    groups = _merge_groups(len(sentences), t_counts, s_counts)
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


# --------------------------------------------------------------------------- teacher records
def das_dir(cfg: Config) -> Path:
    return cfg.run_dir / "das"


def teacher_path(cfg: Config, stage: int) -> Path:
    return cfg.run_dir / "teacher" / f"stage{stage}.jsonl"


def das_path(cfg: Config, stage: int) -> Path:
    return das_dir(cfg) / f"stage{stage}.jsonl"


def sft_path(cfg: Config, stage: int) -> Path:
    return das_dir(cfg) / f"stage{stage}_sft.jsonl"


def select_records(records: Iterable[dict[str, Any]], stage: int, known_ids: set[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Return (one quality-kept record per question, in file order; counts of what was set aside).

    Records may repeat a question (best-of-n samples): the first quality-kept record of each
    question is used. Counts: ``records_read``, ``quality_rejected`` (verdict not ok, or no
    verdict), ``extra_samples`` (quality-kept but the question already has one),
    ``unknown_question`` (question not among the run's training questions), ``selected``.
    """
    counts = Counter(records_read=0, quality_rejected=0, extra_samples=0, unknown_question=0, selected=0)
    chosen: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        counts["records_read"] += 1
        if rec.get("stage") not in (None, stage):
            raise ValueError(f"teacher record #{i} of stage {stage} says stage={rec.get('stage')!r}")
        quality = rec.get("quality") or {}
        if not quality.get("ok"):
            counts["quality_rejected"] += 1
            continue
        qid = rec.get("question_id")
        if known_ids is not None and qid not in known_ids:
            counts["unknown_question"] += 1
            continue
        if qid in chosen:
            counts["extra_samples"] += 1
            continue
        chosen[qid] = rec
        counts["selected"] += 1
    if counts["unknown_question"]:
        log.warning(
            "stage %d: %d quality-kept teacher records name questions absent from data/train.jsonl; they are skipped",
            stage, counts["unknown_question"],
        )
    return list(chosen.values()), dict(counts)


def _base_record(rec: dict[str, Any], stage: int, messages: list[dict[str, str]]) -> dict[str, Any]:
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


def _unscorable(record: dict[str, Any], exc: UnscorableError) -> dict[str, Any]:
    record.update(scorable=False, unscorable_reason=exc.reason, unscorable_detail=exc.detail or None,
                  sentences=[], teacher_sentence_ratio=None, teacher_sentence_ratio_without_final=None, keep=False)
    return record


# --------------------------------------------------------------------------- models
def load_scoring_model(cfg: Config, device: str | None = None, distilled_adapter: str | None = None):
    """Return ``(model, tokenizer)``: the student, wrapped in its PEFT adapter when one is given.

    With an adapter, the student's own scores are computed with the adapter disabled
    (``PeftModel.disable_adapter``) so that one copy of the base weights serves both models.
    """
    from .models import load_model

    model, tokenizer = load_model(
        cfg.student.model, cfg, dtype=cfg.student.dtype, device=device or cfg.student.device,
        **({"attn_implementation": cfg.student.attn_implementation} if cfg.student.attn_implementation else {}),
    )
    if distilled_adapter:
        from peft import PeftModel

        path = Path(distilled_adapter)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"das.distilled_adapter={distilled_adapter}: no adapter_config.json there")
        model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
        model.eval()
    return model, tokenizer


def _student_logprobs(model, examples, cfg: Config, tokenizer, distilled: bool, progress: bool, stage: int):
    from .scoring import batched_token_logprobs

    kwargs = dict(
        batch_size=cfg.das.batch_size, chunk_tokens=cfg.das.logprob_chunk_tokens,
        pad_token_id=tokenizer.pad_token_id, progress=progress, reuse_prefix=cfg.das.reuse_prompt_prefix,
    )
    if not distilled:
        return batched_token_logprobs(model, examples, desc=f"DAS étape {stage} : élève", **kwargs), None
    with model.disable_adapter():
        student = batched_token_logprobs(model, examples, desc=f"DAS étape {stage} : élève", **kwargs)
    distilled_lp = batched_token_logprobs(model, examples, desc=f"DAS étape {stage} : élève distillé", **kwargs)
    return student, distilled_lp


# --------------------------------------------------------------------------- one stage
class _SingleProcess:
    """Stand-in for accelerate's PartialState when accelerate cannot be imported."""

    num_processes = 1
    process_index = 0
    is_main_process = True

    def split_between_processes(self, inputs):  # pragma: no cover - trivial
        from contextlib import nullcontext

        return nullcontext(inputs)

    def wait_for_everyone(self):  # pragma: no cover - trivial
        return None


def process_state(cfg: Config | None = None):
    """Return accelerate's ``PartialState`` (one process unless started by ``accelerate launch`` / ``torchrun``).

    Without a GPU (or with ``student.device=cpu``, or ``ACCELERATE_USE_CPU=true``) the state is a
    CPU one, so that several processes started by ``torchrun`` form a gloo group on the CPU
    (``accelerate launch --cpu`` itself starts a single process unless given an MPI hostfile).
    """
    try:
        import torch
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a requirement
        return _SingleProcess()
    cpu = (
        not torch.cuda.is_available()
        or (cfg is not None and cfg.student.device == "cpu")
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    )
    return PartialState(cpu=cpu)


def _part_path(cfg: Config, stage: int, index: int, total: int) -> Path:
    return das_dir(cfg) / f".stage{stage}.part{index}-of-{total}.jsonl"


def score_stage(
    cfg: Config,
    stage: int,
    *,
    model=None,
    tokenizer=None,
    distilled_adapter: str | None = None,
    state=None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]] | None, dict[str, int]]:
    """Return (the DAS records of one stage in teacher-file order, selection counts).

    Loads the student (and the distilled adapter) unless ``model`` / ``tokenizer`` are given.
    Under several processes each scores its shard; the main process gets the merged records,
    the others get ``None``. Writes nothing but the shard part files.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    state = state or process_state(cfg)
    path = teacher_path(cfg, stage)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the 'generate' phase first (python -m dasd_utils generate ...)")
    questions = {row["id"]: row for row in load_run_questions(cfg, "train")}
    selected, counts = select_records(iter_records(path), stage, set(questions))
    distilled_adapter = distilled_adapter if distilled_adapter is not None else cfg.das.distilled_adapter

    # Teacher side and sentences: cheap and deterministic, done by every process.
    records: list[dict[str, Any]] = []
    prepared: dict[int, tuple[list[Sentence], Any]] = {}
    for i, rec in enumerate(selected):
        messages = build_messages(questions[rec["question_id"]], cfg.system_prompt)
        record = _base_record(rec, stage, messages)
        records.append(record)
        content = rec.get("content")
        if not isinstance(content, str) or not content:
            # A quality-kept record always has text; guard against hand-edited files anyway.
            _unscorable(record, UnscorableError("no_sentences", "empty content"))
            continue
        record["reasoning_source"] = cfg.teacher.reasoning_source
        try:
            if cfg.teacher.reasoning_source == "analysis":
                try:
                    content = record["content"] = analysis_text(content, rec.get("reasoning"))
                except UnscorableError:
                    record["content"] = None  # no target of the chosen source: not trained on either
                    raise
                content, teacher = analysis_target(rec.get("content"), rec.get("reasoning"), rec.get("tokens"),
                                                   rec.get("reasoning_tokens"))
            else:
                teacher = teacher_token_spans(content, rec.get("tokens"))
            sentences = sentence_spans(content, cfg.das.segmenter)
            if not sentences:
                raise UnscorableError("no_sentences", "the response holds no sentence outside markup")
        except UnscorableError as exc:
            _unscorable(record, exc)
            continue
        record["teacher_alignment"] = teacher.method
        record["teacher_alignment_note"] = teacher.note
        prepared[i] = (sentences, teacher)

    todo = sorted(prepared)
    with state.split_between_processes(todo) as shard:
        shard = list(shard)
    if shard:
        if model is None or tokenizer is None:
            model, tokenizer = load_scoring_model(cfg, distilled_adapter=distilled_adapter)
        elif distilled_adapter and not hasattr(model, "disable_adapter"):
            raise ValueError("a distilled adapter is configured but the given model carries no PEFT adapter: "
                             "load it with das.load_scoring_model(cfg, distilled_adapter=...)")
        from .scoring import encode_for_scoring, response_token_spans

        examples = encode_for_scoring(
            tokenizer, [records[i]["messages"] for i in shard], [records[i]["content"] for i in shard]
        )
        student_lp, distilled_lp = _student_logprobs(
            model, examples, cfg, tokenizer, bool(distilled_adapter), progress and state.is_main_process, stage
        )
        for k, i in enumerate(shard):
            sentences, teacher = prepared[i]
            s_starts, s_ends = response_token_spans(examples[k])
            try:
                scored = score_example(
                    records[i]["content"], sentences, teacher.starts, teacher.ends, teacher.logprobs,
                    s_starts, s_ends, student_lp[k], cfg.das,
                    distilled_logprobs=None if distilled_lp is None else distilled_lp[k],
                )
            except UnscorableError as exc:
                _unscorable(records[i], exc)
                continue
            records[i].update(scorable=True, **scored)
    if state.num_processes == 1:
        return records, counts

    # Several processes: each writes its shard, the main process merges in the original order.
    part = _part_path(cfg, stage, state.process_index, state.num_processes)
    write_jsonl(part, [dict(records[i], _index=i) for i in shard])
    state.wait_for_everyone()
    if not state.is_main_process:
        return None, counts
    merged = dict(enumerate(records))
    seen: list[int] = []
    for p in range(state.num_processes):
        part_file = _part_path(cfg, stage, p, state.num_processes)
        if not part_file.is_file():
            raise RuntimeError(f"process {p} wrote no DAS shard ({part_file} missing)")
        for row in read_jsonl(part_file):
            index = row.pop("_index")
            merged[index] = row
            seen.append(index)
    if sorted(seen) != todo:
        raise RuntimeError(f"DAS shards cover {len(seen)} examples, expected {len(todo)}: not merging")
    for p in range(state.num_processes):
        _part_path(cfg, stage, p, state.num_processes).unlink(missing_ok=True)
    return [merged[i] for i in range(len(records))], counts


# --------------------------------------------------------------------------- outputs
def sft_rows(records: Sequence[dict[str, Any]], stage: int, cfg: Config) -> list[dict[str, Any]]:
    """Return the SFT-ready examples of a stage (docs/artifacts.md, "SFT-ready datasets")."""
    das_filter = stage == 2 or cfg.das.filter_stage1
    rows = []
    for rec in records:
        if das_filter and not rec.get("keep"):
            continue
        if not rec.get("content"):  # reasoning_source=analysis and the record has no analysis text
            continue
        rows.append({
            "question_id": rec["question_id"],
            "stage": stage,
            "messages": list(rec["messages"]) + [{"role": "assistant", "content": rec["content"]}],
        })
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize_stage(records: Sequence[dict[str, Any]], counts: dict[str, int], stage: int, cfg: Config) -> dict[str, Any]:
    """Return the statistics of one stage for ``das/summary.json``."""
    scored = [r for r in records if r.get("scorable")]
    unscorable = Counter(r["unscorable_reason"] for r in records if not r.get("scorable"))
    ratios = [r["teacher_sentence_ratio"] for r in scored]
    ratios_wo_final = [r["teacher_sentence_ratio_without_final"] for r in scored
                       if r.get("teacher_sentence_ratio_without_final") is not None]
    sentences = [s for r in scored for s in r["sentences"]]
    kept = sum(bool(r["keep"]) for r in scored)
    out: dict[str, Any] = {
        **counts,
        "scored": len(scored),
        "unscorable": {reason: unscorable.get(reason, 0) for reason in UNSCORABLE_REASONS},
        "n_unscorable": sum(unscorable.values()),
        "kept": kept,
        "rejected": len(scored) - kept,
        "keep_rate": kept / len(scored) if scored else None,
        "teacher_sentence_ratio": {
            "mean": _mean(ratios), "median": _median(ratios),
            "min": min(ratios) if ratios else None, "max": max(ratios) if ratios else None,
        },
        "teacher_sentence_ratio_without_final": {"mean": _mean(ratios_wo_final), "median": _median(ratios_wo_final)},
        "sentences": len(sentences),
        "sentence_types": {t: sum(s["type"] == t for s in sentences) for t in SENTENCE_TYPES},
        "mean_sentences_per_example": len(sentences) / len(scored) if scored else None,
        "mean_p_teacher": _mean([s["p_teacher"] for s in sentences]),
        "mean_p_student": _mean([s["p_student"] for s in sentences]),
        "teacher_alignment": dict(Counter(r["teacher_alignment"] for r in scored)),
        "merged_sentences": sum(r.get("n_merged_sentences", 0) for r in scored),
        "sft_examples": len(sft_rows(records, stage, cfg)),
        "sft_das_filtered": stage == 2 or cfg.das.filter_stage1,
    }
    if sentences and "p_distilled" in sentences[0]:
        out["mean_p_distilled"] = _mean([s["p_distilled"] for s in sentences])
        out["provenance"] = {t: sum(s.get("provenance") == t for s in sentences) for t in PROVENANCE_TYPES}
    return out


def scoring_inputs(cfg: Config, stage: int) -> dict[str, Any]:
    """Return what a stage's scores depend on (hashed to decide whether outputs can be reused)."""
    train = cfg.run_dir / "data" / "train.jsonl"
    return {
        "version": DAS_FORMAT_VERSION,
        "stage": stage,
        "teacher_records_sha256": file_sha256(teacher_path(cfg, stage)),
        "questions_sha256": file_sha256(train) if train.is_file() else None,
        "system_prompt": cfg.system_prompt,
        "student_model": cfg.student.model,
        "student_dtype": cfg.student.dtype,
        "segmenter": cfg.das.segmenter,
        "reasoning_source": cfg.teacher.reasoning_source,
        "distilled_adapter": cfg.das.distilled_adapter,
        "distilled_adapter_sha256": adapter_sha256(cfg.das.distilled_adapter) if cfg.das.distilled_adapter else None,
    }


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _classification_inputs(cfg: Config) -> dict[str, Any]:
    d = cfg.das
    return {
        "teacher_prob_threshold": d.teacher_prob_threshold,
        "divergence_threshold": d.divergence_threshold,
        "keep_ratio_threshold": d.keep_ratio_threshold,
        "filter_stage1": d.filter_stage1,
        "figures": d.figures,
        "profile": cfg.profile,
    }


def load_das_records(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the DAS records of a stage written by this phase."""
    path = das_path(cfg, stage)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the 'das' phase first (python -m dasd_utils das ...)")
    return read_jsonl(path)


def _manifest_path(cfg: Config) -> Path:
    return das_dir(cfg) / "manifest.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def make_figures(cfg: Config, records_by_stage: dict[int, list[dict[str, Any]]]) -> list[str]:
    """Write the DAS figures into ``<run>/figures`` and return their paths."""
    from .plots import das as das_plots

    return [str(p) for p in das_plots.all_figures(records_by_stage, cfg)]


@timed_phase("das")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """DAS phase: score both stages' teacher responses, write records, SFT datasets, summary, figures."""
    start = time.perf_counter()
    state = process_state(cfg)
    manifest_file = _manifest_path(cfg)
    manifest = (_read_json(manifest_file) or {}) if not force else {}
    inputs = {stage: scoring_inputs(cfg, stage) if teacher_path(cfg, stage).is_file() else None for stage in STAGES}
    for stage, value in inputs.items():
        if value is None:
            raise FileNotFoundError(
                f"{teacher_path(cfg, stage)} not found: run the 'generate' phase first (python -m dasd_utils generate ...)"
            )
    keys = {stage: _key(inputs[stage]) for stage in STAGES}
    reuse = {
        stage: (not force)
        and manifest.get("stages", {}).get(str(stage), {}).get("scoring_key") == keys[stage]
        and das_path(cfg, stage).is_file()
        for stage in STAGES
    }
    full_key = _key({"scoring": keys, "classification": _classification_inputs(cfg)})
    summary_file = das_dir(cfg) / "summary.json"
    if all(reuse.values()) and manifest.get("full_key") == full_key and summary_file.is_file():
        summary = _read_json(summary_file)
        # Figure paths are stored as written (relative to the CLI's working directory); a notebook
        # runs from notebooks/, so look them up by name in the run's figures folder.
        figures = cfg.run_dir / "figures"
        if summary is not None and all((figures / Path(p).name).is_file() for p in summary.get("figures", [])):
            summary["reused"] = True
            return summary

    model = tokenizer = None
    records_by_stage: dict[int, list[dict[str, Any]] | None] = {}
    counts_by_stage: dict[int, dict[str, int]] = {}
    try:
        for stage in STAGES:
            if reuse[stage]:
                records = load_das_records(cfg, stage)
                for rec in records:
                    reclassify(rec, cfg.das)
                records_by_stage[stage] = records
                counts_by_stage[stage] = manifest["stages"][str(stage)]["counts"]
                continue
            if model is None:
                device = None
                if state.num_processes > 1 and cfg.student.device == "auto":
                    device = str(state.device)
                model, tokenizer = load_scoring_model(cfg, device=device, distilled_adapter=cfg.das.distilled_adapter)
            records, counts = score_stage(cfg, stage, model=model, tokenizer=tokenizer, state=state)
            records_by_stage[stage] = records
            counts_by_stage[stage] = counts
    finally:
        if model is not None:
            del model
            gc.collect()
            _empty_cuda_cache()

    if not state.is_main_process:
        return {"process_index": state.process_index, "num_processes": state.num_processes}

    stage_summaries = {}
    for stage in STAGES:
        records = records_by_stage[stage] or []
        write_jsonl(das_path(cfg, stage), records)
        write_jsonl(sft_path(cfg, stage), sft_rows(records, stage, cfg))
        stage_summaries[str(stage)] = summarize_stage(records, counts_by_stage[stage], stage, cfg)
    figures = make_figures(cfg, {s: records_by_stage[s] or [] for s in STAGES}) if cfg.das.figures else []
    summary = {
        "profile": cfg.profile,
        "stand_in": cfg.profile == "demo",
        "student": cfg.student.model,
        "distilled_adapter": cfg.das.distilled_adapter,
        "thresholds": {
            "teacher_prob": cfg.das.teacher_prob_threshold,
            "divergence": cfg.das.divergence_threshold,
            "keep_ratio": cfg.das.keep_ratio_threshold,
        },
        "segmenter": cfg.das.segmenter,
        # Where P_T and the SFT target come from (teacher.reasoning_source): the answer's <reasoning>
        # block (content) or gpt-oss's analysis channel (analysis).
        "reasoning_source": cfg.teacher.reasoning_source,
        "num_processes": state.num_processes,
        "rescored_stages": [s for s in STAGES if not reuse[s]],
        "reused": False,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "stages": stage_summaries,
        "files": {
            **{f"das_stage{s}": str(das_path(cfg, s)) for s in STAGES},
            **{f"sft_stage{s}": str(sft_path(cfg, s)) for s in STAGES},
        },
        "figures": figures,
        "settings": phase_settings(cfg, "das"),  # what this phase used (the report checks config.json against it)
    }
    write_summary(summary_file, DasSummary.from_dict(summary))
    _write_json(manifest_file, {
        "full_key": full_key,
        "stages": {
            str(s): {"scoring_key": keys[s], "inputs": inputs[s], "counts": counts_by_stage[s]} for s in STAGES
        },
    })
    return summary


def provenance_analysis(cfg: Config, distilled_adapter: str, stage: int = 2, force: bool = False) -> dict[str, Any]:
    """Return the four-way provenance counts of a stage's sentences under a distilled student.

    Scores the stage's teacher responses with the student and with ``distilled_adapter`` (a PEFT
    adapter on the student, e.g. ``runs/<run>/sft/stage2``) and writes the records, with
    ``p_distilled`` and ``provenance`` per sentence, to ``das/provenance_stage{stage}.jsonl``
    (the phase's own ``das/stage{stage}.jsonl`` is left untouched). Reuses that file when the
    teacher records, the student and the adapter did not change.
    """
    out = das_dir(cfg) / f"provenance_stage{stage}.jsonl"
    meta = das_dir(cfg) / f"provenance_stage{stage}.json"
    key = _key({**scoring_inputs(cfg, stage), "distilled_adapter": distilled_adapter,
                "distilled_adapter_sha256": adapter_sha256(distilled_adapter)})
    saved = _read_json(meta) if not force else None
    if saved and saved.get("key") == key and out.is_file():
        records, counts = read_jsonl(out), saved["counts"]
    else:
        records, counts = score_stage(cfg, stage, distilled_adapter=distilled_adapter)
        if records is None:  # a non-main process under accelerate
            return {}
        write_jsonl(out, records)
        _write_json(meta, {"key": key, "counts": counts, "distilled_adapter": distilled_adapter})
    for rec in records:
        reclassify(rec, cfg.das)
    summary = summarize_stage(records, counts, stage, cfg)
    summary["file"] = str(out)
    return summary


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


__all__ = [
    "DAS_FORMAT_VERSION",
    "PROVENANCE_TYPES",
    "SENTENCE_TYPES",
    "classify_sentence",
    "classify_sentences",
    "keep_example",
    "load_das_records",
    "load_scoring_model",
    "make_figures",
    "process_state",
    "provenance",
    "provenance_analysis",
    "ratio_without_final",
    "reclassify",
    "run_phase",
    "score_example",
    "score_stage",
    "select_records",
    "sentence_spans",
    "sft_rows",
    "summarize_stage",
    "teacher_sentence_ratio",
]
