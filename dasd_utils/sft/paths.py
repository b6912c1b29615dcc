"""Where the SFT phase reads and writes, by stage: named after :mod:`dasd_utils.layout`, which holds every path."""

from __future__ import annotations

import os
from pathlib import Path

from .. import layout
from ..config import Config
from ..layout import STAGES

#: The files of a saved LoRA adapter (PEFT's ``save_pretrained``).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def stage_dir(cfg: Config, stage: int) -> Path:
    """Return ``<run_dir>/sft/stage{stage}`` (adapter, tokenizer, train_log.jsonl, manifest.json)."""
    return layout.sft_stage_dir(cfg.run_dir, stage)


def sft_data_path(cfg: Config, stage: int) -> Path:
    """Return the SFT-ready dataset written by the DAS phase for ``stage``."""
    return layout.sft_examples(cfg.run_dir, stage)


def figure_path(cfg: Config) -> Path:
    """Return ``<run_dir>/figures/sft_loss.png``."""
    return layout.figure(cfg.run_dir, "sft_loss.png")


def checkpoint_dir(cfg: Config, stage: int) -> Path:
    """Return ``<run_dir>/sft/stage{stage}/checkpoints`` (resumable checkpoints while the stage trains)."""
    return layout.sft_checkpoints(cfg.run_dir, stage)


def has_adapter(folder: str | os.PathLike) -> bool:
    """Return True when ``folder`` holds a complete saved adapter (config and weights)."""
    return all((Path(folder) / name).is_file() for name in ADAPTER_FILES)


__all__ = ["ADAPTER_FILES", "STAGES", "checkpoint_dir", "figure_path", "has_adapter", "sft_data_path", "stage_dir"]
