"""SFT examples: loading and validating ``das/stage{N}_sft.jsonl``, tokenization with the loss mask, the dataset."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..chat import end_of_turn_ids, render_turn
from ..data import read_jsonl
from ..layout import MissingPhaseOutput

logger = logging.getLogger(__package__)


def load_sft_examples(path: str | os.PathLike, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Return the records of an SFT-ready JSONL file, validated (``messages`` = system, user, assistant).

    Raises FileNotFoundError when the file is missing and ValueError naming the line for a
    malformed record or (when ``system_prompt`` is given) a system prompt that differs from it.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingPhaseOutput(path, "das")
    records = read_jsonl(path)
    for lineno, record in enumerate(records, 1):
        where = f"{path}, record {lineno}"
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or len(messages) != 3:
            raise ValueError(f"{where}: 'messages' must be a list [system, user, assistant]")
        roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
        if roles != ["system", "user", "assistant"]:
            raise ValueError(f"{where}: message roles are {roles}, expected ['system', 'user', 'assistant']")
        for m in messages:
            if not isinstance(m.get("content"), str) or not m["content"].strip():
                raise ValueError(f"{where}: the {m['role']} message has no text")
        masked = record.get("mask_prefix_chars", 0)
        if not isinstance(masked, int) or isinstance(masked, bool) or not 0 <= masked < len(messages[2]["content"]):
            raise ValueError(f"{where}: 'mask_prefix_chars' must be an integer from 0 to the answer's length - 1, got {masked!r}")
        if system_prompt is not None and messages[0]["content"] != system_prompt:
            raise ValueError(
                f"{where}: its system prompt differs from cfg.system_prompt. Training must use the prompt "
                "that generation and evaluation use: re-run the 'generate' and 'das' phases with this "
                "system prompt, or set system_prompt back to the one the data was generated with."
            )
    return records


def tokenize_sft_example(tokenizer, messages: Sequence[Mapping[str, str]], cutoff_len: int | None = None,
                         unsupervised_chars: int = 0) -> dict[str, Any]:
    """Return ``input_ids`` and ``labels`` for ``[system, user, assistant]``: loss on the response and end-of-turn only.

    ``unsupervised_chars`` > 0 leaves the response's first characters out of the loss (the
    masked variant of mixed-policy distillation: the student's own prefix is read, not learned).
    That prefix and the rest are then tokenized separately, so no token spans the boundary.

    The example is exactly what the model reads and writes at inference (see
    :mod:`dasd_utils.chat`): ``prompt`` (the chat template with the generation prompt, plus any
    text the template writes before the assistant's text, such as Qwen3's empty ``<think>``
    block; never supervised), the response, one end-of-turn token (both supervised), and what
    the template writes after it (not supervised). The prompt and the response are tokenized
    separately, as DAS scoring and evaluation tokenize them, so no token spans the boundary.

    Also returns ``prompt_len``, ``response_end`` (index after the end-of-turn token),
    ``truncated`` (cut at ``cutoff_len``), ``prompt_mismatch`` (the template writes a past
    assistant turn's header shorter than its generation prompt; the generation prompt is used),
    ``response_rewritten`` (the template's own rendering alters the response; the response as
    given is used) and ``assistant_prefix``. Raises :class:`dasd_utils.chat.ChatTemplateError`
    (a ValueError naming the template) when no such rendering exists.
    """
    turn = render_turn(tokenizer, messages)
    layout = turn.layout

    def encode(text: str) -> list[int]:
        # The rendered text already holds the template's special tokens; adding BOS/EOS again would
        # give the model a context it never sees at inference.
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    if not 0 <= unsupervised_chars < max(1, len(turn.response)):
        raise ValueError(f"unsupervised_chars={unsupervised_chars} is outside the response (length {len(turn.response)})")
    prompt_ids, tail_ids = encode(layout.prompt), encode(layout.tail)
    read_only = encode(turn.response[:unsupervised_chars])
    response_ids = read_only + encode(turn.response[unsupervised_chars:])
    stops = end_of_turn_ids(tokenizer)
    if any(t in stops for t in response_ids):
        raise ValueError("the assistant's text holds an end-of-turn token: the model would learn to stop inside its answer")
    full_ids = prompt_ids + response_ids + [layout.end_of_turn_id] + tail_ids
    prompt_len = len(prompt_ids)
    response_end = prompt_len + len(response_ids) + 1
    supervised_from = prompt_len + len(read_only)
    labels = [-100] * supervised_from + full_ids[supervised_from:response_end] + [-100] * len(tail_ids)
    truncated = cutoff_len is not None and len(full_ids) > cutoff_len
    if truncated:
        full_ids, labels = full_ids[:cutoff_len], labels[:cutoff_len]
    return {
        "input_ids": full_ids,
        "labels": labels,
        "prompt_len": prompt_len,
        "response_end": response_end,
        "truncated": truncated,
        "prompt_mismatch": layout.header_mismatch,
        "response_rewritten": turn.response_rewritten,
        "assistant_prefix": layout.assistant_prefix,
    }


@dataclass
class DatasetStats:
    """Counts describing a tokenized SFT dataset (written to the manifest)."""

    n_records: int = 0
    n_examples: int = 0
    n_truncated: int = 0
    n_dropped_no_response: int = 0
    n_prompt_mismatch: int = 0
    n_response_rewritten: int = 0
    #: Examples whose answer starts with text left out of the loss (``mask_prefix_chars``).
    n_prefix_masked: int = 0
    #: Text the chat template writes before the assistant's text (part of the prompt, not supervised).
    assistant_prefix: str = ""
    n_tokens: int = 0
    n_supervised_tokens: int = 0
    max_len: int = 0
    mean_len: float = 0.0


def build_sft_dataset(records: Iterable[Mapping[str, Any]], tokenizer, cutoff_len: int | None):
    """Return ``(datasets.Dataset with input_ids/labels, DatasetStats)`` for SFT records.

    Examples cut by ``cutoff_len`` are kept (their end-of-turn token is lost) and counted; examples
    left without any supervised token (prompt alone longer than ``cutoff_len``) are dropped, counted
    and announced. Raises ValueError when nothing is left to train on.
    """
    from datasets import Dataset

    rows, stats = [], DatasetStats()
    for record in records:
        stats.n_records += 1
        masked = int(record.get("mask_prefix_chars", 0) or 0)
        tok = tokenize_sft_example(tokenizer, record["messages"], cutoff_len, unsupervised_chars=masked)
        stats.n_prefix_masked += int(masked > 0)
        n_supervised = sum(1 for label in tok["labels"] if label != -100)
        stats.n_truncated += int(tok["truncated"])
        stats.n_prompt_mismatch += int(tok["prompt_mismatch"])
        stats.n_response_rewritten += int(tok["response_rewritten"])
        stats.assistant_prefix = tok["assistant_prefix"]
        if n_supervised == 0:
            stats.n_dropped_no_response += 1
            continue
        rows.append({"input_ids": tok["input_ids"], "labels": tok["labels"]})
        stats.n_tokens += len(tok["input_ids"])
        stats.n_supervised_tokens += n_supervised
        stats.max_len = max(stats.max_len, len(tok["input_ids"]))
    stats.n_examples = len(rows)
    stats.mean_len = round(stats.n_tokens / len(rows), 1) if rows else 0.0
    if stats.n_truncated:
        logger.warning(
            "%d of %d SFT examples are longer than sft.cutoff_len=%s tokens and were truncated: the model does "
            "not see their end (raise cutoff_len, or keep the quality filter's check_student_context on)",
            stats.n_truncated, stats.n_records, cutoff_len,
        )
    if stats.n_dropped_no_response:
        logger.warning(
            "%d SFT examples dropped: their prompt alone fills sft.cutoff_len=%s tokens", stats.n_dropped_no_response, cutoff_len
        )
    if stats.n_prompt_mismatch:
        logger.warning(
            "%d SFT examples: the chat template writes a past assistant turn's header differently from its "
            "generation prompt; training reads the generation prompt, as generation does",
            stats.n_prompt_mismatch,
        )
    if stats.n_response_rewritten:
        logger.warning(
            "%d SFT examples: the chat template rewrites the assistant's text when it renders a whole conversation "
            "(e.g. strips leading newlines or a <think> block); training uses the text as DAS scored it",
            stats.n_response_rewritten,
        )
    if not rows:
        raise ValueError(f"no SFT example left to train on ({stats.n_records} records read)")
    return Dataset.from_list(rows), stats

