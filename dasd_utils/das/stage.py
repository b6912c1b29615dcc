"""One DAS stage: select the teacher records, score them with the student, shard across processes.

Several processes: under ``accelerate launch --num_processes N -m dasd_utils das ...`` (GPUs) or
``torchrun --nproc_per_node N -m dasd_utils das ...`` (CPU: ``accelerate launch --cpu`` starts a
single process unless given an MPI hostfile), each process scores its shard of the examples
(``accelerate.PartialState.split_between_processes``) on its own device and writes it to a part
file; the main process merges the parts in the original order and writes every output.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from .. import layout
from ..align import UnscorableError
from ..token_recovery import analysis_target, analysis_text, teacher_token_spans
from ..config import Config
from ..data import load_run_questions, read_jsonl, write_jsonl
from ..jsonl import iter_records
from ..prompts import build_messages
from ..quality import check_response, student_token_counters
from ..segment import Sentence, sentence_spans
from .example import base_record, mark_unscorable, score_example

log = logging.getLogger(__name__)


def teacher_path(cfg: Config, stage: int):
    """Return the teacher records DAS reads: ``teacher/stage{N}.jsonl`` (:mod:`dasd_utils.layout`)."""
    return layout.teacher_records(cfg.run_dir, stage)


# --------------------------------------------------------------------------- teacher records
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



# --------------------------------------------------------------------------- the trained text's quality
def target_judge(cfg: Config):
    """Return ``judge(row, text) -> verdict dict``: the quality filter on the text that will be trained on.

    With ``teacher.reasoning_source=analysis`` the SFT target is built from gpt-oss's analysis
    channel, a text the teacher phase's verdict (computed on ``content``) never saw: its
    repetition loops, its talk about the answer format, its length in student tokens (the whole
    example against ``student.max_context``, the response against ``eval.max_new_tokens``) are
    judged here. The student tokenizer is loaded once; when it cannot be, the length checks are
    skipped and the verdict's ``detail`` says so.
    """
    tokenizer, note = None, ""
    if cfg.quality.check_student_context or cfg.quality.check_student_generation:
        try:
            from ..models import load_tokenizer

            tokenizer = load_tokenizer(cfg.student.model, cfg)
        except Exception as exc:  # noqa: BLE001 - offline, unknown name...: said in every verdict
            note = f"student tokenizer unavailable ({type(exc).__name__}): lengths not checked"
            log.warning("DAS target quality: %s: %s", note, exc)

    def judge(row, text: str) -> dict[str, Any]:
        example = response = None
        if tokenizer is not None:
            example, response = student_token_counters(tokenizer, row, cfg.system_prompt)
        verdict = check_response(text, row.get("answerKey"), cfg.quality, example, cfg.student.max_context,
                                 response, cfg.eval.max_new_tokens).to_dict()
        if note and verdict["ok"]:
            verdict["detail"] = note
        return verdict

    return judge


def target_rejected(record: dict[str, Any]) -> bool:
    """Return True when the quality filter rejected the text a DAS record would train on (analysis targets)."""
    verdict = record.get("target_quality")
    return bool(verdict) and not verdict.get("ok")


# --------------------------------------------------------------------------- models
def load_scoring_model(cfg: Config, device: str | None = None, distilled_adapter: str | None = None):
    """Return ``(model, tokenizer)``: the student, wrapped in its PEFT adapter when one is given.

    With an adapter, the student's own scores are computed with the adapter disabled
    (``PeftModel.disable_adapter``) so that one copy of the base weights serves both models.
    """
    from ..models import load_model

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
    from ..scoring import batched_token_logprobs

    kwargs = dict(
        batch_size=cfg.das.batch_size, chunk_tokens=cfg.das.logprob_chunk_tokens,
        pad_token_id=tokenizer.pad_token_id, progress=progress, reuse_prefix=cfg.das.reuse_prompt_prefix,
    )
    if not distilled:
        return batched_token_logprobs(model, examples, desc=f"DAS stage {stage} : élève", **kwargs), None
    with model.disable_adapter():
        student = batched_token_logprobs(model, examples, desc=f"DAS stage {stage} : élève", **kwargs)
    distilled_lp = batched_token_logprobs(model, examples, desc=f"DAS stage {stage} : élève distillé", **kwargs)
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


def das_dir(cfg: Config) -> Path:
    return layout.das_dir(cfg.run_dir)


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
    layout.check_stage(stage)
    state = state or process_state(cfg)
    path = teacher_path(cfg, stage)
    if not path.is_file():
        raise layout.MissingPhaseOutput(path, "generate")
    questions = {row["id"]: row for row in load_run_questions(cfg, "train")}
    selected, counts = select_records(iter_records(path), stage, set(questions))
    distilled_adapter = distilled_adapter if distilled_adapter is not None else cfg.das.distilled_adapter

    # Teacher side and sentences: cheap and deterministic, done by every process.
    records: list[dict[str, Any]] = []
    prepared: dict[int, tuple[list[Sentence], Any]] = {}
    judge = target_judge(cfg) if cfg.teacher.reasoning_source == "analysis" and selected else None
    for i, rec in enumerate(selected):
        messages = build_messages(questions[rec["question_id"]], cfg.system_prompt)
        record = base_record(rec, stage, messages)
        records.append(record)
        content = rec.get("content")
        if not isinstance(content, str) or not content:
            # A quality-kept record always has text; guard against hand-edited files anyway.
            mark_unscorable(record, UnscorableError("no_sentences", "empty content"))
            continue
        record["reasoning_source"] = cfg.teacher.reasoning_source
        try:
            if cfg.teacher.reasoning_source == "analysis":
                try:
                    content = record["content"] = analysis_text(content, rec.get("reasoning"))
                except UnscorableError:
                    record["content"] = None  # no target of the chosen source: not trained on either
                    raise
                # The teacher's verdict judged the content; the analysis is what will be trained on.
                record["target_quality"] = judge(questions[rec["question_id"]], content)
                if target_rejected(record):
                    continue  # not scored, not kept, counted in the summary (target_quality_rejected)
                content, teacher = analysis_target(rec.get("content"), rec.get("reasoning"), rec.get("tokens"),
                                                   rec.get("reasoning_tokens"))
            else:
                teacher = teacher_token_spans(content, rec.get("tokens"))
            sentences = sentence_spans(content, cfg.das.segmenter)
            if not sentences:
                raise UnscorableError("no_sentences", "the response holds no sentence outside markup")
        except UnscorableError as exc:
            mark_unscorable(record, exc)
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
        from ..scoring import encode_for_scoring, response_token_spans

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
                mark_unscorable(records[i], exc)
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




__all__ = ["das_dir", "load_scoring_model", "process_state", "score_stage", "select_records", "target_judge",
           "target_rejected", "teacher_path"]
