"""A key/value cache that grows in place: the same numbers as transformers' DynamicCache, without its copies.

``DynamicCache`` appends each new token's keys and values with ``torch.cat``, which copies the
whole cache of every layer at every step: for the demo's stand-in teacher (a batch of 24 rows,
about 600 cached positions, 30 layers) that is about 80 ms of CPU per decoding step, and
``bench/teacher_generation.py`` measures 15 % less CPU time for the demo's batches of 24 without
it (24 % for batches of 8). :class:`GrowingLayer` writes into a buffer allocated once with room
for the tokens still to come and hands attention a view of the filled part. The view holds exactly
the values the concatenated tensor would hold, and scaled-dot-product attention reads them alike, so
generated tokens and their log-probabilities are bit-identical
(``tests/foundation/test_kvcache.py``, ``bench/teacher_generation.py``).

It is also the one home of the shared-prefix cache that evaluation, DAS scoring and the local
teacher use: every prompt of a phase starts with the same tokens (chat template, system prompt,
few-shot examples), whose keys and values are computed once (:func:`prefix_cache`) and repeated
over each batch (:func:`repeat_cache`, or :func:`growing_cache` with ``prefix``).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Sequence

from transformers.cache_utils import DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """Return a DynamicLayer whose keys and values live in a preallocated buffer (``reserve`` extra positions)."""

    def __init__(self, reserve: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reserve = max(0, int(reserve))
        self._kbuf = self._vbuf = None
        self._length = 0

    def lazy_initialization(self, key_states, value_states) -> None:
        super().lazy_initialization(key_states, value_states)
        self._kbuf = self._vbuf = None
        self._length = 0

    def _adopt(self, keys, values) -> None:
        """Make ``keys`` / ``values`` (full tensors) the cache content, with ``reserve`` free positions after them."""
        import torch

        batch, heads, length, dim = keys.shape
        self._kbuf = torch.empty((batch, heads, length + self.reserve, dim), dtype=keys.dtype, device=keys.device)
        self._vbuf = torch.empty((batch, values.shape[1], length + self.reserve, values.shape[3]),
                                 dtype=values.dtype, device=values.device)
        self._kbuf[:, :, :length] = keys
        self._vbuf[:, :, :length] = values
        self._length = length
        self.keys, self.values = self._kbuf[:, :, :length], self._vbuf[:, :, :length]

    def update(self, key_states, value_states, *args: Any, **kwargs: Any):
        """Return the cached keys and values (views) after appending ``key_states`` / ``value_states``."""
        import torch

        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self._kbuf is None or self._length + new > self._kbuf.shape[-2] or self._kbuf.shape[0] != key_states.shape[0]:
            if self._kbuf is None or self._length == 0:
                keys, values = key_states, value_states
            else:  # out of room (more tokens than reserved): grow once, like torch.cat would
                keys = torch.cat([self.keys, key_states], dim=-2)
                values = torch.cat([self.values, value_states], dim=-2)
            self._adopt(keys, values)
            return self.keys, self.values
        end = self._length + new
        self._kbuf[:, :, self._length:end] = key_states
        self._vbuf[:, :, self._length:end] = value_states
        self._length = end
        self.keys, self.values = self._kbuf[:, :, :end], self._vbuf[:, :, :end]
        return self.keys, self.values

    def reset(self) -> None:
        self._kbuf = self._vbuf = None
        self._length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized and self._kbuf is not None:
            self._length = self.keys.shape[-2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._adopt(self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices) -> None:
        if self.get_seq_length() > 0:
            self._adopt(self.keys[indices, ...], self.values[indices, ...])

    def reorder_cache(self, beam_idx) -> None:
        if self.get_seq_length() > 0:
            self._adopt(self.keys.index_select(0, beam_idx.to(self.keys.device)),
                        self.values.index_select(0, beam_idx.to(self.values.device)))


def new_cache(model) -> DynamicCache:
    """Return an empty DynamicCache that follows ``model``'s per-layer settings (sliding-window layers)."""
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # pragma: no cover - older transformers
        return DynamicCache()


def cache_kwarg(module) -> str:
    """Return the name of ``module``'s forward key/value cache argument (``cache`` in recent transformers).

    A PEFT model is looked through to its base model, whose forward carries the real signature.
    """
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def common_prefix_length(sequences: Sequence[Sequence[int]], limit: int | None = None) -> int:
    """Return how many leading tokens every sequence shares (at most ``limit``; 0 for no sequence)."""
    if not sequences:
        return 0
    first = sequences[0]
    bound = min(len(s) for s in sequences) if limit is None else min(limit, min(len(s) for s in sequences))
    n = 0
    while n < bound and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def prefix_cache(module, prefix_ids: Sequence[int], device=None, **forward_kwargs: Any) -> DynamicCache:
    """Return the key/value cache of ``prefix_ids`` (a batch of one) after one forward of ``module``.

    ``module`` is a causal LM or its decoder stack; ``forward_kwargs`` go to its forward (e.g.
    ``logits_to_keep=1``, so that a causal LM does not compute logits nobody reads).
    """
    import torch

    if device is None:
        device = next(module.parameters()).device
    cache = new_cache(module)
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    with torch.inference_mode():
        module(input_ids=ids, use_cache=True, **forward_kwargs, **{cache_kwarg(module): cache})
    return cache


def repeat_cache(prefix: DynamicCache, batch: int) -> DynamicCache:
    """Return a copy of ``prefix`` (a cache of batch one) with every layer repeated ``batch`` times; ``prefix`` is untouched."""
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(batch)
    return cache


def growing_cache(model, reserve: int, prefix: DynamicCache | None = None, batch: int = 1) -> DynamicCache:
    """Return a DynamicCache of :class:`GrowingLayer` with room for ``reserve`` more positions per layer.

    With ``prefix`` (a cache of batch one), every layer starts with its keys and values repeated
    ``batch`` times (what ``deepcopy`` + ``batch_repeat_interleave`` give), else empty. A model
    with sliding-window (or other special) layers gets transformers' own DynamicCache instead,
    filled the same way.
    """
    cache = new_cache(model)
    if any(type(layer) is not DynamicLayer for layer in getattr(cache, "layers", [])):
        # Sliding-window or other special layers: keep transformers' behaviour.
        return repeat_cache(prefix, batch) if prefix is not None else cache
    n_layers = len(cache.layers) if getattr(cache, "layers", None) else len(prefix.layers) if prefix is not None else 0
    layers = [GrowingLayer(reserve=reserve) for _ in range(n_layers)]
    if prefix is not None:
        for layer, source in zip(layers, prefix.layers):
            if source.is_initialized and source.get_seq_length() > 0:
                layer.lazy_initialization(source.keys, source.values)
                layer._adopt(source.keys.repeat_interleave(batch, dim=0), source.values.repeat_interleave(batch, dim=0))
    cache.layers = layers
    return cache


__all__ = [
    "GrowingLayer",
    "cache_kwarg",
    "common_prefix_length",
    "growing_cache",
    "new_cache",
    "prefix_cache",
    "repeat_cache",
]
