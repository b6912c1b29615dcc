"""Append-only JSONL with fsync, for records that must survive a crash (teacher calls); atomic JSON files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it, so that a killed process loses at most the line in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


class DamagedRecordError(ValueError):
    """A JSONL line other than a torn last one is not a JSON record (or not UTF-8); the message names file and line."""


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the complete records of an append-only JSONL file; a torn last line (crash) is skipped.

    A line holding bytes that are not UTF-8 is a damaged write, treated like a torn line: skipped
    when it is the unterminated last line, otherwise DamagedRecordError names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if i == len(lines) - 1 and not line.endswith(b"\n"):
                continue  # the line being written when the process died
            what = "holds bytes that are not UTF-8" if isinstance(exc, UnicodeDecodeError) else f"is not JSON ({exc.msg})"
            raise DamagedRecordError(
                f"{path}:{i + 1} {what}: a damaged record. For a teacher file, re-run the 'generate' phase: "
                "it sets the damaged line aside and sends that request again"
            ) from None


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Return a JSON file's content, or ``default`` when it is missing or not valid JSON (a phase then recomputes)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return default


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Return ``path`` after writing ``data`` as indented JSON through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
