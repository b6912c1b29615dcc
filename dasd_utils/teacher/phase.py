"""The teacher phase: send every missing request of both stages, summarize, plot (``python -m dasd_utils generate``).

:func:`generate_stage` runs one stage (the notebook's cell), :func:`run_phase` both stages with
the summary and figure, :func:`send_requests` any list of requests into a records file
(mixed-policy continuations). See the package docstring for resuming and the preflight.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from .. import layout
from ..config import Config, phase_settings
from ..data import load_run_questions
from ..jsonl import append_record, read_json
from ..layout import STAGES, check_stage
from ..prompts import build_sft_example
from ..secrets import redact_url
from ..summaries import TeacherSummary, keep_run_fields, write_summary
from ..timing import timed_phase
from .records import QualityJudge, finalize_record
from .requests import TeacherRequest, build_requests, model_label, samples_per_question, stage_temperature
from .store import (
    StageStore,
    TeacherError,
    archive_path,
    backup_if_corrupt,
    load_kept,
    load_records,
    read_records,
    stage_lock,
    stage_path,
    teacher_dir,
)

log = logging.getLogger(__name__)


class TeacherIncompleteError(TeacherError):
    """Some requests failed: everything else is saved; re-running sends only the failed ones."""


def send_requests(cfg: Config, requests: Sequence[TeacherRequest], path, *, backend: Any = None,
                  judge: QualityJudge | None = None, desc: str = "teacher", resend: bool = False) -> dict[str, dict[str, Any]]:
    """Return ``{request_hash: record}`` for ``requests`` after sending those without a completed record in ``path``.

    The records file works as a stage file does: appended as answers arrive, read back tolerantly,
    a completed request never sent again, a failed one retried. Records of other requests in the
    file are kept. A continuation's ``quality`` is that of the whole answer (prefill + content).
    ``resend`` sends them even when a completed record exists (the new answer is appended and wins).
    """
    from pathlib import Path

    path = Path(path)
    backup_if_corrupt(path)
    records = read_records(path)
    todo = [r for r in requests if resend or (records.get(r.request_hash) or {"error": "missing"}).get("error") is not None]
    if todo:
        judge = judge or QualityJudge(cfg)
        backend = backend or make_backend(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        progress = _Progress(len(todo), desc)

        def on_result(request: TeacherRequest, raw: Mapping[str, Any]) -> None:
            record = finalize_record(request, raw, judge)
            if request.prefill is not None and record["error"] is None:
                record["quality"] = judge.verdict(dict(record, content=request.prefill + (record["content"] or "")), request.row)
            append_record(path, record)
            records[record["request_hash"]] = record
            progress.update(record)

        try:
            backend.generate(todo, on_result)
        finally:
            progress.close()
    return {r.request_hash: records[r.request_hash] for r in requests if r.request_hash in records}


def check_endpoint(cfg: Config, backend: Any = None) -> dict[str, Any]:
    """Return the teacher check of a new run: the run's first stage-1 request sent alone, and its preflight verdict.

    That request is the one phase ``generate`` sends first, so its answer is stored in
    ``teacher/stage1.jsonl`` and never sent again: the check costs nothing more than the run.
    Returns ``{"checked": False, "reason"}`` for the local backend (nothing to reach) and when
    the request already has a completed record with the logprobs DAS needs (the endpoint answered
    it before: nothing is sent), else ``{"checked": True, "preflight": Preflight.to_dict(),
    "record": ...}``; a stored answer without logprobs (an earlier endpoint's) is asked again, so
    that the check is of the endpoint configured now. Raises
    what ``generate`` would: MissingSetting without ``teacher.base_url``, MissingAPIKey without a
    key, TeacherFatalError / TeacherPreflightError on a refused key, an unknown model, an
    unreachable host or an answer without usable logprobs.
    """
    if cfg.teacher.backend != "openai":
        return {"checked": False, "reason": "local"}
    first = load_run_questions(cfg, "train")[:1]
    if not first:
        return {"checked": False, "reason": "no_question"}
    request = build_requests(cfg, 1, first)[0][0]
    with stage_lock(cfg, 1):
        stored = read_records(stage_path(cfg, 1)).get(request.request_hash)
        answered = stored is not None and stored.get("error") is None
        if answered and (stored.get("tokens") is not None or not cfg.teacher.require_logprobs):
            return {"checked": False, "reason": "answered_before", "record": stored}
        backend = backend or make_backend(cfg)
        records = send_requests(cfg, [request], stage_path(cfg, 1), backend=backend, desc="teacher check", resend=answered)
    return {"checked": True, "preflight": getattr(backend, "last_preflight", None),
            "record": records.get(request.request_hash)}


def make_backend(cfg: Config) -> Any:
    """Return the backend object for ``teacher.backend`` (models and keys load on first use)."""
    if cfg.teacher.backend == "local":
        from .local import LocalTeacher

        return LocalTeacher(cfg, model_label(cfg))
    if cfg.teacher.backend == "openai":
        from .api import OpenAITeacher

        return OpenAITeacher(cfg, model_label(cfg))
    raise TeacherError(f"teacher.backend must be 'openai' or 'local', got {cfg.teacher.backend!r}")


class _Progress:
    """A tqdm bar over one round of requests, with failures and kept responses in its postfix."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)
        self.failed = 0
        self.kept = 0

    def update(self, record: Mapping[str, Any]) -> None:
        self.failed += record.get("error") is not None
        self.kept += bool(record.get("quality", {}).get("ok"))
        self.bar.set_postfix(ok=self.kept, failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- one stage
def generate_stage(
    cfg: Config,
    stage: int,
    questions: Sequence[Mapping[str, Any]] | None = None,
    *,
    backend: Any = None,
    judge: QualityJudge | None = None,
) -> dict[str, Any]:
    """Return the stage's summary after generating every missing or failed response of the stage.

    ``questions`` defaults to the run's training questions (``data/train.jsonl``). Completed
    requests are reused, never re-sent. Records are appended to ``teacher/stage{stage}.jsonl`` as
    they arrive; at the end the file is compacted to one record per current request. Raises
    :class:`~dasd_utils.teacher.api.TeacherFatalError` on 401/403/404 (what was received is kept).
    """
    check_stage(stage)
    started = time.perf_counter()
    rows = list(questions) if questions is not None else load_run_questions(cfg, "train")
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise TeacherError("questions contain duplicate ids; each question must appear once")
    rounds = build_requests(cfg, stage, rows)
    judge = judge or QualityJudge(cfg)
    backend = backend or make_backend(cfg)
    path = stage_path(cfg, stage)
    sent = failed_now = 0
    with stage_lock(cfg, stage):
        store = StageStore(cfg, stage, rounds)
        try:
            for sample_index, requests in enumerate(rounds):
                todo = [r for r in requests if store.needs(r, judge)]
                if not todo:
                    continue
                desc = f"teacher stage {stage}" + (f" sample {sample_index + 1}/{len(rounds)}" if len(rounds) > 1 else "")
                progress = _Progress(len(todo), desc)

                def on_result(request: TeacherRequest, raw: Mapping[str, Any]) -> None:
                    nonlocal failed_now
                    record = finalize_record(request, raw, judge)
                    append_record(path, record)
                    store.add(record)
                    failed_now += record["error"] is not None
                    progress.update(record)

                sent += len(todo)
                try:
                    backend.generate(todo, on_result)
                finally:
                    progress.close()
        finally:
            records = store.finalize(judge)
    summary = summarize_stage(cfg, stage, records, rows, judge)
    summary.update(sent=sent, failed_this_run=failed_now, reused=store.reused, wall_s=round(time.perf_counter() - started, 2))
    if getattr(backend, "last_preflight", None) is not None and sent:
        summary["preflight"] = backend.last_preflight
    return summary


# ----------------------------------------------------------------------------- summary
def summarize_stage(
    cfg: Config, stage: int, records: Sequence[Mapping[str, Any]], questions: Sequence[Mapping[str, Any]],
    judge: QualityJudge | None = None,
) -> dict[str, Any]:
    """Return a stage's counts: requests, failed, rejected per reason, kept, accuracy, confidence."""
    completed = [r for r in records if r.get("error") is None]
    first = [r for r in completed if r.get("sample_index", 0) == 0]
    rejected = Counter(r["quality"]["reason"] for r in completed if not r["quality"]["ok"])
    confidences = [r["mean_token_prob"] for r in completed if r.get("mean_token_prob") is not None]
    answered = [r for r in first if r["quality"].get("answer") is not None]
    usage = Counter()
    for r in completed:
        for key, value in (r.get("usage") or {}).items():
            if isinstance(value, (int, float)):
                usage[key] += value

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "stage": stage,
        "temperature": stage_temperature(cfg, stage),
        "model": model_label(cfg),
        "backend": cfg.teacher.backend,
        "stand_in": cfg.teacher.stand_in,
        "gold_hint": cfg.teacher.backend == "local" and cfg.teacher.local_gold_hint,
        "few_shot": cfg.teacher.local_few_shot if cfg.teacher.backend == "local" else 0,
        "best_of_n": samples_per_question(cfg),
        "questions": len(questions),
        "requests": len(records),
        "completed": len(completed),
        "failed": len(records) - len(completed),
        "rejected": dict(sorted(rejected.items())),
        "rejected_total": sum(rejected.values()),
        "quality_ok": sum(1 for r in completed if r["quality"]["ok"]),
        "kept": sum(1 for r in records if r.get("kept")),
        # Teacher accuracy: first sample of each question, answer == gold (no answer counts as wrong).
        "accuracy": share(sum(1 for r in first if r["quality"].get("answer") == r.get("gold")), len(first)),
        "accuracy_all_samples": share(sum(1 for r in completed if r["quality"].get("answer") == r.get("gold")), len(completed)),
        "format_rate": share(len(answered), len(first)),
        "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        "with_logprobs": len(confidences),
        "without_logprobs": sum(1 for r in completed if r.get("tokens") is None),
        "tokens_mismatch": sum(1 for r in completed if r.get("tokens_match_content") is False),
        "with_reasoning_field": sum(1 for r in completed if r.get("reasoning")),
        "with_reasoning_logprobs": sum(1 for r in completed if r.get("reasoning_tokens")),
        "reasoning_source": cfg.teacher.reasoning_source,
        "finish_reasons": dict(Counter(str(r.get("finish_reason")) for r in completed)),
        "usage": dict(usage),
        "context_checked": bool(judge.context_checked) if judge else None,
    }


# ----------------------------------------------------------------------------- phase
@timed_phase("generate")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Return the teacher phase's summary after generating both stages (reusing every completed request).

    Writes ``teacher/stage{1,2}.jsonl``, ``teacher/summary.json`` and ``figures/teacher_quality.png``.
    Raises :class:`TeacherIncompleteError` (after writing them) when requests failed, so that the
    command line exits non-zero and says to re-run.
    ``force`` moves the existing records to ``teacher/archive/forced-<time>/`` (never served again)
    and generates everything anew.
    """
    started = time.perf_counter()
    questions = load_run_questions(cfg, "train")
    out = teacher_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if force:
        _archive_for_force(cfg)
    summary_file = layout.teacher_summary(cfg.run_dir)
    previous = read_json(summary_file)
    backend = make_backend(cfg)
    judge = QualityJudge(cfg)
    stages = {}
    for stage in STAGES:
        stages[f"stage{stage}"] = generate_stage(cfg, stage, questions, backend=backend, judge=judge)
    sent = sum(s["sent"] for s in stages.values())
    wall = round(time.perf_counter() - started, 2)
    summary = {
        "profile": cfg.profile,
        "model": model_label(cfg),
        "backend": cfg.teacher.backend,
        "stand_in": cfg.teacher.stand_in,
        "base_url": redact_url(cfg.teacher.base_url) if cfg.teacher.backend == "openai" else None,
        "n_questions": len(questions),
        "stages": stages,
        "sent_this_run": sent,
        "wall_s": wall,
        # The time of the last run that actually generated something (a reuse run takes seconds).
        "generation_wall_s": wall if sent or not previous else previous.get("generation_wall_s", wall),
        "settings": phase_settings(cfg, "generate"),  # what this phase used (the report checks config.json against it)
    }
    if cfg.teacher.backend == "openai":
        summary["reasoning_source"] = cfg.teacher.reasoning_source
        summary["top_logprobs"] = getattr(backend, "top_logprobs", cfg.teacher.top_logprobs)
    if cfg.teacher.stand_in:
        summary["note"] = (
            "stand-in teacher: a tiny local model with few-shot examples"
            + (", the gold answer as a hint" if cfg.teacher.local_gold_hint and cfg.teacher.backend == "local" else "")
            + "; its accuracy and confidence are not the course teacher's"
        )
    write_summary(summary_file, TeacherSummary.from_dict(summary if sent else keep_run_fields(summary, previous)))
    from ..plots.teacher import plot_teacher_quality

    records = {stage: load_records(cfg, stage) for stage in STAGES}
    summary["figure"] = str(plot_teacher_quality(cfg, summary, records))
    failed = {name: s["failed"] for name, s in stages.items() if s["failed"]}
    if failed:
        total = sum(s["requests"] for s in stages.values())
        raise TeacherIncompleteError(
            f"{sum(failed.values())} of {total} teacher requests failed ("
            + ", ".join(f"{name}: {n}" for name, n in failed.items())
            + f"; their errors are in {teacher_dir(cfg)}/stage*.jsonl). Everything received is saved: re-run the "
            "same command to send only the failed requests again."
        )
    return summary


def _archive_for_force(cfg: Config) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = teacher_dir(cfg) / "archive" / f"forced-{stamp}"
    for stage in STAGES:
        for source in (stage_path(cfg, stage), archive_path(cfg, stage)):
            if source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(str(source), target / (source.name if source.parent == teacher_dir(cfg) else f"archive_{source.name}"))


def kept_sft_examples(cfg: Config, stage: int, questions: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Return ``{question_id, stage, messages}`` SFT examples (student messages: no hint, no few-shot)."""
    rows = {row["id"]: row for row in (questions if questions is not None else load_run_questions(cfg, "train"))}
    out = []
    for record in load_kept(cfg, stage):
        row = rows.get(record["question_id"])
        if row is None:
            continue
        out.append({"question_id": record["question_id"], "stage": stage,
                    "messages": build_sft_example(row, record["content"], cfg.system_prompt)})
    return out


__all__ = [
    "TeacherIncompleteError",
    "check_endpoint",
    "generate_stage",
    "kept_sft_examples",
    "make_backend",
    "run_phase",
    "send_requests",
    "summarize_stage",
]
