"""Batched teacher forcing: the student's log-probability of every response token, in one pass.

The student reads the same context as in SFT and evaluation: the system prompt and the question
through its chat template with the generation prompt and any assistant prefix the template writes
(:func:`chat_prompt`, :mod:`dasd_utils.chat`), then the teacher's response. The prompt and the response are tokenized **separately** and concatenated,
so that no token ever spans the template/response boundary (a joint tokenization could merge,
say, the template's final newline with a response starting with a newline); the response's
token offsets are then offsets into ``content`` itself.

:func:`batched_token_logprobs` is the fast path:

* examples are sorted by length (longest first, so an out-of-memory error shows up at once) and
  cut into batches of ``batch_size``; each batch is right-padded with an attention mask;
* the chat prefix shared by every example (template + system prompt, about 100 tokens for the
  course's prompt) is run once; its key/value cache is repeated over each batch, which then runs
  only the rest of the prompt and the response (``reuse_prefix``; skipped when the shared prefix
  is shorter than ``MIN_SHARED_PREFIX`` tokens, e.g. the GPU benchmark's random sequences);
* the decoder runs once per batch and returns hidden states; only the positions that predict a
  response token go through the output projection, ``chunk_tokens`` rows at a time, so the
  largest logits tensor is ``chunk_tokens x vocab`` in fp32 instead of ``batch x length x vocab``;
* the model runs in its own dtype (bf16 / fp16 on GPU, fp32 on CPU; see
  :func:`dasd_utils.models.pick_dtype`) and the log-softmax is computed in fp32.

:func:`reference_token_logprobs` is the straightforward per-example version (full logits,
full log-softmax) the tests compare against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .chat import generation_prompt

log = logging.getLogger(__name__)

#: A shared prompt prefix shorter than this is not worth a cache (it would cost a copy per batch).
MIN_SHARED_PREFIX = 16


@dataclass
class EncodedExample:
    """Token ids of one example and the character offsets of its response tokens."""

    prompt_ids: list[int]
    response_ids: list[int]
    #: [n_response_tokens, 2] character offsets into the response text.
    offsets: np.ndarray

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def chat_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """Return the chat-template text of ``messages``, the generation prompt and the assistant prefix.

    The same prompt as SFT and evaluation (:func:`dasd_utils.chat.generation_prompt`): with
    Qwen3's hybrid template it ends with the empty ``<think>`` block the student was trained after.
    """
    return generation_prompt(tokenizer, messages)


def encode_for_scoring(
    tokenizer, messages_list: Sequence[Sequence[dict[str, str]]], contents: Sequence[str]
) -> list[EncodedExample]:
    """Return prompt ids, response ids and response offsets for each (messages, content) pair.

    The prompt is the chat template with the generation prompt; it is tokenized as it would be
    for generation (the template's own special tokens, no extra BOS). The response is tokenized
    without special tokens, with offsets into the response text, in one batched call.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("DAS scoring needs a fast tokenizer (offset mappings); got a slow one")
    if len(messages_list) != len(contents):
        raise ValueError(f"{len(messages_list)} message lists for {len(contents)} responses")
    prompts = [chat_prompt(tokenizer, m) for m in messages_list]
    prompt_enc = tokenizer(prompts, add_special_tokens=False)
    response_enc = tokenizer(list(contents), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for p_ids, r_ids, offsets in zip(prompt_enc["input_ids"], response_enc["input_ids"], response_enc["offset_mapping"]):
        out.append(
            EncodedExample(list(p_ids), list(r_ids), np.asarray(offsets, dtype=np.int64).reshape(-1, 2))
        )
    return out


def _decoder_and_head(model):
    """Return (the model's decoder stack, its output projection, optional final logit softcap)."""
    head = model.get_output_embeddings()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        decoder = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if head is None or decoder is None:
        raise TypeError(f"{type(model).__name__} does not expose a decoder and an output projection")
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return decoder, head, softcap


def _head_logprobs(head, hidden, targets, chunk_tokens: int, softcap: float | None):
    """Return log p(target) for rows of ``hidden`` [N, H], computing logits ``chunk_tokens`` rows at a time."""
    import torch

    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk_tokens):
        logits = head(hidden[s : s + chunk_tokens]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        tgt = targets[s : s + chunk_tokens]
        out[s : s + chunk_tokens] = logits.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
        del logits
    return out


def shared_prefix_length(examples: Sequence[EncodedExample]) -> int:
    """Return the number of leading prompt tokens shared by every example, leaving each >= 1 prompt token of its own."""
    from .kvcache import common_prefix_length

    if not examples:
        return 0
    return common_prefix_length([ex.prompt_ids for ex in examples], limit=min(len(ex.prompt_ids) for ex in examples) - 1)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Return index batches of at most ``batch_size``, longest examples first."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batched_token_logprobs(
    model,
    examples: Sequence[EncodedExample],
    *,
    batch_size: int = 8,
    chunk_tokens: int = 1024,
    pad_token_id: int | None = None,
    progress: bool = True,
    desc: str = "Scoring (student)",
    reuse_prefix: bool = True,
) -> list[np.ndarray]:
    """Return, per example, the float32 log-probabilities of its response tokens under teacher forcing."""
    import torch
    from tqdm.auto import tqdm

    from .kvcache import cache_kwarg, prefix_cache as run_prefix, repeat_cache

    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be >= 1")
    device = next(model.parameters()).device
    decoder, head, softcap = _decoder_and_head(model)
    pad = pad_token_id if pad_token_id is not None else (getattr(model.config, "pad_token_id", None) or 0)
    results: list[np.ndarray | None] = [None] * len(examples)
    for i, ex in enumerate(examples):
        if not ex.prompt_ids:
            raise ValueError(f"example #{i} has an empty prompt: the first response token would have no context")
        if not ex.response_ids:
            results[i] = np.zeros(0, dtype=np.float32)
    todo = [i for i, ex in enumerate(examples) if ex.response_ids]
    batches = length_sorted_batches([examples[i].length for i in todo], batch_size)
    with torch.inference_mode():
        prefix = shared_prefix_length([examples[i] for i in todo]) if reuse_prefix else 0
        prefix_cache = None
        if prefix >= MIN_SHARED_PREFIX:
            try:
                prefix_cache = run_prefix(decoder, examples[todo[0]].prompt_ids[:prefix], device)
            except (TypeError, AttributeError, ValueError) as exc:  # an unusual cache class: score without it
                log.warning("shared-prefix cache unavailable (%s); scoring full sequences", exc)
        if prefix_cache is None:
            prefix = 0
        cache_arg = cache_kwarg(decoder)
        for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            items = [examples[todo[j]] for j in batch]
            width = max(ex.length for ex in items) - prefix
            ids = torch.full((len(items), width), pad, dtype=torch.long)
            mask = torch.zeros((len(items), prefix + width), dtype=torch.long)
            mask[:, :prefix] = 1
            rows, cols, targets = [], [], []
            for r, ex in enumerate(items):
                seq = ex.prompt_ids[prefix:] + ex.response_ids
                ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[r, prefix : prefix + len(seq)] = 1
                p, n = len(ex.prompt_ids) - prefix, len(ex.response_ids)
                # The token at position t is predicted by the hidden state at t - 1.
                cols.append(torch.arange(p - 1, p - 1 + n))
                rows.append(torch.full((n,), r, dtype=torch.long))
                targets.append(torch.tensor(ex.response_ids, dtype=torch.long))
            ids, mask = ids.to(device), mask.to(device)
            if prefix:
                cache = repeat_cache(prefix_cache, len(items))
                hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=True, **{cache_arg: cache}).last_hidden_state
                del cache
            else:
                hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            rows_t, cols_t = torch.cat(rows).to(device), torch.cat(cols).to(device)
            selected = hidden[rows_t, cols_t]
            del hidden
            logprobs = _head_logprobs(head, selected, torch.cat(targets).to(device), chunk_tokens, softcap)
            logprobs = logprobs.cpu().numpy()
            offset = 0
            for j, ex in zip(batch, items):
                n = len(ex.response_ids)
                results[todo[j]] = logprobs[offset : offset + n].copy()
                offset += n
    return results  # type: ignore[return-value]


def reference_token_logprobs(model, example: EncodedExample) -> np.ndarray:
    """Return the response-token log-probabilities from one unpadded forward and a full log-softmax."""
    import torch

    device = next(model.parameters()).device
    seq = torch.tensor([example.prompt_ids + example.response_ids], dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(input_ids=seq, use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    p, n = len(example.prompt_ids), len(example.response_ids)
    positions = torch.arange(p - 1, p - 1 + n, device=device)
    targets = torch.tensor(example.response_ids, dtype=torch.long, device=device)
    return logprobs[positions, targets].cpu().numpy().astype(np.float32)


def response_token_spans(example: EncodedExample) -> tuple[np.ndarray, np.ndarray]:
    """Return (starts, ends) character offsets of the response tokens."""
    if example.offsets.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return example.offsets[:, 0].copy(), example.offsets[:, 1].copy()


def model_summary(model) -> dict[str, Any]:
    """Return the model's class, dtype and device (for manifests)."""
    param = next(model.parameters())
    return {"class": type(model).__name__, "dtype": str(param.dtype).replace("torch.", ""), "device": str(param.device)}


__all__ = [
    "EncodedExample",
    "batched_token_logprobs",
    "chat_prompt",
    "encode_for_scoring",
    "length_sorted_batches",
    "model_summary",
    "reference_token_logprobs",
    "response_token_spans",
    "shared_prefix_length",
]
