"""What is asked of the teacher: one :class:`TeacherRequest` per question, stage and sample, identified by a hash.

A request is identified by :func:`request_hash` (model, messages, temperature, max_tokens, sample
index, seed and backend options): a completed record with that hash is never sent again, and
records whose hash is not a request of the current configuration are archived
(:mod:`dasd_utils.teacher.store`). The local stand-in teacher gets few-shot examples and the gold
answer as a hint (:func:`dasd_utils.teacher.local.teacher_messages`); an API teacher gets the
student's own messages (:func:`dasd_utils.prompts.build_messages`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..config import Config
from ..layout import check_stage
from ..prompts import build_messages
from ..reuse import inputs_key

STAND_IN_SUFFIX = " (stand-in teacher)"


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


def request_parts(cfg: Config) -> tuple[dict[str, Any], bool, Any]:
    """Return (backend options, gold hint used, messages builder) of the configured teacher backend."""
    t = cfg.teacher
    if t.backend == "local":
        from .local import teacher_messages

        gold_hint = bool(t.local_gold_hint)
        return ({"backend": "local", "top_p": t.local_top_p}, gold_hint,
                lambda row: teacher_messages(row, cfg.system_prompt, t.local_few_shot, gold_hint))
    return {"backend": "openai", "extra_body": dict(t.extra_body)}, False, lambda row: build_messages(row, cfg.system_prompt)


def build_requests(cfg: Config, stage: int, questions: Sequence[Mapping[str, Any]]) -> list[list[TeacherRequest]]:
    """Return, per sample index (best-of-n round), the request of every question for this stage."""
    t = cfg.teacher
    temperature = stage_temperature(cfg, stage)
    label = model_label(cfg)
    options, gold_hint, make = request_parts(cfg)
    rounds = []
    for sample_index in range(samples_per_question(cfg)):
        rounds.append([
            TeacherRequest(row, stage, sample_index, make(row), temperature, t.max_tokens, label, t.seed, gold_hint, options)
            for row in questions
        ])
    return rounds


def continuation_requests(cfg: Config, items: Sequence[tuple[Mapping[str, Any], str]], stage: int = 2,
                          route_options: Sequence[Mapping[str, Any]] | None = None) -> list[TeacherRequest]:
    """Return one request per ``(question row, prefill)``: the teacher continues an answer that starts with ``prefill``.

    Same messages, model, options and sampling as the stage's ordinary requests (mixed-policy
    distillation, :mod:`dasd_utils.analyses.mixed`); the prefill is part of the request's hash.
    ``route_options`` (one mapping per item) add what else decides the answer, e.g. the harmony
    route's raw prompt digest (:mod:`dasd_utils.teacher.raw_completions`), to the hash.
    """
    t = cfg.teacher
    options, gold_hint, make = request_parts(cfg)
    temperature, label = stage_temperature(cfg, stage), model_label(cfg)
    extra = list(route_options) if route_options is not None else [{}] * len(items)
    if len(extra) != len(items):
        raise ValueError("route_options must hold one mapping per item")
    return [TeacherRequest(row, stage, 0, make(row), temperature, t.max_tokens, label, t.seed, gold_hint,
                           {**options, **more}, prefill=prefill)
            for (row, prefill), more in zip(items, extra)]


__all__ = [
    "STAND_IN_SUFFIX",
    "TeacherRequest",
    "build_requests",
    "continuation_requests",
    "model_label",
    "request_hash",
    "request_parts",
    "samples_per_question",
    "stage_temperature",
]
