"""The in-place growing key/value cache: same numbers as DynamicCache, for layers and for whole generations."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from dasd_utils import data, layout, teacher
from dasd_utils.kvcache import GrowingLayer, cache_kwarg, growing_cache
from dasd_utils.teacher.local import LocalTeacher


def _states(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, length, 4, generator=g), torch.randn(batch, 2, length, 4, generator=g)


@pytest.mark.parametrize("reserve", [0, 3, 50])
def test_growing_layer_matches_dynamic_layer_step_by_step(reserve):
    old, new = DynamicLayer(), GrowingLayer(reserve=reserve)
    for step, length in enumerate([7, 1, 1, 2, 1, 1, 1, 1]):  # prompt, then tokens (past the reserve when it is small)
        k, v = _states(3, length, step)
        ok, ov = old.update(k, v)
        nk, nv = new.update(k, v)
        assert torch.equal(ok, nk) and torch.equal(ov, nv)
        assert new.get_seq_length() == old.get_seq_length()
    index = torch.tensor([2, 0])
    old.batch_select_indices(index)
    new.batch_select_indices(index)
    k, v = _states(2, 1, 99)
    assert all(torch.equal(a, b) for a, b in zip(old.update(k, v), new.update(k, v)))
    old.batch_repeat_interleave(2)
    new.batch_repeat_interleave(2)
    k, v = _states(4, 1, 100)
    assert all(torch.equal(a, b) for a, b in zip(old.update(k, v), new.update(k, v)))
    old.crop(-2)
    new.crop(-2)
    k, v = _states(4, 1, 101)
    assert all(torch.equal(a, b) for a, b in zip(old.update(k, v), new.update(k, v)))


def test_growing_layer_writes_in_place_within_its_reserve():
    layer = GrowingLayer(reserve=10)
    layer.update(*_states(2, 5, 0))
    buffer = layer._kbuf
    for step in range(10):
        layer.update(*_states(2, 1, step + 1))
    assert layer._kbuf is buffer and layer.get_seq_length() == 15  # no reallocation while room is left
    layer.update(*_states(2, 1, 50))
    assert layer.get_seq_length() == 16  # past the reserve: grows (once) instead of failing


def test_growing_cache_from_a_prefix_equals_deepcopy_and_repeat(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prefix = DynamicCache(config=model.config)
    with torch.inference_mode():
        # the argument's name changed in transformers 5 (cache_kwarg finds it, as the pipeline does)
        model(torch.tensor([[1, 2, 3, 4, 5]]), use_cache=True, **{cache_kwarg(model): prefix})
    cache = growing_cache(model, reserve=8, prefix=prefix, batch=3)
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)
    for layer, source in zip(cache.layers, prefix.layers):
        assert torch.equal(layer.keys, source.keys.repeat_interleave(3, dim=0))
        assert torch.equal(layer.values, source.values.repeat_interleave(3, dim=0))
    assert prefix.get_seq_length() == 5 and prefix.layers[0].keys.shape[0] == 1  # the shared prefix is untouched


@pytest.mark.parametrize("few_shot", [2, 0])  # with the shared-prefix cache, and plain left padding
@pytest.mark.model
def test_local_teacher_records_are_identical_with_either_cache(tiny_cfg, few_shot):
    cfg = tiny_cfg
    cfg.teacher.local_few_shot = few_shot
    cfg.teacher.max_tokens = 24
    data.run_phase(cfg)
    questions = data.load_run_questions(cfg, "train")
    requests = [r for stage in layout.STAGES for r in teacher.build_requests(cfg, stage, questions)[0]]
    outputs = {}
    for growing in (False, True):
        lt = LocalTeacher(cfg, "tiny")
        lt.growing_cache = growing
        got = {}
        lt.generate(requests, lambda request, result: got.__setitem__(request.request_hash, result))
        outputs[growing] = [{k: v for k, v in got[r.request_hash].items() if k != "latency_s"} for r in requests]
    assert outputs[True] == outputs[False]
    assert any(len(r["tokens"]) > 5 for r in outputs[True])  # something was generated


def test_sliding_window_models_keep_transformers_cache():
    from types import SimpleNamespace

    from transformers import MistralConfig

    config = MistralConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_key_value_heads=2, sliding_window=4, vocab_size=100)
    cache = growing_cache(SimpleNamespace(config=config), reserve=8)
    assert cache.layers and not any(isinstance(layer, GrowingLayer) for layer in cache.layers)
