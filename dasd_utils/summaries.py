"""Typed phase summaries: one dataclass per summary file a phase writes (see docs/artifacts.md).

The phases write their summary through these types (:func:`write_summary`), and the report and
the notebooks read it through the same types (:func:`read_summary`, ``Cls.from_dict``), so that
a field is named in one place and nobody guesses keys.

* ``data/summary.json`` -> :class:`DataSummary`
* ``teacher/summary.json`` -> :class:`TeacherSummary` (``stages.stage1`` / ``stage2``: :class:`TeacherStage`)
* ``das/summary.json`` -> :class:`DasSummary` (``stages."1"`` / ``"2"``: :class:`DasStage`)
* ``sft/stage{N}/manifest.json`` -> :class:`SftManifest`
* ``eval/metrics.json`` -> :class:`EvalMetrics` (``models``: :class:`ModelMetrics`,
  ``comparisons``: :class:`Comparison`)

A field without a default is required: ``from_dict`` raises :class:`SummaryError` naming the
file and the field when it is missing. A field with a default (``None``) is one the phase writes
only in some cases (a backend, a distilled adapter, a stand-in teacher), one added after the
first runs (``settings``, ``elapsed``), or one the report does without. ``to_dict`` gives back
exactly the JSON object read or built: same keys, same order, an optional field that was absent
stays absent, and a key the type does not know is kept (in ``extra``) with a warning when written.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

from .jsonl import write_json_atomic

log = logging.getLogger(__name__)

T = TypeVar("T", bound="Summary")


class SummaryError(ValueError):
    """A summary file does not have the format of its type (a required field is missing, a section is not an object)."""


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _encode(value: Any) -> Any:
    if isinstance(value, Summary):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


@functools.cache
def _nested_fields(cls: type) -> dict[str, tuple[str, type]]:
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        sub = args[-1] if args else None
        if isinstance(sub, type) and issubclass(sub, Summary):
            out[name] = ("map" if typing.get_origin(hint) is dict else "list", sub)
    return out


@dataclass(kw_only=True)
class Summary:
    """Base of the summary types: ``from_dict`` / ``to_dict`` and the field lists the docs are checked against."""

    #: The file, relative to the run directory, that holds this type (for error messages and the docs check).
    FILE: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def field_names(cls) -> list[str]:
        """Return the documented fields of the type, in the order the phase writes them."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "_keys")]

    @classmethod
    def required_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "_keys") and _is_required(f)]

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str | None = None) -> T:
        """Return the summary read from a JSON object; raise :class:`SummaryError` on a missing required field."""
        where = where or cls.FILE or cls.__name__
        if not isinstance(data, Mapping):
            raise SummaryError(f"{where}: expected a JSON object, found {type(data).__name__}")
        missing = [name for name in cls.required_fields() if name not in data]
        if missing:
            raise SummaryError(f"{where}: missing field {', '.join(repr(m) for m in missing)} (format: docs/artifacts.md)")
        names = cls.field_names()
        values = {name: cls._decode(name, data[name], f"{where}: {name}") for name in names if name in data}
        extra = {k: v for k, v in data.items() if k not in values}
        return cls(**values, extra=extra, _keys=tuple(data))

    @classmethod
    def nested(cls) -> dict[str, tuple[str, type[Summary]]]:
        """Return {field: ("map" | "list", summary type)} for the fields holding nested summaries
        (annotated ``dict[str, Sub]`` or ``list[Sub]``)."""
        return _nested_fields(cls)

    @classmethod
    def _decode(cls, name: str, value: Any, where: str) -> Any:
        nested = cls.nested()
        if name not in nested or value is None:
            return value
        kind, sub = nested[name]
        if kind == "map":
            if not isinstance(value, Mapping):
                raise SummaryError(f"{where}: expected a JSON object, found {type(value).__name__}")
            return {str(k): sub.from_dict(v, f"{where}.{k}") for k, v in value.items()}
        if not isinstance(value, list):
            raise SummaryError(f"{where}: expected a JSON list, found {type(value).__name__}")
        return [sub.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object of the summary (the keys and order it was read with)."""
        values = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "_keys"):
                continue
            value = getattr(self, f.name)
            if f.name in self._keys or _is_required(f) or value is not None:
                values[f.name] = _encode(value)
        out: dict[str, Any] = {}
        for key in self._keys:
            if key in values:
                out[key] = values.pop(key)
            elif key in self.extra:
                out[key] = self.extra[key]
        out.update(values)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


# ------------------------------------------------------------------------------------- data
@dataclass(kw_only=True)
class DataSummary(Summary):
    """``data/summary.json``: which questions the run uses (written by ``data.run_phase``)."""

    FILE: ClassVar[str] = "data/summary.json"
    source: str
    n_train: int
    n_eval: int
    train_split: str
    train_indices: list[int]
    eval_split: str
    eval_indices: list[int]
    train_answer_counts: dict[str, int] | None = None
    eval_answer_counts: dict[str, int] | None = None
    settings: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------- teacher
@dataclass(kw_only=True)
class TeacherStage(Summary):
    """One stage of ``teacher/summary.json`` (``teacher.summarize_stage`` + ``generate_stage``)."""

    FILE: ClassVar[str] = "teacher/summary.json: stages.stage{N}"
    #: Fields about the run that wrote the stage rather than about its records (see :func:`keep_run_fields`).
    RUN_FIELDS = ("sent", "failed_this_run", "reused", "wall_s", "preflight")
    stage: int
    temperature: float
    model: str | None = None
    backend: str | None = None
    stand_in: bool | None = None
    gold_hint: bool | None = None
    few_shot: int | None = None
    best_of_n: int | None = None
    questions: int
    requests: int
    completed: int
    failed: int
    rejected: dict[str, int]
    rejected_total: int
    quality_ok: int
    kept: int
    accuracy: float | None
    accuracy_all_samples: float | None = None
    format_rate: float | None = None
    mean_confidence: float | None
    with_logprobs: int | None = None
    without_logprobs: int | None = None
    tokens_mismatch: int | None = None
    with_reasoning_field: int | None = None
    with_reasoning_logprobs: int | None = None
    reasoning_source: str | None = None
    finish_reasons: dict[str, int] | None = None
    usage: dict[str, float] | None = None
    context_checked: bool | None = None
    sent: int
    failed_this_run: int | None = None
    reused: int | None = None
    wall_s: float | None = None
    preflight: dict[str, Any] | None = None


@dataclass(kw_only=True)
class TeacherSummary(Summary):
    """``teacher/summary.json`` (written by ``teacher.run_phase``)."""

    FILE: ClassVar[str] = "teacher/summary.json"
    #: Fields about the run that wrote the file rather than about the records (see :func:`keep_run_fields`).
    RUN_FIELDS = ("sent_this_run", "wall_s", "generation_wall_s", "elapsed")
    profile: str | None
    model: str | None
    backend: str
    stand_in: bool
    base_url: str | None = None
    n_questions: int | None = None
    stages: dict[str, TeacherStage]
    sent_this_run: int | None = None
    wall_s: float | None = None
    generation_wall_s: float | None = None
    settings: dict[str, Any] | None = None
    reasoning_source: str | None = None
    top_logprobs: int | None = None
    note: str | None = None
    elapsed: dict[str, Any] | None = None

    def stage(self, stage: int) -> TeacherStage | None:
        return self.stages.get(f"stage{stage}")


def keep_run_fields(summary: Mapping[str, Any], previous: Any) -> dict[str, Any]:
    """Return the teacher ``summary`` with its per-run fields (``RUN_FIELDS``) taken from ``previous``, the file's.

    For a run that sent nothing: ``teacher/summary.json`` keeps describing the last run that sent
    requests (the returned summary has this run's counts, ``timings.json`` its time), so that a
    reuse run leaves the file byte-identical, and the report, keyed on its hash, reused.
    """
    if not isinstance(previous, Mapping) or not isinstance(previous.get("stages"), Mapping):
        return dict(summary)

    def merged(new: Mapping[str, Any], old: Mapping[str, Any], run_fields: tuple[str, ...]) -> dict[str, Any]:
        out = {k: old[k] if k in run_fields else v for k, v in new.items() if k in old or k not in run_fields}
        out.update((k, old[k]) for k in run_fields if k in old and k not in out)
        return out

    old_stages = previous["stages"]
    stages = {name: merged(stage, old_stages[name], TeacherStage.RUN_FIELDS) if isinstance(old_stages.get(name), Mapping)
              else stage for name, stage in summary["stages"].items()}
    return merged(dict(summary, stages=stages), previous, TeacherSummary.RUN_FIELDS)


# -------------------------------------------------------------------------------------- das
@dataclass(kw_only=True)
class DasStage(Summary):
    """One stage of ``das/summary.json`` (``das.summarize_stage``)."""

    FILE: ClassVar[str] = 'das/summary.json: stages."{N}"'
    records_read: int | None = None
    quality_rejected: int | None = None
    extra_samples: int | None = None
    unknown_question: int | None = None
    selected: int | None = None
    scored: int
    unscorable: dict[str, int]
    n_unscorable: int
    kept: int
    rejected: int
    keep_rate: float | None
    teacher_sentence_ratio: dict[str, float | None]
    teacher_sentence_ratio_without_final: dict[str, float | None] | None = None
    sentences: int
    sentence_types: dict[str, int]
    mean_sentences_per_example: float | None = None
    mean_p_teacher: float | None
    mean_p_student: float | None
    teacher_alignment: dict[str, int] | None = None
    merged_sentences: int | None = None
    sft_examples: int
    sft_das_filtered: bool | None = None
    mean_p_distilled: float | None = None
    provenance: dict[str, int] | None = None
    target_quality_rejected: dict[str, int] | None = None


@dataclass(kw_only=True)
class DasSummary(Summary):
    """``das/summary.json`` (written by ``das.run_phase``)."""

    FILE: ClassVar[str] = "das/summary.json"
    profile: str | None
    stand_in: bool
    student: str | None = None
    distilled_adapter: str | None = None
    thresholds: dict[str, float] | None = None
    segmenter: str | None = None
    reasoning_source: str | None = None
    num_processes: int | None = None
    rescored_stages: list[int] | None = None
    reused: bool | None = None
    wall_time_s: float | None = None
    stages: dict[str, DasStage]
    files: dict[str, str] | None = None
    figures: list[str] | None = None
    settings: dict[str, Any] | None = None
    elapsed: dict[str, Any] | None = None

    def stage(self, stage: int) -> DasStage | None:
        return self.stages.get(str(stage))


# -------------------------------------------------------------------------------------- sft
@dataclass(kw_only=True)
class SftManifest(Summary):
    """``sft/stage{N}/manifest.json`` (written last by ``sft.train_stage``; its presence marks a finished stage)."""

    FILE: ClassVar[str] = "sft/stage{N}/manifest.json"
    key: str | None = None
    stage: int
    base_model: str
    base_model_path: str | None = None
    data_path: str | None = None
    data_sha256: str
    parent_adapter: dict[str, Any] | None
    config: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    dataset: dict[str, Any]
    hardware: dict[str, Any] | None = None
    learning_rate: float
    trainable_parameters: int | None = None
    steps: int
    #: The step plan made before training (examples, examples per step, steps per epoch, steps,
    #: warm-up steps, steps at a non-zero learning rate): :mod:`dasd_utils.sft.schedule`.
    schedule: dict[str, Any] | None = None
    #: Logged steps whose learning rate was above 0 (None when not every step was logged).
    learning_steps: int | None = None
    #: How far the trainable weights moved from the parent adapter (or the fresh LoRA): l2, relative, max_abs.
    adapter_change: dict[str, float] | None = None
    examples_seen: int | None = None
    epochs: float
    first_loss: float | None
    final_loss: float | None
    train_loss: float | None = None
    num_tokens: int | None = None
    train_runtime_s: float | None = None
    tokens_per_s: float | None
    checkpoint_steps: int | None = None
    resumed_from: str | None = None
    versions: dict[str, str] | None = None
    wall_time_s: float

    @property
    def n_examples(self) -> int | None:
        return self.dataset.get("n_examples")


# ------------------------------------------------------------------------------------- eval
@dataclass(kw_only=True)
class ModelMetrics(Summary):
    """One model of ``eval/metrics.json`` (``evaluation.model_metrics`` + adapter facts)."""

    FILE: ClassVar[str] = "eval/metrics.json: models.<model>"
    n: int
    correct: int
    accuracy: float | None
    ci95: list[float] | None = None
    format_ok: int | None = None
    format_rate: float | None
    extracted_rate: float | None = None
    answer_distribution: dict[str, int]
    truncated: int | None = None
    mean_new_tokens: float | None = None
    loglik_accuracy: float | None = None
    loglik_ci95: list[float] | None = None
    loglik_correct: int | None = None
    loglik_distribution: dict[str, int] | None = None
    loglik_error: str | None = None
    adapter: str | None = None
    adapter_fingerprint: str | None = None


@dataclass(kw_only=True)
class Comparison(Summary):
    """One paired comparison of ``eval/metrics.json`` (``evaluation.compare_models``)."""

    FILE: ClassVar[str] = "eval/metrics.json: comparisons[i]"
    a: str
    b: str
    n: int
    both_correct: int | None = None
    only_a_correct: int
    only_b_correct: int
    both_wrong: int | None = None
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    difference: float | None = None
    mcnemar_p: float
    mcnemar_p_holm: float | None = None
    significant: bool | None = None


@dataclass(kw_only=True)
class EvalMetrics(Summary):
    """``eval/metrics.json`` (``evaluation.compute_metrics``, written by ``evaluation.run_phase``)."""

    FILE: ClassVar[str] = "eval/metrics.json"
    profile: str | None
    stand_in: bool | None = None
    note: str | None = None
    note_fr: str | None = None
    student: str | None = None
    models: dict[str, ModelMetrics]
    model_order: list[str]
    n_items: int
    eval_split: str | None = None
    eval_indices: list[int] | None = None
    data: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None
    methods: dict[str, str] | None = None
    comparisons: list[Comparison]
    settings: dict[str, Any] | None = None
    elapsed: dict[str, Any] | None = None


#: Every summary type, with the file it describes (the docs check walks this).
SUMMARY_TYPES: tuple[type[Summary], ...] = (
    DataSummary, TeacherSummary, TeacherStage, DasSummary, DasStage, SftManifest, EvalMetrics, ModelMetrics, Comparison,
)


# -------------------------------------------------------------------------------------- I/O
def write_summary(path: str | os.PathLike, obj: Summary) -> Path:
    """Write ``obj.to_dict()`` atomically as indented JSON to ``path`` and return the path.

    A key the type does not know is written all the same (nothing is lost) but logged: add it to
    the type and to docs/artifacts.md.
    """
    unknown = _unknown_keys(obj)
    if unknown:
        log.warning("%s: field(s) %s are not in %s: add them to dasd_utils/summaries.py and docs/artifacts.md",
                    path, ", ".join(unknown), type(obj).__name__)
    return write_json_atomic(path, obj.to_dict())


def _unknown_keys(obj: Summary, prefix: str = "") -> list[str]:
    out = [prefix + k for k in obj.extra]
    for name in type(obj).nested():
        value = getattr(obj, name)
        items = value.items() if isinstance(value, dict) else enumerate(value or [])
        for key, sub in items:
            out += _unknown_keys(sub, f"{prefix}{name}.{key}.")
    return out


def read_summary(path: str | os.PathLike, cls: type[T]) -> T:
    """Return the summary of type ``cls`` read from ``path``.

    Raises FileNotFoundError when the file is missing, ValueError (json.JSONDecodeError,
    UnicodeDecodeError) when it is not UTF-8 JSON, :class:`SummaryError` when it lacks a field.
    """
    import json

    path = Path(path)
    return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))


__all__ = [
    "Comparison", "DasStage", "DasSummary", "DataSummary", "EvalMetrics", "ModelMetrics", "SUMMARY_TYPES",
    "SftManifest", "Summary", "SummaryError", "TeacherStage", "TeacherSummary", "keep_run_fields", "read_summary",
    "write_summary",
]
