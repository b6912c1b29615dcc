"""One configuration per run: ``config.json`` in the run directory, requested changes checked against it, settings drift."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .loading import apply_updates, config_from_dict, load_config, load_run_config, nest, typed_override
from .schema import Config, ConfigError
from .validation import validate


#: Settings that change where or how fast a phase runs, never its results: a run's later phases
#: and notebooks may change them freely. Every other key is result-changing (also keys added later).
OPERATIONAL_KEYS = frozenset({
    "paths.run_dir", "paths.cache_dir",
    "teacher.base_url", "teacher.default_query", "teacher.api_key_env", "teacher.dotenv_path", "teacher.concurrency",
    "teacher.max_retries", "teacher.timeout_s", "teacher.backoff_base_s", "teacher.backoff_max_s",
    "teacher.local_batch_size", "teacher.local_device", "teacher.local_dtype",
    "das.batch_size", "das.logprob_chunk_tokens", "das.figures", "das.reuse_prompt_prefix",
    "sft.gradient_checkpointing", "sft.logging_steps", "sft.oom_backoff", "sft.checkpoint_steps",
    "sft.min_learning_steps", "sft.allow_short_training",
    "eval.batch_size", "eval.base_url", "eval.api_key_env", "eval.concurrency", "eval.max_retries", "eval.timeout_s",
    "student.device", "student.attn_implementation",
})


class RunConfigMismatch(ConfigError):
    """The requested settings differ from the run's ``config.json`` on result-changing keys.

    ``diffs`` lists ``(dotted key, saved value, requested value)``; the message names them and the
    two ways out (another run directory, or force).
    """

    def __init__(self, config_path: Path, diffs: list[tuple[str, Any, Any]], force_hint: str = "--force",
                 run_dir_hint: str = "--run-dir"):
        self.config_path = Path(config_path)
        self.diffs = list(diffs)
        lines = [f"{key}: saved {_show(saved)}, requested {_show(new)}" for key, saved, new in self.diffs]
        super().__init__(
            f"these settings differ from the run's {self.config_path} (result-changing keys): "
            + "; ".join(lines)
            + f". Either start a new run ({run_dir_hint} with another directory), or pass {force_hint} to replace "
            "the saved settings (the phases whose inputs change are then recomputed)"
        )


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def flat_settings(cfg: Config) -> dict[str, Any]:
    """Return ``{dotted key: value}`` for every leaf setting of ``cfg`` (lists and mappings kept whole)."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = json.loads(json.dumps(value, default=str))

    walk(cfg, "")
    return out


def config_diffs(saved: Config, requested: Config) -> list[tuple[str, Any, Any]]:
    """Return ``(key, saved, requested)`` for each result-changing key whose value differs."""
    old, new = flat_settings(saved), flat_settings(requested)
    return [(key, old.get(key), new[key]) for key in new
            if key not in OPERATIONAL_KEYS and old.get(key) != new[key]]


