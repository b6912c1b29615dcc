"""One device / precision resolver, for inference (:mod:`dasd_utils.models`) and training (:mod:`dasd_utils.sft`).

Devices: ``auto`` picks the GPU when one is visible, else the CPU; asking for ``cuda`` without a
GPU is an error. Precisions: bf16 on GPUs with native bf16 (compute capability 8.0, Ampere, and
newer), fp16 on older GPUs (a T4 "supports" bf16 only by slow emulation), fp32 on the CPU.
Inference takes any explicit precision as asked; training refuses the ones that cannot work
(fp16 on the CPU, bf16 without native support). Callers pass the exception class their users
expect (``ModelUnavailable``, ``SFTSetupError``).
"""

from __future__ import annotations

from typing import Any

PRECISIONS = ("bf16", "fp16", "fp32")


def resolve_device(preference: str = "auto", error: type[Exception] = RuntimeError) -> str:
    """Return ``cuda`` for ``auto`` with a visible GPU (``cpu`` without), else ``preference``; raise ``error`` for CUDA without a GPU."""
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"device {preference!r} requested but no CUDA GPU is visible")
    return preference


def training_device(preference: str = "auto", error: type[Exception] = RuntimeError) -> str:
    """Return ``cuda`` or ``cpu`` for training: the Trainer places the model itself (one GPU per process under DDP)."""
    import torch

    device = resolve_device(preference, error)
    return "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"


def native_bf16(device: str = "cuda") -> bool:
    """Return True when the GPU computes in bf16 natively (compute capability 8.0 or newer)."""
    import torch

    # torch.cuda.is_bf16_supported() also says True on a T4, where bf16 is only emulated (slow).
    major, _minor = torch.cuda.get_device_capability(torch.device(device))
    return major >= 8


def auto_precision(device: str) -> str:
    """Return ``bf16`` on GPUs with native bf16, ``fp16`` on older GPUs, ``fp32`` on the CPU."""
    if device.startswith("cuda"):
        return "bf16" if native_bf16(device) else "fp16"
    return "fp32"


def torch_dtype(precision: str) -> Any:
    """Return the torch dtype of ``bf16`` / ``fp16`` / ``fp32``."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def inference_dtype(preference: str, device: str) -> Any:
    """Return the torch dtype for inference: ``auto`` follows the hardware, an explicit precision is taken as asked."""
    return torch_dtype(auto_precision(device) if preference == "auto" else preference)


def training_precision(preference: str, device: str, error: type[Exception] = ValueError) -> str:
    """Return ``bf16``, ``fp16`` or ``fp32`` for training on ``device``; raise ``error`` for a precision that cannot work there."""
    import torch

    if preference not in ("auto", *PRECISIONS):
        raise error(f"sft.precision must be auto|bf16|fp16|fp32, got {preference!r}")
    if device == "cpu":
        if preference == "fp16":
            raise error("sft.precision=fp16 needs a CUDA GPU; on the CPU use fp32 (or auto)")
        return "fp32" if preference == "auto" else preference
    if preference == "auto":
        return auto_precision(device)
    if preference == "bf16" and not native_bf16(device):
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        raise error(
            f"sft.precision=bf16 but this GPU ({torch.cuda.get_device_name()}, compute capability {major}.{minor}) "
            "has no native bf16: use sft.precision=fp16 or auto"
        )
    return preference


__all__ = [
    "PRECISIONS",
    "auto_precision",
    "free_memory",
    "inference_dtype",
    "native_bf16",
    "resolve_device",
    "torch_dtype",
    "training_device",
    "training_precision",
]


def free_memory() -> None:
    """Collect garbage and empty the accelerator's cache (after a model is dropped, before the next one loads)."""
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=True)
