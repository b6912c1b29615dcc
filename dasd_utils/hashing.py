"""Content fingerprints shared by the phases' reuse checks (files and LoRA adapters)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Files that make up a saved PEFT adapter, in hashing order (a missing one is skipped).
ADAPTER_FILE_NAMES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def file_sha256(path: str | os.PathLike) -> str:
    """Return the sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical_adapter_config(path: Path) -> str:
    """Return the adapter config as canonical JSON: sorted keys, and target_modules sorted.

    PEFT writes ``target_modules`` from a Python set, whose order changes from one process to
    the next (string hash randomisation): the same adapter must give the same fingerprint.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def adapter_sha256(adapter_dir: str | os.PathLike) -> str:
    """Return one sha256 over an adapter's config and weight files (LoRA files are small enough to hash whole)."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILE_NAMES:
        path = Path(adapter_dir) / name
        if path.is_file():
            digest.update(name.encode())
            content = _canonical_adapter_config(path) if name.endswith(".json") else file_sha256(path)
            digest.update(content.encode())
    return digest.hexdigest()


__all__ = ["ADAPTER_FILE_NAMES", "adapter_sha256", "file_sha256"]