def resolve_run_config(
    profile: str | None,
    run_dir: str | os.PathLike,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    force: bool = False,
) -> Config:
    """Return the Config of a run: the one saved in ``<run_dir>/config.json`` plus these overrides.

    One configuration per run: the first phase writes ``config.json`` and every later phase,
    notebook or command starts from it, so a setting given once (in notebook 01, or to the first
    command) holds for the whole run. ``profile``, ``config_file`` and ``overrides`` are applied on
    top; when they change a result-changing key (anything outside :data:`OPERATIONAL_KEYS`),
    :class:`RunConfigMismatch` is raised unless ``force``, in which case the requested settings
    replace the saved ones. ``profile=None`` means the saved profile (``demo`` for a new run).
    Without a saved config this is :func:`load_config`. Nothing is written here.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        return load_config(profile or "demo", config_file=config_file, overrides=overrides, run_dir=run_dir)
    try:
        saved = load_run_config(run_dir)
    except (ConfigError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}): fix or delete it, or use another run directory") from None
    if profile and profile != saved.profile:
        if not force:
            raise RunConfigMismatch(path, [("profile", saved.profile, profile)])
        return load_config(profile, config_file=config_file, overrides=overrides, run_dir=run_dir)
    requested = copy.deepcopy(saved)
    if config_file is not None:
        file_cfg = load_config(saved.profile, config_file=config_file)
        for key, value in _explicit_file_settings(config_file, file_cfg):
            apply_updates(requested, nest(key, value))
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            apply_updates(requested, nest(key, value))
    else:
        for item in overrides or []:
            apply_updates(requested, typed_override(requested, item))
    requested.paths.run_dir = str(run_dir)
    if requested.data.n_eval is not None and requested.data.n_eval < 0:
        requested.data.n_eval = None
    validate(requested)
    diffs = config_diffs(saved, requested)
    if diffs and not force:
        raise RunConfigMismatch(path, diffs)
    return requested


#: The settings each phase's results depend on (dotted prefixes; operational keys left out).
PHASE_SETTINGS: dict[str, tuple[str, ...]] = {
    "data": ("data.", "seed"),
    "generate": ("teacher.", "quality.", "system_prompt", "student.model", "student.max_context"),
    "das": ("das.", "student.model"),
    "train": ("sft.", "student.model", "student.max_context", "system_prompt"),
    "evaluate": ("eval.", "student.model", "system_prompt"),
    "analyses": ("analyses.", "sft.", "eval.", "das.", "quality.", "student.model", "system_prompt"),
}

#: Where each phase records the settings it used (``settings`` key), relative to the run directory.
PHASE_RECORDS: dict[str, tuple[str, ...]] = {
    "data": ("data/summary.json",),
    "generate": ("teacher/summary.json",),
    "das": ("das/summary.json",),
    "train": ("sft/stage1/manifest.json", "sft/stage2/manifest.json"),
    "evaluate": ("eval/metrics.json",),
}


def phase_settings(cfg: Config, phase: str) -> dict[str, Any]:
    """Return ``{dotted key: value}`` of the result-changing settings ``phase`` used (for its manifest)."""
    prefixes = PHASE_SETTINGS[phase]
    return {key: value for key, value in flat_settings(cfg).items()
            if key not in OPERATIONAL_KEYS and any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)}


def settings_drift(run_dir: str | os.PathLike, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Return, for each phase record whose saved ``settings`` differ from the run's config, the differing keys.

    Each item is ``{"file", "key", "used", "config"}``: the phase's output was computed with
    ``used`` while ``config.json`` now says ``config`` (it was replaced with FORCE and the phase
    not re-run). Records without ``settings`` (older runs) are skipped.
    """
    run_dir = Path(run_dir)
    if config is None:
        path = run_dir / "config.json"
        if not path.is_file():
            return []
        config = json.loads(path.read_text(encoding="utf-8"))
    try:
        current = flat_settings(config_from_dict(config))
    except ConfigError:
        return []
    drift = []
    for files in PHASE_RECORDS.values():
        for name in files:
            path = run_dir / name
            try:
                used = json.loads(path.read_text(encoding="utf-8")).get("settings") if path.is_file() else None
            except (OSError, ValueError):  # unreadable or not UTF-8 JSON: the report notes the file itself
                continue
            for key, value in (used or {}).items():
                if key in current and current[key] != value:
                    drift.append({"file": name, "key": key, "used": value, "config": current[key]})
    return drift


def _explicit_file_settings(config_file: str | os.PathLike, file_cfg: Config) -> list[tuple[str, Any]]:
    """Return ``(dotted key, value)`` for the keys a YAML file sets, valued as ``load_config`` coerced them."""
    loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    loaded.pop("profile", None)
    flat = flat_settings(file_cfg)
    out: list[tuple[str, Any]] = []

    def walk(mapping: dict[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and dotted not in flat:
                walk(value, f"{dotted}.")
            else:
                out.append((dotted, flat[dotted]))

    walk(loaded, "")
    return out

