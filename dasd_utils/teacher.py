"""Phase 3: teacher generation with logprobs, cached, resumable and fault-tolerant.

Two backends behind one interface (``teacher.backend``):

* ``openai`` (:mod:`dasd_utils.teacher_openai`): any OpenAI-compatible endpoint (Infomaniak as in
  the course, vLLM, SGLang, OpenRouter...), concurrent, with retries;
* ``local`` (:mod:`dasd_utils.teacher_local`): a Hugging Face model in-process (the demo's
  stand-in teacher, SmolLM2-135M-Instruct, with few-shot examples, a gold hint and best-of-n).

Each request gives one record in ``<run>/teacher/stage{1,2}.jsonl`` (format: docs/artifacts.md,
"Teacher records"), appended and fsync'ed as soon as its response arrives (the files are handled
by :mod:`dasd_utils.teacher_store`; its names are re-exported here). Resuming:

* a request is identified by :func:`request_hash` (model, messages, temperature, max_tokens,
  sample index, seed and backend options); a completed record (``error`` null) is never sent again;
* a failed record is retried on the next run;
* records whose hash no longer matches the configuration (changed prompt, model, temperature...)
  are moved to ``teacher/archive/stage{N}.jsonl`` and never served for the new configuration (they
  are served again if that configuration comes back);
* reading deduplicates by hash (a completed record beats a failed one; among equals the last
  complete line wins) and skips a torn last line, so a SIGKILL loses at most the requests in flight.

The quality verdict (:func:`dasd_utils.quality.check_response`) is recomputed on every run from
the stored content, so a changed quality setting applies without re-sending anything. With
best-of-n, ``kept`` marks the first sample of a question that passes the filter: later phases use
:func:`load_kept`.

The openai backend sends the first request of each stage alone and checks the endpoint with
it before the others go out (:class:`~dasd_utils.teacher_openai.Preflight`: auth, model,
content, logprobs alignable on the content, reasoning field, ``max_tokens``); its verdict is
printed and kept in the stage summary (``preflight``).

Front doors: :func:`run_phase` (both stages, summary, figure; ``python -m dasd_utils generate``;
raises :class:`TeacherIncompleteError` after writing everything when requests failed, so the
command exits non-zero and says to re-run) and :func:`generate_stage` (one stage, for the notebook).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from . import layout
from .config import Config, phase_settings
from .data import load_run_questions
from .jsonl import append_record, read_json, write_json_atomic
from .layout import STAGES, check_stage
from .prompts import build_messages, build_sft_example, extract_answer
from .quality import check_response
from .secrets import redact_url
from .reuse import inputs_key
from .teacher_store import (  # the record files; names re-exported here
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
from .summaries import TeacherSummary, keep_run_fields, write_summary
from .timing import timed_phase

log = logging.getLogger(__name__)

_FINAL_ANSWER_SPLIT = re.compile(r"final\s*answer", re.IGNORECASE)

STAND_IN_SUFFIX = " (stand-in teacher)"


class TeacherIncompleteError(TeacherError):
    """Some requests failed: everything else is saved; re-running sends only the failed ones."""


# ----------------------------------------------------------------------------- names
def model_label(cfg: Config) -> str:
    """Return the teacher's name as written in records, summaries and figures (stand-ins say so)."""
    return cfg.teacher.model + (STAND_IN_SUFFIX if cfg.teacher.stand_in else "")


def stage_temperature(cfg: Config, stage: int) -> float:
    """Return the sampling temperature of a stage (0.3 and 0.9 in the course)."""
    check_stage(stage)
    return cfg.teacher.temperature_stage1 if stage == 1 else cfg.teacher.temperature_stage2


def samples_per_question(cfg: Config) -> int:
    """Return how many samples a question may get (best-of-n; local backend only)."""
    return max(1, cfg.teacher.local_best_of_n) if cfg.teacher.backend == "local" else 1


# ----------------------------------------------------------------------------- requests
class TeacherRequest:
    """One request to the teacher: a question, a stage, a sample index and the messages sent."""

    __slots__ = ("row", "stage", "sample_index", "messages", "temperature", "max_tokens", "model", "seed",
                 "gold_hint", "prefill", "request_hash")

    def __init__(self, row: Mapping[str, Any], stage: int, sample_index: int, messages: list[dict[str, str]],
                 temperature: float, max_tokens: int, model: str, seed: int | None, gold_hint: bool,
                 options: Mapping[str, Any], prefill: str | None = None) -> None:
        self.row = row
        self.stage = stage
        self.sample_index = sample_index
        self.messages = messages
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.model = model
        self.seed = seed
        self.gold_hint = gold_hint
        #: Text the assistant's answer starts with, to be continued by the teacher (mixed-policy
        #: distillation): the local backend appends it to the rendered prompt, the openai backend
        #: sends it as a final assistant message with ``continue_final_message``. None: a new answer.
        self.prefill = prefill
        if prefill is not None:
            if not prefill:
                raise ValueError("prefill must be a non-empty text (None for a new answer)")
            options = {**options, "prefill": prefill}  # only then: the hashes of ordinary requests do not change
        self.request_hash = request_hash(model, messages, temperature, max_tokens, sample_index, seed, options)

    @property
    def question_id(self) -> str:
        return self.row["id"]


