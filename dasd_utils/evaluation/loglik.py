"""Log-likelihood multiple choice, lm-evaluation-harness's ``commonsense_qa`` task: the prompt, the token split, batched scoring."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..prompts import LETTERS
from .generation import model_device, progress_bar

#: Continuations scored by the log-likelihood metric (lm-eval-harness: target delimiter " " + letter).
LOGLIK_CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)
#: How the metric is computed, as written in ``metrics.json`` and part of each item's cache key.
LOGLIK_METHOD = (
    "lm-evaluation-harness commonsense_qa (zero-shot, no chat template): "
    "'Question: <q>\\nA. <a>\\nB. <b>\\nC. <c>\\nD. <d>\\nE. <e>\\nAnswer:' then argmax of "
    "log P(' A'..' E')"
)


class LoglikUnsupported(RuntimeError):
    """The backend cannot return the prompt log-probabilities the log-likelihood metric needs."""


def loglik_context(row: dict[str, Any]) -> str:
    """Return lm-evaluation-harness's commonsense_qa prompt for a question (ends with ``Answer:``)."""
    texts = row["choices"]["text"]
    lines = [f"Question: {row['question'].strip()}"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, texts)]
    lines.append("Answer:")
    return "\n".join(lines)


def continuation_token_ids(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Return ``(context_ids, continuation_ids)`` split as lm-evaluation-harness does.

    The whole string is tokenized once; the context part is its first ``len(tokenize(context))``
    tokens and the continuation is the rest, so a merge across the boundary is scored as the
    harness scores it. No special tokens are added (the harness's default for causal models
    without ``add_bos_token``).
    """
    n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    if len(whole) <= n_context:
        raise ValueError(f"continuation {continuation!r} adds no token after the context")
    return whole[:n_context], whole[n_context:]


def _loglik_sequences(tokenizer, rows: Sequence[dict[str, Any]]) -> list[tuple[int, list[int], list[tuple[int, list[int], int]]]]:
    """Return the forward passes needed: ``(row, input_ids, [(letter, continuation_ids, start), ...])``.

    When the five continuations are single tokens after the same context tokens (the usual case:
    " A" .. " E" are one token each), one pass over the context scores all five from its last
    position, five times cheaper than five passes; otherwise each letter gets its own pass.
    """
    sequences = []
    for r, row in enumerate(rows):
        context = loglik_context(row)
        pairs = [continuation_token_ids(tokenizer, context, cont) for cont in LOGLIK_CONTINUATIONS]
        first_ctx = pairs[0][0]
        if all(len(cont) == 1 and ctx == first_ctx for ctx, cont in pairs):
            sequences.append((r, list(first_ctx), [(c, cont, len(first_ctx)) for c, (_, cont) in enumerate(pairs)]))
        else:
            for c, (ctx, cont) in enumerate(pairs):
                sequences.append((r, list(ctx) + list(cont), [(c, cont, len(ctx))]))
    return sequences


def loglik_scores(
    model, tokenizer, rows: Sequence[dict[str, Any]], batch_size: int = 16, progress: bool = True
) -> list[list[float]]:
    """Return, per question, the total log-probability of each continuation ``" A"`` ... ``" E"``.

    Sequences are left-padded and batched by length; only the logits of the last positions are
    kept (``logits_to_keep``) so that a 150k-token vocabulary never materializes over the whole
    prompt.
    """
    import torch

    sequences = _loglik_sequences(tokenizer, rows)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][1]))
    scores = [[math.nan] * len(LETTERS) for _ in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model_device(model)
    bar = progress_bar(len(rows), "log-vraisemblance", progress)
    try:
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            width = max(len(sequences[i][1]) for i in idx)
            # Keep the logits from the earliest position that predicts a continuation token.
            keep = max(len(ids) - s + 1 for i in idx for (_, ids, targets) in [sequences[i]] for (_, _, s) in targets)
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids = sequences[i][1]
                input_ids[b, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[b, width - len(ids) :] = 1
            # Positions count from each sequence's first real token, as without padding.
            position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    position_ids=position_ids.to(device),
                    logits_to_keep=keep,
                ).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)  # (batch, keep, vocab)
            finished = set()
            for b, i in enumerate(idx):
                r, ids, targets = sequences[i]
                pad = width - len(ids)
                for c, cont, s in targets:
                    total = 0.0
                    for j, token in enumerate(cont):
                        # logits at position p predict the token at p + 1
                        k = pad + s - 1 + j - (width - keep)
                        total += float(logprobs[b, k, token])
                    scores[r][c] = total
                if not any(math.isnan(v) for v in scores[r]):
                    finished.add(r)
            bar.update(len(finished))
    finally:
        bar.close()
    return scores


def loglik_record(row: dict[str, Any], scores: Sequence[float], **extra: Any) -> dict[str, Any]:
    """Return the log-likelihood record of one question: the five scores and the argmax letter."""
    best = max(range(len(LETTERS)), key=lambda i: scores[i])
    record = {
        "question_id": row["id"],
        "index": row.get("index"),
        "logprobs": {letter: float(s) for letter, s in zip(LETTERS, scores)},
        "predicted": LETTERS[best],
        "gold": row["answerKey"],
        "correct": LETTERS[best] == row["answerKey"],
    }
    record.update(extra)
    return record


__all__ = [
    "continuation_token_ids",
    "loglik_context",
    "LOGLIK_CONTINUATIONS",
    "LOGLIK_METHOD",
    "loglik_record",
    "loglik_scores",
    "LoglikUnsupported",
]
