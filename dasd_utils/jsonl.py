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


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the complete records of an append-only JSONL file; a torn last line (crash) is skipped."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                continue  # the line being written when the process died
            raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Return ``path`` after writing ``data`` as indented JSON through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
