"""Reading a configuration: YAML files, ``--set dotted.key=value`` overrides and type coercion into the schema."""

from __future__ import annotations

import copy
import json
import os
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .schema import PROFILES, Config, ConfigError, os_reason, shown_value
from .validation import validate


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)



def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` where that is unambiguous; raise ConfigError otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:  # try the next member of the union
                errors.append(str(exc))
        if len(errors) == 1:  # "int | None": the member's own message, saying null is allowed too
            raise ConfigError(f"{errors[0]} (or null)")
        raise ConfigError(f"{key}: {shown_value(value)} does not fit {hint}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown_value(value)}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, key) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown_value(value)}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {shown_value(value)}")
    if hint in (int, float):
        return _coerce_number(value, hint, key)
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {shown_value(value)}")
    return value


def _coerce_number(value: Any, hint: type, key: str) -> int | float:
    """Return ``value`` as an int (integral floats and integer texts too) or a float; booleans are refused."""
    if not isinstance(value, bool):
        if isinstance(value, int) or (hint is float and isinstance(value, float)):
            return hint(value)
        if hint is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return hint(value)
            except ValueError:
                pass
    raise ConfigError(f"{key}: expected {'an integer' if hint is int else 'a number'}, got {shown_value(value)}")


def apply_updates(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Merge a nested mapping into a dataclass tree in place, checking keys and types."""
    hints = _type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{dotted}' (known here: {known})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted}: expected a mapping of sub-keys, got {shown_value(value)}")
            apply_updates(current, value, prefix=f"{dotted}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted))


def parse_override(item: str) -> dict[str, Any]:
    """Return the nested mapping for one ``dotted.key=value`` override (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like dotted.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return nest(key, value)


def typed_override(cfg: "Config", item: str) -> dict[str, Any]:
    """Return the nested mapping for one override, keeping the raw text for string fields.

    YAML would turn ``system_prompt=Answer: C`` into a mapping and cut ``model=run #2`` at the
    comment sign; a string field takes the text after ``=`` as it is (``null`` / ``~`` still mean
    None for optional fields).
    """
    nested = parse_override(item)
    key, raw = item.split("=", 1)
    if key.strip() == "profile":
        raise ConfigError(
            f"profile cannot be changed with --set: choose it with --profile ({', '.join(PROFILES)}); "
            "a profile sets the models, sizes and hardware settings together"
        )
    hint = _field_hint(cfg, key.strip())
    if hint is not None:
        members = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
        if str in members and members <= {str, type(None)}:
            value: Any = raw
            if type(None) in members and raw.strip() in ("null", "~", "None", ""):
                value = None
            return nest(key.strip(), value)
    return nested


def _field_hint(obj: Any, dotted_key: str) -> Any:
    """Return the type hint of a dotted config key, or None when the key does not exist."""
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        if not is_dataclass(obj) or part not in {f.name for f in fields(obj)}:
            return None
        obj = getattr(obj, part)
    if not is_dataclass(obj):
        return None
    return _type_hints(type(obj)).get(parts[-1])


def nest(dotted_key: str, value: Any) -> dict[str, Any]:
    """Return ``{"a": {"b": value}}`` for ``"a.b"``."""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(
    profile: str = "demo",
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
) -> Config:
    """Return the resolved :class:`Config` for a profile, a YAML file and overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose one of: {', '.join(PROFILES)})")
    cfg = Config(profile=profile)
    apply_updates(cfg, copy.deepcopy(PROFILES[profile]))
    if config_file is not None:
        loaded = read_yaml_file(config_file)
        loaded.pop("profile", None)
        try:
            apply_updates(cfg, loaded)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            if key == "profile":
                raise ConfigError(f"profile cannot be overridden: choose it with the profile argument ({', '.join(PROFILES)})")
            apply_updates(cfg, nest(key, value))
    else:
        for item in overrides or []:
            apply_updates(cfg, typed_override(cfg, item))
    if run_dir is not None:
        cfg.paths.run_dir = str(run_dir)
    if cfg.data.n_eval == -1:
        cfg.data.n_eval = None
    validate(cfg)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in the same mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(
                    f"{self.name}:{line}: duplicate key '{key}' (first written on line {seen[key]}); keep only one"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | os.PathLike) -> dict[str, Any]:
    """Return the mapping held by a YAML config file; raise ConfigError naming the file and line.

    Errors never quote the offending line (it may hold a key pasted by mistake): only its
    position and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        loaded = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def config_from_dict(data: dict[str, Any]) -> Config:
    """Return a Config rebuilt from a ``config.json`` mapping (e.g. to reload a run).

    The saved profile's values come first: a setting added after the run was created (absent
    from its config.json) takes that profile's value, not the dataclass default.
    """
    data = copy.deepcopy(data)
    cfg = Config(profile=data.pop("profile", "colab"))
    if cfg.profile in PROFILES:
        apply_updates(cfg, copy.deepcopy(PROFILES[cfg.profile]))
    apply_updates(cfg, data)
    return cfg


def load_run_config(run_dir: str | os.PathLike) -> Config:
    """Return the Config saved in ``<run_dir>/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: run the 'data' phase first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        raise ConfigError(f"{where}: not a valid config.json ({type(exc).__name__}); re-run the 'data' phase") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a valid config.json (expected a JSON object); re-run the 'data' phase")
    return config_from_dict(data)



def replace(cfg: Config, **changes: Any) -> Config:
    """Return a deep copy of ``cfg`` with dotted-key changes, e.g. ``replace(cfg, **{"data.n_eval": 5})``."""
    new = copy.deepcopy(cfg)
    for key, value in changes.items():
        apply_updates(new, nest(key, value))
    return new
