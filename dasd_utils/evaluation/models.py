"""Which models the evaluation compares (the base student, its stage adapters, any adapter folder), their fingerprints and file names."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..config import Config
from ..hashing import adapter_sha256
from ..layout import STAGE_ADAPTERS
from ..reuse import inputs_key


class AdapterMissing(layout.MissingPhaseOutput):
    """An adapter requested in ``eval.models`` is absent; the message says which phase writes it.

    ``phase`` is ``train`` (with ``stage``) for the run's own stage adapters, None for a folder
    named in ``eval.models`` that holds no adapter.
    """


@dataclass(frozen=True)
class EvalModel:
    """One model to evaluate: the base student (``adapter is None``) or the base plus a PEFT adapter."""

    name: str
    adapter: Path | None


#: ``eval.models`` stage name -> SFT stage number (its adapter is that stage's folder).
_STAGE_NUMBER = {f"stage{stage}": stage for stage in layout.STAGES}


def eval_dir(cfg: Config) -> Path:
    """Return ``<run_dir>/eval`` (created if needed)."""
    path = layout.eval_dir(cfg.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def predictions_path(cfg: Config, name: str) -> Path:
    """Return the path of ``predictions_<model>.jsonl``."""
    return layout.predictions_file(cfg.run_dir, name)


def loglik_path(cfg: Config, name: str) -> Path:
    """Return the path of ``loglik_<model>.jsonl``."""
    return layout.loglik_file(cfg.run_dir, name)


def is_adapter_dir(path: Path) -> bool:
    """Return True when ``path`` holds a saved LoRA adapter (its config and weights)."""
    return (path / "adapter_config.json").is_file() and any(
        (path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")
    )


def display_path(cfg: Config, path: Path | None) -> str | None:
    """Return ``path`` relative to the run directory when it lies inside it (stable across run-dir spellings)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(cfg.run_dir.resolve()))
    except ValueError:
        return str(path)


def resolve_eval_model(cfg: Config, name: str) -> EvalModel:
    """Return the :class:`EvalModel` for one entry of ``eval.models`` (raises AdapterMissing if absent).

    With the ``hf`` backend the adapter must be on disk. With the ``openai`` backend the server
    holds the adapters (``--lora-modules``), so a stage adapter absent locally is accepted; it is
    then served by name and its cache key cannot include the adapter's fingerprint.
    """
    if name == "base":
        return EvalModel("base", None)
    if name in STAGE_ADAPTERS:
        path = layout.sft_stage_dir(cfg.run_dir, _STAGE_NUMBER[STAGE_ADAPTERS[name]])
        if not is_adapter_dir(path) and cfg.eval.backend != "openai":
            raise AdapterMissing(path, "train", _STAGE_NUMBER[STAGE_ADAPTERS[name]],
                f"eval.models asks for '{name}' but its LoRA adapter is missing: {path} has no "
                f"adapter_config.json + adapter_model.safetensors. Run the 'train' phase first "
                f"(python -m dasd_utils train --profile {cfg.profile} --run-dir {cfg.run_dir}, or the SFT notebook), "
                f"or remove '{name}' from eval.models."
            )
        return EvalModel(name, path)
    path = Path(name).expanduser()
    if not is_adapter_dir(path) and cfg.eval.backend != "openai":
        raise AdapterMissing(path, None, None,
            f"eval.models entry {name!r} is neither 'base', 'stage1', 'stage2' nor a directory holding a "
            "PEFT adapter (adapter_config.json + adapter_model.safetensors)"
        )
    return EvalModel(layout.safe_name(path.resolve().name), path)


def resolve_eval_models(cfg: Config) -> list[EvalModel]:
    """Return every model of ``eval.models``, checking all adapters exist before anything is loaded."""
    if not cfg.eval.models:
        raise ValueError("eval.models is empty: list at least one of base, stage1, stage2 or an adapter path")
    specs = [resolve_eval_model(cfg, name) for name in cfg.eval.models]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"eval.models gives the same name twice: {duplicates} (adapters are named by their folder)")
    return specs


def adapter_fingerprint(path: Path) -> str:
    """Return a sha256 over an adapter's config and weights (see :func:`hashing.adapter_sha256`)."""
    return adapter_sha256(path)


def _weights_fingerprint(folder: Path) -> str:
    """Return a cheap fingerprint of a model folder: config.json, and each weight file's name, size, head and tail.

    Hashing 8 GB of base weights on every run would cost more than it protects; a retrained or
    re-converted checkpoint changes the size or the first/last bytes of its files.
    """
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    weights = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".gguf")
    )
    for p in weights:
        size = p.stat().st_size
        digest.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as fh:
            digest.update(fh.read(1 << 16))
            if size > 1 << 17:
                fh.seek(-(1 << 16), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


def base_fingerprint(cfg: Config) -> str:
    """Return a fingerprint of the base student: local folder contents, or the Hub id and cached revision."""
    from ..models import resolve_model

    resolved = resolve_model(cfg.student.model, cfg)
    path = Path(resolved).expanduser()
    if path.is_dir():
        return inputs_key({"model": cfg.student.model, "files": _weights_fingerprint(path)})
    revision = None
    try:  # the snapshot folder of the Hub cache is named after the commit: no network needed
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved, "config.json")
        if isinstance(cached, str):
            revision = Path(cached).parent.name
    except Exception:  # pragma: no cover - huggingface_hub is always installed with transformers
        revision = None
    return inputs_key({"model": resolved, "revision": revision})


__all__ = [
    "adapter_fingerprint",
    "AdapterMissing",
    "base_fingerprint",
    "eval_dir",
    "EvalModel",
    "loglik_path",
    "predictions_path",
    "resolve_eval_model",
    "resolve_eval_models",
    "STAGE_ADAPTERS",
]
