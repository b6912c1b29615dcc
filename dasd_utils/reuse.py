"""Reuse of finished work: hash a phase's inputs, compare with its manifest, reuse or recompute.

Every phase follows the same steps: it describes what its outputs depend on as a JSON-able
mapping (settings, input file hashes, adapter hashes, format versions), ``inputs_key`` turns that
into one sha256, and ``reusable`` says whether the manifest written by the last complete run
has the same key and its outputs still exist. Only then is the work skipped; ``--force`` skips
the check. ``save_manifest`` is called last, after every output is written, so a run killed in
between is recomputed rather than half reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .jsonl import read_json, write_json_atomic


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no insignificant spaces; values JSON cannot hold are written with ``str``."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def inputs_key(inputs: Any) -> str:
    """Return the sha256 hex digest of ``inputs``' canonical JSON."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


def same_inputs(saved: Any, current: Any) -> bool:
    """Return True when two input descriptions are equal once written as canonical JSON (tuples == lists)."""
    return canonical_json(saved) == canonical_json(current)


def reusable(
    manifest_path: str | os.PathLike,
    key: str,
    outputs: Iterable[str | os.PathLike] = (),
    force: bool = False,
) -> dict[str, Any] | None:
    """Return the saved manifest when it records ``key`` and every path of ``outputs`` exists, else None.

    None means recompute: forced, no manifest, an unreadable one, other inputs, or a missing output.
    """
    if force:
        return None
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return None
    if not all(Path(p).exists() for p in outputs):
        return None
    return manifest


def save_manifest(manifest_path: str | os.PathLike, key: str, **fields: Any) -> dict[str, Any]:
    """Write ``{"key": key, **fields}`` atomically as the phase's manifest and return it."""
    manifest: dict[str, Any] = {"key": key, **fields}
    write_json_atomic(manifest_path, manifest)
    return manifest


__all__ = ["canonical_json", "inputs_key", "reusable", "same_inputs", "save_manifest"]
