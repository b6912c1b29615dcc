"""Reading a run's files for the report: a missing file is None, an unreadable one is None plus a
note in ``problems`` (shown in the report), never a crash. Summaries are read through their types
(:mod:`dasd_utils.summaries`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from ..summaries import Summary, SummaryError

log = logging.getLogger("dasd_utils.report")

T = TypeVar("T", bound=Summary)


def read_json(path: Path, problems: list[str]) -> Any:
    """Return the parsed JSON file, or None (and a note in ``problems``) when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 (UnicodeDecodeError) or not JSON
        problems.append(f"{path.name} illisible ({type(exc).__name__})")
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def read_typed(run_dir: Path, path: Path, cls: type[T], problems: list[str]) -> T | None:
    """Return the summary file ``path`` read as ``cls``, or None (and a note) when missing, unreadable or of another format."""
    data = read_json(path, problems)
    if data is None:
        return None
    where = path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else str(path)
    try:
        return cls.from_dict(data, where)
    except SummaryError as exc:
        problems.append(f"{where} illisible ({exc})")
        log.warning("report: %s", exc)
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]] | None:
    """Return the JSON objects of a JSONL file, or None when it is missing; broken lines are skipped with a warning."""
    if not path.is_file():
        return None
    rows = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        if raw.strip():
            try:
                row = json.loads(raw.decode("utf-8"))
            except ValueError:  # not UTF-8, or a torn last line of an interrupted phase
                log.warning("report: %s:%d is not a UTF-8 JSON record; it is ignored", path, lineno)
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