def request_hash(
    model: str,
    messages: Sequence[Mapping[str, str]],
    temperature: float,
    max_tokens: int,
    sample_index: int = 0,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Return the sha256 identifying a request: what was asked, of whom, and how it was sampled."""
    payload = {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "temperature": float(temperature),
        "max_tokens": int(max_tokens),
        "sample_index": int(sample_index),
        "seed": seed,
        "options": dict(options or {}),
    }
    return inputs_key(payload)  # sha256 of the canonical JSON: sorted keys, no spaces, UTF-8


def _request_parts(cfg: Config) -> tuple[dict[str, Any], bool, Any]:
    """Return (backend options, gold hint used, messages builder) of the configured teacher backend."""
    t = cfg.teacher
    if t.backend == "local":
        from .teacher_local import teacher_messages

        gold_hint = bool(t.local_gold_hint)
        return ({"backend": "local", "top_p": t.local_top_p}, gold_hint,
                lambda row: teacher_messages(row, cfg.system_prompt, t.local_few_shot, gold_hint))
    return {"backend": "openai", "extra_body": dict(t.extra_body)}, False, lambda row: build_messages(row, cfg.system_prompt)


def build_requests(cfg: Config, stage: int, questions: Sequence[Mapping[str, Any]]) -> list[list[TeacherRequest]]:
    """Return, per sample index (best-of-n round), the request of every question for this stage."""
    t = cfg.teacher
    temperature = stage_temperature(cfg, stage)
    label = model_label(cfg)
    options, gold_hint, make = _request_parts(cfg)
    rounds = []
    for sample_index in range(samples_per_question(cfg)):
        rounds.append([
            TeacherRequest(row, stage, sample_index, make(row), temperature, t.max_tokens, label, t.seed, gold_hint, options)
            for row in questions
        ])
    return rounds


def continuation_requests(cfg: Config, items: Sequence[tuple[Mapping[str, Any], str]], stage: int = 2) -> list[TeacherRequest]:
    """Return one request per ``(question row, prefill)``: the teacher continues an answer that starts with ``prefill``.

    Same messages, model, options and sampling as the stage's ordinary requests (mixed-policy
    distillation, :mod:`dasd_utils.analyses.mixed`); the prefill is part of the request's hash.
    """
    t = cfg.teacher
    options, gold_hint, make = _request_parts(cfg)
    temperature, label = stage_temperature(cfg, stage), model_label(cfg)
    return [TeacherRequest(row, stage, 0, make(row), temperature, t.max_tokens, label, t.seed, gold_hint, options, prefill=prefill)
            for row, prefill in items]


def send_requests(cfg: Config, requests: Sequence[TeacherRequest], path, *, backend: Any = None,
                  judge: QualityJudge | None = None, desc: str = "teacher") -> dict[str, dict[str, Any]]:
    """Return ``{request_hash: record}`` for ``requests`` after sending those without a completed record in ``path``.

    The records file works as a stage file does: appended as answers arrive, read back tolerantly,
    a completed request never sent again, a failed one retried. Records of other requests in the
    file are kept. A continuation's ``quality`` is that of the whole answer (prefill + content).
    """
    from pathlib import Path

    path = Path(path)
    backup_if_corrupt(path)
    records = read_records(path)
    todo = [r for r in requests if (records.get(r.request_hash) or {"error": "missing"}).get("error") is not None]
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


# ----------------------------------------------------------------------------- quality
class QualityJudge:
    """Applies the quality filter with the student's token counter (tokenizer loaded once)."""

    def __init__(self, cfg: Config, tokenizer: Any = None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.context_checked = False
        self.note = ""
        if cfg.quality.check_student_context and tokenizer is None:
            try:
                from .models import load_tokenizer

                self.tokenizer = load_tokenizer(cfg.student.model, cfg)
            except Exception as exc:  # noqa: BLE001 - any failure: say so and skip only this check
                self.note = f"student tokenizer unavailable ({type(exc).__name__}), too_long not checked"
                log.warning("quality: %s: %s", self.note, exc)
        self.context_checked = bool(cfg.quality.check_student_context and self.tokenizer is not None)
        self._cache: dict[tuple[str, str], int] = {}

    def count_tokens(self, row: Mapping[str, Any], content: str) -> int:
        """Return the student's token count of the full training example (chat template included)."""
        key = (row["id"], content)
        if key not in self._cache:
            messages = build_sft_example(row, content, self.cfg.system_prompt)
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            self._cache[key] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._cache[key]

    def verdict(self, record: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
        """Return the quality verdict for a record (failed requests get reason ``request_failed``)."""
        if record.get("error") is not None:
            return {"ok": False, "reason": "request_failed", "answer": None, "detail": "no response (see error)"}
        counter = (lambda content: self.count_tokens(row, content)) if self.context_checked else None
        result = check_response(
            record.get("content"), row.get("answerKey"), self.cfg.quality, counter,
            self.cfg.student.max_context if counter else None,
        ).to_dict()
        if not self.context_checked and self.note and result["ok"]:
            result["detail"] = self.note
        if result["ok"] and record.get("gold_hint"):
            content = record.get("content") or ""
            # A hinted stand-in must not leak the hint into what the student will imitate ...
            if "hint" in content.lower():
                result.update(ok=False, reason="mentions_hint", detail="the response refers to the gold hint")
            else:
                # ... nor copy the hinted letter after reasoning that concludes something else.
                body = _FINAL_ANSWER_SPLIT.split(content, maxsplit=1)[0]
                concluded = extract_answer(body)
                if concluded is not None and concluded != result["answer"]:
                    result.update(ok=False, reason="inconsistent_answer",
                                  detail=f"reasoning concludes {concluded}, final answer {result['answer']}")
        return result


# ----------------------------------------------------------------------------- record building
def finalize_record(request: TeacherRequest, raw: Mapping[str, Any], judge: QualityJudge) -> dict[str, Any]:
    """Return the stored record for a request and its backend result (confidence, checks, verdict)."""
    tokens = raw.get("tokens")
    content = raw.get("content")
    error = raw.get("error")
    if tokens is not None and content is not None:
        # Located by the backend (exact bytes recovered), or token strings that join to the content.
        match = bool(raw["logprobs_usable"]) if "logprobs_usable" in raw else "".join(t["token"] for t in tokens) == content
        probs = [math.exp(t["logprob"]) for t in tokens]
        mean_prob = sum(probs) / len(probs) if probs else None
    else:
        match, mean_prob = None, None
    note = raw.get("logprobs_note")
    if tokens is None and error is None and note is None:
        note = "no logprobs"
    record = {
        "question_id": request.question_id,
        "question_index": request.row.get("index"),
        "stage": request.stage,
        "sample_index": request.sample_index,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "model": request.model,
        "response_model": raw.get("response_model"),
        "seed": raw.get("seed", request.seed),
        "request_hash": request.request_hash,
        "gold": request.row.get("answerKey"),
        "gold_hint": request.gold_hint,
        "messages": request.messages,
        **({"prefill": request.prefill} if request.prefill is not None else {}),
        "content": content,
        "reasoning": raw.get("reasoning"),
        "tokens": tokens,
        "reasoning_tokens": raw.get("reasoning_tokens"),
        "logprobs_note": note if error is None else None,
        "finish_reason": raw.get("finish_reason"),
        "usage": raw.get("usage"),
        "latency_s": raw.get("latency_s"),
        "attempts": raw.get("attempts"),
        "retry_errors": raw.get("retry_errors"),
        "error": error,
        "tokens_match_content": match,
        "mean_token_prob": mean_prob,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record["quality"] = judge.verdict(record, request.row)
    record["kept"] = False  # decided per question once all its samples are known
    return record


def make_backend(cfg: Config) -> Any:
    """Return the backend object for ``teacher.backend`` (models and keys load on first use)."""
    if cfg.teacher.backend == "local":
        from .teacher_local import LocalTeacher

        return LocalTeacher(cfg, model_label(cfg))
    if cfg.teacher.backend == "openai":
        from .teacher_openai import OpenAITeacher

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
    :class:`~dasd_utils.teacher_openai.TeacherFatalError` on 401/403/404 (what was received is kept).
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
    from .plots.teacher import plot_teacher_quality

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
    "QualityJudge",
    "STAND_IN_SUFFIX",
    "TeacherError",
    "TeacherIncompleteError",
    "TeacherRequest",
    "archive_path",
    "backup_if_corrupt",
    "build_requests",
    "continuation_requests",
    "finalize_record",
    "generate_stage",
    "kept_sft_examples",
    "load_kept",
    "load_records",
    "make_backend",
    "model_label",
    "read_records",
    "request_hash",
    "run_phase",
    "samples_per_question",
    "send_requests",
    "stage_path",
    "stage_temperature",
    "summarize_stage",
]
