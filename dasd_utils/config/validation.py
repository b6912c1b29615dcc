"""Checking a configuration: numeric ranges, allowed choices, consistency, the API endpoint's presence."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from .schema import PROFILES, Config, ConfigError, shown_value


#: Allowed values of the numeric settings: dotted key -> (low, high, low open, high open); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "seed": (0, None, False, False),
    "data.train_offset": (0, None, False, False),
    "data.n_train": (0, None, False, False),
    "data.eval_offset": (0, None, False, False),
    "data.n_eval": (0, None, False, False),
    "teacher.temperature_stage1": (0, 2, False, False),
    "teacher.temperature_stage2": (0, 2, False, False),
    "teacher.max_tokens": (1, None, False, False),
    "teacher.concurrency": (1, None, False, False),
    "teacher.max_retries": (0, None, False, False),
    "teacher.timeout_s": (0, None, True, False),
    "teacher.backoff_base_s": (0, None, False, False),
    "teacher.backoff_max_s": (0, None, False, False),
    "teacher.local_batch_size": (1, None, False, False),
    "teacher.local_few_shot": (0, None, False, False),
    "teacher.local_best_of_n": (1, None, False, False),
    "teacher.local_top_p": (0, 1, True, False),
    "teacher.top_logprobs": (0, 20, False, False),
    "teacher.max_consecutive_without_logprobs": (0, None, False, False),
    "quality.min_chars": (0, None, False, False),
    "quality.repetition_ngram": (1, None, False, False),
    "quality.repetition_max_ratio": (0, 1, False, False),
    "das.teacher_prob_threshold": (0, 1, False, False),
    "das.divergence_threshold": (0, 1, False, False),
    "das.keep_ratio_threshold": (0, 1, False, False),
    "das.batch_size": (1, None, False, False),
    "das.logprob_chunk_tokens": (1, None, False, False),
    "sft.lora_r": (1, None, False, False),
    "sft.lora_alpha": (0, None, True, False),
    "sft.lora_dropout": (0, 1, False, True),
    "sft.cutoff_len": (1, None, False, False),
    "sft.lr_stage1": (0, None, True, False),
    "sft.lr_stage2": (0, None, True, False),
    "sft.epochs": (0, None, True, False),
    "analyses.mixed_length_cap": (1, None, False, False),
    "analyses.mixed_epochs": (0, None, True, False),
    "sft.per_device_batch_size": (1, None, False, False),
    "sft.grad_accum": (1, None, False, False),
    "sft.warmup_ratio": (0, 1, False, False),
    "sft.weight_decay": (0, None, False, False),
    "sft.logging_steps": (1, None, False, False),
    "sft.seed": (0, None, False, False),
    "sft.min_learning_steps": (0, None, False, False),
    "eval.max_new_tokens": (1, None, False, False),
    "eval.batch_size": (1, None, False, False),
    "eval.qualitative_index": (0, None, False, False),
    "eval.n_random_examples": (0, None, False, False),
    "eval.concurrency": (1, None, False, False),
    "eval.max_retries": (0, None, False, False),
    "eval.timeout_s": (0, None, True, False),
    "student.max_context": (1, None, False, False),
}


def _allowed(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """Return the allowed range in words (``be > 0``, ``lie in [0, 1]``, ``be >= 1``)."""
    if high is None:
        return f"be {'>' if low_open else '>='} {low:g}"
    return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _number_problems(cfg: Config) -> list[str]:
    """Return one message per numeric setting that is NaN, infinite or outside its allowed range."""
    problems = []

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if is_dataclass(value):
                walk(value, f"{key}.")
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{key} must be a finite number, got {value}")
            elif key in _RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high, low_open, high_open = _RANGES[key]
                bad = (low is not None and (value < low or (low_open and value == low))) or (
                    high is not None and (value > high or (high_open and value == high))
                )
                if bad:
                    problems.append(f"{key} must {_allowed(low, high, low_open, high_open)}, got {value!r}")

    walk(cfg, "")
    return problems


def validate(cfg: Config) -> None:
    """Raise ConfigError naming every value that is out of range or inconsistent, and what is allowed."""
    from ..secrets import env_name_problem, query_problem, url_problem

    problems = []
    if cfg.profile not in PROFILES:
        problems.append(f"profile must be one of {', '.join(PROFILES)}, got {shown_value(cfg.profile)}")
    if cfg.teacher.backend not in ("openai", "local"):
        problems.append(f"teacher.backend must be 'openai' or 'local', got {shown_value(cfg.teacher.backend)}")
    if cfg.eval.backend not in ("hf", "openai"):
        problems.append(f"eval.backend must be 'hf' or 'openai', got {shown_value(cfg.eval.backend)}")
    problems += _number_problems(cfg)
    if cfg.sft.max_steps != -1 and cfg.sft.max_steps < 1:
        problems.append(f"sft.max_steps must be -1 (no cap) or >= 1, got {cfg.sft.max_steps}")
    if cfg.teacher.backoff_max_s < cfg.teacher.backoff_base_s:
        problems.append("teacher.backoff_max_s must be >= teacher.backoff_base_s")
    if not cfg.eval.models:
        problems.append("eval.models must name at least one model (base, stage1, stage2)")
    if cfg.teacher.reasoning_source not in ("content", "analysis"):
        problems.append(f"teacher.reasoning_source must be 'content' or 'analysis', got {shown_value(cfg.teacher.reasoning_source)}")
    elif cfg.teacher.reasoning_source == "analysis" and cfg.teacher.backend != "openai":
        problems.append("teacher.reasoning_source=analysis needs the openai backend (a server returning gpt-oss's "
                        "analysis channel with logprobs); the local teacher has no analysis channel")
    if cfg.das.segmenter not in ("pysbd", "regex"):
        problems.append(f"das.segmenter must be 'pysbd' or 'regex', got {shown_value(cfg.das.segmenter)}")
    if cfg.sft.precision not in ("auto", "bf16", "fp16", "fp32"):
        problems.append(f"sft.precision must be auto|bf16|fp16|fp32, got {shown_value(cfg.sft.precision)}")
    if cfg.student.dtype not in ("auto", "bf16", "fp16", "fp32"):
        problems.append(f"student.dtype must be auto|bf16|fp16|fp32, got {shown_value(cfg.student.dtype)}")
    if not cfg.system_prompt or not cfg.system_prompt.strip():
        problems.append("system_prompt must not be empty")
    for section in ("teacher", "eval"):
        url = getattr(cfg, section).base_url
        if url is not None:
            problems.append(url_problem(url, f"{section}.base_url", "teacher.default_query" if section == "teacher" else None))
        problems.append(env_name_problem(getattr(cfg, section).api_key_env, f"{section}.api_key_env"))
    problems.append(query_problem(cfg.teacher.default_query, "teacher.default_query"))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("; ".join(problems))


def require_api_endpoint(cfg: Config) -> None:
    """Return None; raise ConfigError when a colab/full teacher would call an OpenAI-compatible API without ``base_url``.

    Without it the client falls back to api.openai.com, and the key meant for the course's
    provider would be sent there. Called before the teacher's key is read (the evaluation's
    openai backend already requires ``eval.base_url``); the demo profile may use api.openai.com
    deliberately.
    """
    if cfg.profile not in ("colab", "full"):
        return
    if cfg.teacher.backend == "openai" and not cfg.teacher.base_url:
        raise ConfigError(
            f"the {cfg.profile} profile calls the teacher through an OpenAI-compatible API and needs its URL: "
            "--set teacher.base_url=https://api.infomaniak.com/2/ai/<product_id>/openai/v1 (Infomaniak; "
            "your product id is in the Infomaniak console), or http://localhost:8000/v1 for a vLLM server; see docs/teacher.md"
        )

