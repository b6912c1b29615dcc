"""SFT test helpers: small SFT-ready files, a tiny config, a saved adapter's tensors."""

from __future__ import annotations

from pathlib import Path

from dasd_utils import sft
from dasd_utils.config import load_config
from dasd_utils.data import load_split, write_jsonl
from dasd_utils.prompts import build_sft_example

RESPONSE = "<reasoning>\nA dress shop sells clothes that are not pants.\n</reasoning>\nFinal Answer: C"


def sft_rows(n: int, offset: int = 50):
    """Return ``n`` bundled validation questions from ``offset`` (the demo's training items)."""
    return load_split("bundled", "validation")[offset : offset + n]


def write_sft_file(cfg, stage: int, n: int, offset: int = 50, system_prompt: str | None = None) -> Path:
    """Write a small SFT-ready file (format of docs/artifacts.md) for ``stage``; return its path."""
    records = []
    for row in sft_rows(n, offset):
        response = f"<reasoning>\nOption {row['answerKey']} fits the question best.\n</reasoning>\nFinal Answer: {row['answerKey']}"
        records.append({
            "question_id": row["id"],
            "stage": stage,
            "messages": build_sft_example(row, response, system_prompt or cfg.system_prompt),
        })
    return write_jsonl(sft.sft_data_path(cfg, stage), records)


def tiny_sft_cfg(run_dir, tiny_model_dir, **overrides):
    """Return a demo config training the tiny random model for two quick steps."""
    base = {
        "student.model": str(tiny_model_dir),
        "sft.max_steps": 2,
        "sft.per_device_batch_size": 2,
        "sft.grad_accum": 1,
        "sft.lora_dropout": 0.0,
        "sft.logging_steps": 1,
        # Two-step trainings on purpose (fast): the guard still refuses an adapter that did not move.
        "sft.min_learning_steps": 1,
    }
    base.update(overrides)
    return load_config("demo", run_dir=run_dir, overrides=base)


def adapter_tensors(folder):
    """Return the tensors of a saved LoRA adapter."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))
