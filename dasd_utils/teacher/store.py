"""The teacher's record files: reading them tolerantly, compacting them, archiving other configurations.

Each request gives one record in ``<run>/teacher/stage{1,2}.jsonl``, appended and fsync'ed as soon
as its response arrives (:func:`dasd_utils.jsonl.append_record`). Reading deduplicates by
``request_hash`` (a completed record beats a failed one; among equals the last complete line
wins) and skips a torn last line, so a SIGKILL loses at most the requests in flight. Records whose
hash is not a request of the current configuration are moved to ``teacher/archive/stage{N}.jsonl``
(:class:`StageStore`); a lock keeps two processes from appending to the same stage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .. import layout
from ..config import Config
from .records import QualityJudge
from .requests import TeacherRequest

log = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """The teacher phase cannot run (bad configuration, a locked run directory...)."""


# ----------------------------------------------------------------------------- paths (dasd_utils.layout)
def teacher_dir(cfg: Config) -> Path:
    """Return ``<run>/teacher``."""
    return layout.teacher_dir(cfg.run_dir)


def stage_path(cfg: Config, stage: int) -> Path:
    """Return ``<run>/teacher/stage{stage}.jsonl``."""
    return layout.teacher_records(cfg.run_dir, stage)


def archive_path(cfg: Config, stage: int) -> Path:
    """Return the file holding records of earlier configurations (never served for the current one)."""
    return layout.teacher_archive(cfg.run_dir, stage)


# ----------------------------------------------------------------------------- records
def _better(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Return True when ``new`` should replace ``old`` for the same hash (completed beats failed, then last wins)."""
    if old is None:
        return True
    return not (new.get("error") is not None and old.get("error") is None)


def read_records(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Return {request_hash: record} from a stage file, deduplicated (a torn last line is skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for record in _iter_tolerant(Path(path)):
        key = record.get("request_hash")
        if key and _better(record, out.get(key)):
            out[key] = record
    return out


def _iter_tolerant(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the complete records of a JSONL file, skipping (with a warning) lines that are not JSON.

    A line can only be broken by a crash during a write; compaction then rewrites the file, so
    the warning appears once and nothing that was complete is ever lost.
    """
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                # Decoding with replacement would silently change the stored text: treated like a torn line.
                log.warning("%s:%d holds bytes that are not UTF-8 (a damaged write); the record is ignored "
                            "and its request will be sent again", path, lineno)
                continue
            except json.JSONDecodeError:
                log.warning("%s:%d is not a complete JSON record (interrupted write); it is ignored", path, lineno)
                continue
            if isinstance(record, dict):
                yield record


def load_records(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the stage's records (one per request, in file order), as written by the last run."""
    return list(read_records(stage_path(cfg, stage)).values())


def load_kept(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the records later phases train on: one quality-kept response per question at most."""
    return [r for r in load_records(cfg, stage) if r.get("kept")]


def _atomic_write(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def backup_if_corrupt(path: Path) -> Path | None:
    """Return the path of a timestamped copy of ``path`` made because lines in its middle are broken, else None.

    A crash can only tear the last line (no newline at the end); a broken line anywhere else
    (bytes that are not UTF-8 or not JSON) means the file was damaged otherwise. Compaction
    would drop such lines, so the original is copied first and a warning says what was found.
    """
    if not path.is_file():
        return None
    lines = path.read_bytes().splitlines(keepends=True)
    bad = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or (lineno == len(lines) and not line.endswith(b"\n")):
            continue  # blank, or the torn last line of an interrupted write
        try:
            json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            bad.append(lineno)
    if not bad:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}.bak")
    shutil.copy2(path, backup)
    shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    log.warning(
        "%s: %d line(s) in the middle of the file are not valid UTF-8 JSON records (line %s of %d); an "
        "interrupted write only tears the last line, so the file was damaged otherwise. The original is "
        "kept at %s before the file is compacted to its complete records.",
        path, len(bad), shown, len(lines), backup,
    )
    return backup


@contextlib.contextmanager
def stage_lock(cfg: Config, stage: int):
    """Hold an exclusive lock on a stage so that two processes never append to the same file."""
    path = teacher_dir(cfg) / f".stage{stage}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, single-user use assumed
        yield
        return
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TeacherError(
                f"{stage_path(cfg, stage)} is being written by another process (notebook or CLI); "
                "wait for it to finish or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- one stage's records
class StageStore:
    """The records of one stage: what exists (file + archive), what is current, what is kept."""

    def __init__(self, cfg: Config, stage: int, rounds: list[list[TeacherRequest]]) -> None:
        self.cfg = cfg
        self.stage = stage
        self.path = stage_path(cfg, stage)
        self.archive = archive_path(cfg, stage)
        self.requests = {r.request_hash: r for requests in rounds for r in requests}
        self.order = [r.request_hash for requests in zip(*rounds) for r in requests]  # question-major
        self.by_sample = {(r.question_id, r.sample_index): r.request_hash for r in self.requests.values()}
        for path in (self.archive, self.path):
            backup_if_corrupt(path)  # before compaction rewrites them
        archived = read_records(self.archive)
        existing = dict(archived)
        for key, record in read_records(self.path).items():
            if _better(record, existing.get(key)):
                existing[key] = record
        self.records = {k: v for k, v in existing.items() if k in self.requests}
        #: Completed records this run starts with (served from disk, not sent).
        self.reused = sum(1 for r in self.records.values() if r.get("error") is None)
        stale = {k: v for k, v in existing.items() if k not in self.requests}
        # Compact now: removes torn lines and superseded failures before anything is appended,
        # and moves other configurations' records out of the way of later phases (archive first,
        # so that a kill between the two writes duplicates a record rather than losing it).
        if stale.keys() != archived.keys():
            _atomic_write(self.archive, list(stale.values()))
            moved = len(stale.keys() - archived.keys())
            if moved:
                log.info("teacher stage %d: %d records of another configuration moved to %s", stage, moved, self.archive)
        _atomic_write(self.path, [self.records[k] for k in self.order if k in self.records])

    def add(self, record: dict[str, Any]) -> None:
        key = record["request_hash"]
        if _better(record, self.records.get(key)):
            self.records[key] = record

    def needs(self, request: TeacherRequest, judge: QualityJudge) -> bool:
        """Return True when this request must be sent (missing or failed, and no earlier sample kept)."""
        for earlier in range(request.sample_index):
            previous = self._record_for(request.question_id, earlier)
            if previous is not None and previous.get("error") is None and judge.verdict(previous, request.row)["ok"]:
                return False
        record = self.records.get(request.request_hash)
        return record is None or record.get("error") is not None

    def _record_for(self, question_id: str, sample_index: int) -> dict[str, Any] | None:
        key = self.by_sample.get((question_id, sample_index))
        return self.records.get(key) if key else None

    def finalize(self, judge: QualityJudge) -> list[dict[str, Any]]:
        """Recompute verdicts, mark the kept sample of each question, rewrite the file; return the records."""
        out = []
        kept_questions: set[str] = set()
        for key in self.order:
            record = self.records.get(key)
            if record is None:
                continue
            request = self.requests[key]
            record["quality"] = judge.verdict(record, request.row)
            record["kept"] = bool(record["quality"]["ok"]) and request.question_id not in kept_questions
            if record["kept"]:
                kept_questions.add(request.question_id)
            out.append(record)
        _atomic_write(self.path, out)
        return out


__all__ = [
    "StageStore",
    "TeacherError",
    "archive_path",
    "backup_if_corrupt",
    "load_kept",
    "load_records",
    "read_records",
    "stage_lock",
    "stage_path",
    "teacher_dir",
]
