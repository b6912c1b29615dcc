"""The model being trained: the machine's device and precision, the base model (optionally 4-bit QLoRA), LoRA adapters."""

from __future__ import annotations

import os
from typing import Any

from .. import devices
from ..config import Config
from ..layout import MissingPhaseOutput
from .paths import has_adapter, stage_dir


class SFTSetupError(RuntimeError):
    """Training cannot start with these settings on this machine; the message says what to change."""


def training_device(preference: str = "auto") -> str:
    """Return ``cuda`` when a GPU is visible and not refused by ``preference``, else ``cpu``."""
    return devices.training_device(preference, SFTSetupError)


def resolve_precision(preference: str, device: str) -> str:
    """Return ``bf16``, ``fp16`` or ``fp32``: auto picks bf16 on GPUs with native bf16, fp16 on older ones, fp32 on CPU."""
    return devices.training_precision(preference, device, SFTSetupError)


def load_base_model(cfg: Config, precision: str, device: str):
    """Return the student's base model for training (4-bit through bitsandbytes when ``sft.load_in_4bit``)."""
    from transformers import AutoModelForCausalLM

    from ..models import ModelUnavailable, resolve_model

    kwargs: dict[str, Any] = {"dtype": devices.torch_dtype(precision), "trust_remote_code": False}
    if cfg.student.attn_implementation:
        kwargs["attn_implementation"] = cfg.student.attn_implementation
    if cfg.sft.load_in_4bit:
        kwargs.update(qlora_kwargs(precision, device))
    path = resolve_model(cfg.student.model, cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelUnavailable(f"could not load the student {cfg.student.model!r} for training: {exc}") from exc
    model.config.use_cache = False  # the KV cache is useless in training and clashes with checkpointing
    if cfg.sft.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.sft.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def qlora_kwargs(precision: str, device: str) -> dict[str, Any]:
    """Return the ``from_pretrained`` arguments of a 4-bit QLoRA base model, or raise SFTSetupError."""
    if device != "cuda":
        raise SFTSetupError(
            "sft.load_in_4bit=true (QLoRA) needs a CUDA GPU and none is visible: set sft.load_in_4bit=false"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise SFTSetupError(
            'sft.load_in_4bit=true needs bitsandbytes (an optional extra): pip install bitsandbytes, '
            'or pip install -e ".[qlora]"'
        ) from exc
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=devices.torch_dtype(precision if precision != "fp32" else "fp16"),
    )
    # Quantized weights are placed at load time, one full copy per process under DDP.
    return {"quantization_config": quant, "device_map": {"": PartialState().local_process_index}}


def lora_config(cfg: Config):
    """Return the PEFT ``LoraConfig`` of stage 1 (r, alpha, dropout, target modules from ``cfg.sft``)."""
    from peft import LoraConfig

    target = cfg.sft.target_modules
    if isinstance(target, str) and target != "all-linear":
        target = [t.strip() for t in target.split(",") if t.strip()]
    return LoraConfig(
        r=cfg.sft.lora_r,
        lora_alpha=cfg.sft.lora_alpha,
        lora_dropout=cfg.sft.lora_dropout,
        target_modules=target,
        bias="none",
        task_type="CAUSAL_LM",
    )


def add_lora(model, cfg: Config):
    """Return ``model`` wrapped with a fresh trainable LoRA adapter (stage 1), initialised from ``sft.seed``."""
    from peft import get_peft_model
    from transformers import set_seed

    # LoRA's A matrices are drawn from the global RNG: seed it here, not only in the Trainer
    # (which seeds after the adapter exists), so that a re-run gives the same adapter.
    set_seed(cfg.sft.seed)
    return get_peft_model(model, lora_config(cfg))


def load_trainable_adapter(model, adapter_dir: str | os.PathLike):
    """Return ``model`` wrapped with the adapter saved in ``adapter_dir``, its LoRA weights trainable (stage 2)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def load_adapter_model(cfg: Config, stage: int, device: str | None = None, dtype: str | None = None):
    """Return ``(model, tokenizer)``: the student with the stage's adapter, in eval mode, for inference."""
    from peft import PeftModel

    from ..models import load_model

    folder = stage_dir(cfg, stage)
    if not has_adapter(folder):
        raise MissingPhaseOutput(folder, "train", stage, f"no adapter in {folder}: run the 'train' phase first")
    model, tokenizer = load_model(
        cfg.student.model, cfg, dtype=dtype or cfg.student.dtype, device=device or cfg.student.device
    )
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer

