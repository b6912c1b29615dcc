"""Greedy batched generation with the Hugging Face backend: the student's chat prompt, stop tokens, the shared chat-prefix cache."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from ..chat import generation_prompt
from ..prompts import LETTERS, answer_line_complete, build_messages

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    """Generation failed for some items (after retries); the message says how many and why.

    ``partial`` maps the position (in the list given to the backend) of each item that did
    succeed to its output, so that those are cached and only the failed ones are retried.
    """

    def __init__(self, message: str, partial: dict[int, dict[str, Any]] | None = None, first_error: str | None = None):
        super().__init__(message)
        self.partial = partial or {}
        self.first_error = first_error or message


def render_chat_prompt(tokenizer, row: dict[str, Any], system_prompt: str) -> str:
    """Return the exact text the student sees: training messages through its chat template, generation prompt added.

    The prompt SFT trained after and DAS scored with (:func:`dasd_utils.chat.generation_prompt`),
    including any assistant prefix the template writes (Qwen3's hybrid template: an empty
    ``<think>`` block, i.e. its non-thinking mode).
    """
    return generation_prompt(tokenizer, build_messages(row, system_prompt))


def _stop_token_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def progress_bar(total: int, desc: str, progress: bool = True):
    """Return a tqdm bar over ``total`` questions (``progress=False``: switched off)."""
    # Pass ``disable`` only to switch the bar off: an explicit value would override TQDM_DISABLE.
    return tqdm(total=total, desc=desc, unit="q", **({} if progress else {"disable": True}))


def model_device(model):
    """Return the device of the model's first parameter."""
    return next(model.parameters()).device


#: Below this many shared tokens, reusing the prefix's cache is not worth a copy per batch.
MIN_SHARED_PREFIX = 8


def chat_prefix_ids(tokenizer, system_prompt: str) -> list[int]:
    """Return the tokens every evaluation prompt starts with (chat template + system prompt + "Question:").

    Found as the common token prefix of two renderings that differ from their first question
    character on; it depends only on the tokenizer and the system prompt, never on the batch,
    so batched and one-by-one generation compute it identically.
    """
    from ..kvcache import common_prefix_length

    rendered = []
    for question in ("Alpha?", "Zulu?"):
        row = {"question": question, "choices": {"label": list(LETTERS), "text": list("vwxyz")}}
        rendered.append(tokenizer(render_chat_prompt(tokenizer, row, system_prompt), add_special_tokens=False)["input_ids"])
    return rendered[0][: common_prefix_length(rendered)]


def greedy_batch(
    model, input_ids, attention_mask, max_new_tokens: int, stop_ids: Sequence[int], prefix_cache=None,
    finished: Callable[[list[int]], bool] | None = None,
) -> list[list[int]]:
    """Return the greedy continuation (token ids, stop token included) of each row of a left-padded batch.

    Plain argmax decoding with a key/value cache, no logits processor (so a model's
    ``generation_config`` cannot slip in a repetition penalty or sampling). A row that emits a
    stop token leaves the batch at once (its cache rows are dropped), so finished answers stop
    costing compute while longer ones continue: on a CPU, where every row costs its share of the
    matrix products, this matters as much as batching itself.

    With ``prefix_cache`` (the cache of P shared tokens, batch of one), ``input_ids`` hold only
    what follows the prefix and ``attention_mask`` covers prefix + inputs (P + width columns);
    the padding then sits between the prefix and each row's own tokens, masked out.

    ``finished(tokens)``: a row also leaves the batch once it returns True for the row's tokens so
    far (the evaluation stops a row at its complete "Final Answer" line).
    """
    import torch

    from ..kvcache import cache_kwarg, new_cache, repeat_cache

    n_rows = input_ids.shape[0]
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    if max_new_tokens <= 0 or n_rows == 0:
        return generated
    stop = set(int(t) for t in stop_ids)
    device = input_ids.device
    cache = repeat_cache(prefix_cache, n_rows) if prefix_cache is not None else new_cache(model)
    cache_arg = {cache_kwarg(model): cache}
    # Positions count the real tokens before each one (prefix included), as without padding.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
    rows = list(range(n_rows))
    with torch.inference_mode():
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=True, logits_to_keep=1, **cache_arg,
        )
        next_pos = position_ids[:, -1:] + 1
        for step in range(max_new_tokens):
            tokens = out.logits[:, -1, :].argmax(dim=-1)
            keep = []
            for k, token in enumerate(tokens.tolist()):
                generated[rows[k]].append(token)
                if token not in stop and not (finished is not None and finished(generated[rows[k]])):
                    keep.append(k)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                tokens, attention_mask, next_pos = tokens[index], attention_mask[index], next_pos[index]
                rows = [rows[k] for k in keep]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
            out = model(
                input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=next_pos,
                use_cache=True, **cache_arg,
            )
            next_pos = next_pos + 1
    return generated


def generate_greedy(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "génération",
    progress: bool = True,
    prefix_ids: Sequence[int] | None = None,
    stop_at_answer: bool = False,
) -> list[dict[str, Any]]:
    """Return one ``{"response", "token_ids", "n_new_tokens", "finish_reason"}`` per prompt, in input order.

    Greedy decoding (:func:`greedy_batch`), batches of prompts of similar length (sorted longest
    first, so that an out-of-memory error shows up in the first batch), left padding so that
    every sequence's last prompt token sits at the end of the batch. ``prompts`` are already
    chat-formatted strings; they are tokenized without adding special tokens again. Generation
    stops at the tokenizer's or the model's end-of-sequence tokens (e.g. ``<|im_end|>``).

    ``prefix_ids`` (see :func:`chat_prefix_ids`): tokens every prompt starts with, run once and
    reused by every batch; about 60% of a demo prompt is the system prompt, so this cuts prompt
    processing, the dominant cost on a CPU, by as much. Ignored when some prompt does not start
    with them.

    ``stop_at_answer``: a row also stops at the line break that completes its "Final Answer" line
    (:func:`dasd_utils.prompts.answer_line_complete`), ``finish_reason`` ``"answer"``: a small
    student often goes on after its answer, and those tokens cost a decoding step each without
    changing the answer the format asks for.
    """
    import torch

    from ..kvcache import prefix_cache as run_prefix

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    stop_ids = _stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = model_device(model)
    prefix = list(prefix_ids or [])
    if len(prefix) < MIN_SHARED_PREFIX or not all(len(e) > len(prefix) and e[: len(prefix)] == prefix for e in encoded):
        prefix = []
    prefix_cache = run_prefix(model, prefix, device, logits_to_keep=1) if prefix and encoded else None
    results: list[dict[str, Any] | None] = [None] * len(prompts)

    def answered(tokens: list[int]) -> bool:
        return answer_line_complete(tokenizer.decode(tokens, skip_special_tokens=True))

    bar = progress_bar(len(prompts), desc, progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            own = [encoded[i][len(prefix) :] for i in idx]
            width = max(len(ids) for ids in own)
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(idx), len(prefix) + width), dtype=torch.long)
            attention[:, : len(prefix)] = 1
            for row, ids in enumerate(own):
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, len(prefix) + width - len(ids) :] = 1
            outputs = greedy_batch(
                model, input_ids.to(device), attention.to(device), max_new_tokens, stop_ids, prefix_cache,
                finished=answered if stop_at_answer else None,
            )
            for row, i in enumerate(idx):
                tokens = outputs[row]
                stopped = bool(tokens) and tokens[-1] in stop_ids
                kept = tokens[:-1] if stopped else tokens
                response = tokenizer.decode(kept, skip_special_tokens=True)
                reason = "stop" if stopped else ("answer" if stop_at_answer and answer_line_complete(response) else "length")
                results[i] = {"response": response, "token_ids": tokens, "n_new_tokens": len(tokens), "finish_reason": reason}
            bar.update(len(idx))
    finally:
        bar.close()
    return results  # type: ignore[return-value]


__all__ = [
    "chat_prefix_ids",
    "EvaluationError",
    "generate_greedy",
    "greedy_batch",
    "MIN_SHARED_PREFIX",
    "render_chat_prompt",
]
