"""Typed configuration for every phase, three profiles, YAML and ``--set`` overrides.

A configuration is a tree of dataclasses (:class:`Config`). Values come, in order of precedence:

1. the dataclass defaults, which are the course's values (rapport TP4);
2. the chosen profile (``demo``, ``colab``, ``full``);
3. an optional YAML file (same nesting as the dataclasses);
4. ``--set dotted.key=value`` overrides (values parsed as YAML scalars: ``3``, ``0.5``,
   ``true``, ``null``, ``[a, b]``).

The resolved configuration is written to ``<run_dir>/config.json``. It never holds a secret: the
teacher's API key is read from the environment variable *named* by ``teacher.api_key_env``.

Modules: :mod:`.schema` (the dataclasses, defaults and profiles), :mod:`.loading` (YAML files,
overrides, type coercion), :mod:`.validation` (ranges and consistency), :mod:`.runconfig` (one
configuration per run: ``config.json``, mismatches, settings drift, the run directory check).
"""

from __future__ import annotations

from .loading import config_from_dict, load_config, load_run_config, parse_override, read_yaml_file, replace
from .runconfig import (
    OPERATIONAL_KEYS,
    PHASE_RECORDS,
    PHASE_SETTINGS,
    RunConfigMismatch,
    config_diffs,
    flat_settings,
    phase_settings,
    resolve_run_config,
    settings_drift,
)
from .schema import (
    COURSE_SYSTEM_PROMPT,
    GPT_OSS_120B,
    INFOMANIAK_BASE_URL_TEMPLATE,
    PROFILES,
    QWEN3_4B,
    SMOLLM2_PYPI,
    AnalysesConfig,
    Config,
    ConfigError,
    DASConfig,
    DataConfig,
    EvalConfig,
    FineTuneConfig,
    PathsConfig,
    QualityConfig,
    StudentConfig,
    TeacherConfig,
    cache_dir,
    check_run_dir,
)
from .validation import MissingSetting, require_api_endpoint, validate

__all__ = [
    "AnalysesConfig",
    "COURSE_SYSTEM_PROMPT",
    "Config",
    "ConfigError",
    "DASConfig",
    "DataConfig",
    "EvalConfig",
    "FineTuneConfig",
    "GPT_OSS_120B",
    "INFOMANIAK_BASE_URL_TEMPLATE",
    "MissingSetting",
    "OPERATIONAL_KEYS",
    "PHASE_RECORDS",
    "PHASE_SETTINGS",
    "PROFILES",
    "PathsConfig",
    "QWEN3_4B",
    "QualityConfig",
    "RunConfigMismatch",
    "SMOLLM2_PYPI",
    "StudentConfig",
    "TeacherConfig",
    "cache_dir",
    "check_run_dir",
    "config_diffs",
    "config_from_dict",
    "flat_settings",
    "load_config",
    "load_run_config",
    "parse_override",
    "phase_settings",
    "read_yaml_file",
    "replace",
    "require_api_endpoint",
    "resolve_run_config",
    "settings_drift",
    "validate",
]
