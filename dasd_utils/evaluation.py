"""Phase 7: evaluate the base student and its LoRA adapters on the evaluation questions.

Two metrics per model, on the same items:

* **generative accuracy** (the course's metric): the model sees the training context (system
  prompt + question through the student's chat template, generation prompt added), answers by
  greedy decoding, and the letter is read with :func:`dasd_utils.prompts.extract_answer`.
  ``format_ok`` says whether the response ends with one clear ``Final Answer: X``.
* **log-likelihood multiple-choice accuracy**, lm-evaluation-harness's ``commonsense_qa`` task:
  no chat template, no system prompt, zero-shot; the raw text below is scored and the letter
  whose continuation (``" A"`` ... ``" E"``) has the highest total log-probability is the
  prediction (the harness's ``acc``). No generation is needed, so it is fast::

      Question: Who is likely to be excited about a crab?
      A. fish market
      B. pet shop
      C. fishmongers
      D. intertidal zone
      E. obesity
      Answer:

Accuracies carry Wilson 95% intervals; every pair of models is compared on the same items with
McNemar's exact test (two-sided binomial on the items where exactly one of the two is right),
with Holm-adjusted p-values across the pairs. See :mod:`dasd_utils.stats`.

Backends: ``hf`` (default) loads the base weights once and switches PEFT adapters in place
(``disable_adapter`` for the base model); decoding is a plain greedy loop with a key/value cache
in which finished answers leave the batch and the chat prefix shared by every prompt (template +
system prompt) is computed once (:func:`generate_greedy`). ``openai`` sends the same chat
messages to any OpenAI-compatible server at temperature 0, e.g. on a GPU::

    vllm serve Qwen/Qwen3-4B-Instruct-2507 --enable-lora --max-lora-rank 16 \
        --lora-modules stage1=runs/<run>/sft/stage1 stage2=runs/<run>/sft/stage2
    python -m dasd_utils evaluate --profile colab --run-dir runs/<run> \
        --set eval.backend=openai --set eval.base_url=http://localhost:8000/v1

(the base model is requested under ``student.model``, each adapter under its name; override with
``eval.served_models``). The server applies the chat template itself, so it must serve the
training tokenizer; the log-likelihood metric needs ``/completions`` with ``echo`` and
``logprobs`` (vLLM has them) and is reported as unavailable otherwise, never guessed.

Outputs (``runs/<run>/eval/``, see docs/artifacts.md): ``predictions_<model>.jsonl``,
``loglik_<model>.jsonl``, ``metrics.json``, ``qualitative.json``, and three figures. A re-run
reuses every prediction whose inputs (model and adapter fingerprints, prompt, generation
settings) are unchanged, so it gives the same numbers without generating again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm.auto import tqdm

from .chat import generation_prompt
from .config import Config, phase_settings
from .data import load_run_questions, read_jsonl, write_jsonl
from .hashing import adapter_sha256
from .prompts import LETTERS, build_messages, extract_answer, has_final_answer_format
from .stats import holm_adjust, mcnemar_exact, paired_counts, wilson_interval
from .summaries import EvalMetrics, write_summary
from .timing import timed_phase

log = logging.getLogger(__name__)

#: Continuations scored by the log-likelihood metric (lm-eval-harness: target delimiter " " + letter).
LOGLIK_CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)
#: Names with a fixed meaning in ``eval.models``; anything else is a path to a PEFT adapter.
STAGE_ADAPTERS = {"stage1": "stage1", "stage2": "stage2"}
LOGLIK_METHOD = (
    "lm-evaluation-harness commonsense_qa (zero-shot, no chat template): "
    "'Question: <q>\\nA. <a>\\nB. <b>\\nC. <c>\\nD. <d>\\nE. <e>\\nAnswer:' then argmax of "
    "log P(' A'..' E')"
)


class AdapterMissing(FileNotFoundError):
    """An adapter requested in ``eval.models`` is absent; the message says which phase writes it."""


class EvaluationError(RuntimeError):
    """Generation failed for some items (after retries); the message says how many and why.

    ``partial`` maps the position (in the list given to the backend) of each item that did
    succeed to its output, so that those are cached and only the failed ones are retried.
    """

    def __init__(self, message: str, partial: dict[int, dict[str, Any]] | None = None, first_error: str | None = None):
        super().__init__(message)
        self.partial = partial or {}
        self.first_error = first_error or message


class LoglikUnsupported(RuntimeError):
    """The backend cannot return the prompt log-probabilities the log-likelihood metric needs."""


# =============================================================================== model specs
@dataclass(frozen=True)
class EvalModel:
    """One model to evaluate: the base student (``adapter is None``) or the base plus a PEFT adapter."""

    name: str
    adapter: Path | None


def eval_dir(cfg: Config) -> Path:
    """Return ``<run_dir>/eval`` (created if needed)."""
    path = cfg.run_dir / "eval"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def predictions_path(cfg: Config, name: str) -> Path:
    """Return the path of ``predictions_<model>.jsonl``."""
    return eval_dir(cfg) / f"predictions_{_safe_name(name)}.jsonl"


def loglik_path(cfg: Config, name: str) -> Path:
    """Return the path of ``loglik_<model>.jsonl``."""
    return eval_dir(cfg) / f"loglik_{_safe_name(name)}.jsonl"


def _is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and any(
        (path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")
    )


def _display_path(cfg: Config, path: Path | None) -> str | None:
    """Return ``path`` relative to the run directory when it lies inside it (stable across run-dir spellings)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(cfg.run_dir.resolve()))
    except ValueError:
        return str(path)


def resolve_eval_model(cfg: Config, name: str) -> EvalModel:
    """Return the :class:`EvalModel` for one entry of ``eval.models`` (raises AdapterMissing if absent).

    With the ``hf`` backend the adapter must be on disk. With the ``openai`` backend the server
    holds the adapters (``--lora-modules``), so a stage adapter absent locally is accepted; it is
    then served by name and its cache key cannot include the adapter's fingerprint.
    """
    if name == "base":
        return EvalModel("base", None)
    if name in STAGE_ADAPTERS:
        path = cfg.run_dir / "sft" / STAGE_ADAPTERS[name]
        if not _is_adapter_dir(path) and cfg.eval.backend != "openai":
            raise AdapterMissing(
                f"eval.models asks for '{name}' but its LoRA adapter is missing: {path} has no "
                f"adapter_config.json + adapter_model.safetensors. Run the 'train' phase first "
                f"(python -m dasd_utils train --profile {cfg.profile} --run-dir {cfg.run_dir}, or the SFT notebook), "
                f"or remove '{name}' from eval.models."
            )
        return EvalModel(name, path)
    path = Path(name).expanduser()
    if not _is_adapter_dir(path) and cfg.eval.backend != "openai":
        raise AdapterMissing(
            f"eval.models entry {name!r} is neither 'base', 'stage1', 'stage2' nor a directory holding a "
            "PEFT adapter (adapter_config.json + adapter_model.safetensors)"
        )
    return EvalModel(_safe_name(path.resolve().name), path)


def resolve_eval_models(cfg: Config) -> list[EvalModel]:
    """Return every model of ``eval.models``, checking all adapters exist before anything is loaded."""
    if not cfg.eval.models:
        raise ValueError("eval.models is empty: list at least one of base, stage1, stage2 or an adapter path")
    specs = [resolve_eval_model(cfg, name) for name in cfg.eval.models]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"eval.models gives the same name twice: {duplicates} (adapters are named by their folder)")
    return specs


# =============================================================================== fingerprints
def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def adapter_fingerprint(path: Path) -> str:
    """Return a sha256 over an adapter's config and weights (see :func:`hashing.adapter_sha256`)."""
    return adapter_sha256(path)


def _weights_fingerprint(folder: Path) -> str:
    """Return a cheap fingerprint of a model folder: config.json, and each weight file's name, size, head and tail.

    Hashing 8 GB of base weights on every run would cost more than it protects; a retrained or
    re-converted checkpoint changes the size or the first/last bytes of its files.
    """
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    weights = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".gguf")
    )
    for p in weights:
        size = p.stat().st_size
        digest.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as fh:
            digest.update(fh.read(1 << 16))
            if size > 1 << 17:
                fh.seek(-(1 << 16), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


def base_fingerprint(cfg: Config) -> str:
    """Return a fingerprint of the base student: local folder contents, or the Hub id and cached revision."""
    from .models import resolve_model

    resolved = resolve_model(cfg.student.model, cfg)
    path = Path(resolved).expanduser()
    if path.is_dir():
        return _hash_json({"model": cfg.student.model, "files": _weights_fingerprint(path)})
    revision = None
    try:  # the snapshot folder of the Hub cache is named after the commit: no network needed
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved, "config.json")
        if isinstance(cached, str):
            revision = Path(cached).parent.name
    except Exception:  # pragma: no cover - huggingface_hub is always installed with transformers
        revision = None
    return _hash_json({"model": resolved, "revision": revision})


# =============================================================================== prompts
def loglik_context(row: dict[str, Any]) -> str:
    """Return lm-evaluation-harness's commonsense_qa prompt for a question (ends with ``Answer:``)."""
    texts = row["choices"]["text"]
    lines = [f"Question: {row['question'].strip()}"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, texts)]
    lines.append("Answer:")
    return "\n".join(lines)


def render_chat_prompt(tokenizer, row: dict[str, Any], system_prompt: str) -> str:
    """Return the exact text the student sees: training messages through its chat template, generation prompt added.

    The prompt SFT trained after and DAS scored with (:func:`dasd_utils.chat.generation_prompt`),
    including any assistant prefix the template writes (Qwen3's hybrid template: an empty
    ``<think>`` block, i.e. its non-thinking mode).
    """
    return generation_prompt(tokenizer, build_messages(row, system_prompt))


# =============================================================================== HF generation
def _stop_token_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def _bar(total: int, desc: str, progress: bool = True):
    # Pass ``disable`` only to switch the bar off: an explicit value would override TQDM_DISABLE.
    return tqdm(total=total, desc=desc, unit="q", **({} if progress else {"disable": True}))


def _model_device(model):
    return next(model.parameters()).device


def _new_cache(model):
    from transformers import DynamicCache

    try:  # a config lets the cache follow per-layer settings (sliding-window layers)
        return DynamicCache(config=model.config)
    except TypeError:  # pragma: no cover - older transformers
        return DynamicCache()


def _cache_kwarg(model) -> str:
    """Return the name of the forward's key/value cache argument (``cache`` in recent transformers)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


#: Below this many shared tokens, reusing the prefix's cache is not worth a copy per batch.
MIN_SHARED_PREFIX = 8


def chat_prefix_ids(tokenizer, system_prompt: str) -> list[int]:
    """Return the tokens every evaluation prompt starts with (chat template + system prompt + "Question:").

    Found as the common token prefix of two renderings that differ from their first question
    character on; it depends only on the tokenizer and the system prompt, never on the batch,
    so batched and one-by-one generation compute it identically.
    """
    rendered = []
    for question in ("Alpha?", "Zulu?"):
        row = {"question": question, "choices": {"label": list(LETTERS), "text": list("vwxyz")}}
        rendered.append(tokenizer(render_chat_prompt(tokenizer, row, system_prompt), add_special_tokens=False)["input_ids"])
    n = 0
    while n < min(map(len, rendered)) and rendered[0][n] == rendered[1][n]:
        n += 1
    return rendered[0][:n]


def _prefix_cache(model, prefix_ids: Sequence[int], device):
    """Return the key/value cache of the shared prefix (batch of one)."""
    import torch

    cache = _new_cache(model)
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    with torch.inference_mode():
        model(input_ids=ids, use_cache=True, logits_to_keep=1, **{_cache_kwarg(model): cache})
    return cache


def greedy_batch(
    model, input_ids, attention_mask, max_new_tokens: int, stop_ids: Sequence[int], prefix_cache=None
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
    """
    import copy

    import torch

    n_rows = input_ids.shape[0]
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    if max_new_tokens <= 0 or n_rows == 0:
        return generated
    stop = set(int(t) for t in stop_ids)
    device = input_ids.device
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(n_rows)
    else:
        cache = _new_cache(model)
    cache_arg = {_cache_kwarg(model): cache}
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
                if token not in stop:
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
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    stop_ids = _stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = _model_device(model)
    prefix = list(prefix_ids or [])
    if len(prefix) < MIN_SHARED_PREFIX or not all(len(e) > len(prefix) and e[: len(prefix)] == prefix for e in encoded):
        prefix = []
    prefix_cache = _prefix_cache(model, prefix, device) if prefix and encoded else None
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    bar = _bar(len(prompts), desc, progress)
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
                model, input_ids.to(device), attention.to(device), max_new_tokens, stop_ids, prefix_cache
            )
            for row, i in enumerate(idx):
                tokens = outputs[row]
                stopped = bool(tokens) and tokens[-1] in stop_ids
                kept = tokens[:-1] if stopped else tokens
                results[i] = {
                    "response": tokenizer.decode(kept, skip_special_tokens=True),
                    "token_ids": tokens,
                    "n_new_tokens": len(tokens),
                    "finish_reason": "stop" if stopped else "length",
                }
            bar.update(len(idx))
    finally:
        bar.close()
    return results  # type: ignore[return-value]


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
    device = _model_device(model)
    bar = _bar(len(rows), "log-vraisemblance", progress)
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


# =============================================================================== backends
class HFBackend:
    """In-process Hugging Face backend: the base weights load once, adapters are switched in place."""

    name = "hf"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._tokenizer = None
        self._base = None
        self._peft = None
        self._adapters: dict[Path, str] = {}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from .models import load_tokenizer

            self._tokenizer = load_tokenizer(self.cfg.student.model, self.cfg)
        return self._tokenizer

    def settings(self) -> dict[str, Any]:
        """Return what, besides the prompt and the model, changes the outputs (for the cache key)."""
        from .models import pick_device

        device = pick_device(self.cfg.student.device)
        return {
            "backend": "hf",
            "dtype": self.cfg.student.dtype,
            "device": device.split(":")[0],
            "base": base_fingerprint(self.cfg),
        }

    def prompt_key(self, row: dict[str, Any]) -> str:
        """Return the rendered chat prompt (the cache key covers the system prompt and the template)."""
        return render_chat_prompt(self.tokenizer, row, self.cfg.system_prompt)

    def _load_base(self):
        if self._base is None:
            from .models import load_student

            log.info("loading the student %s", self.cfg.student.model)
            self._base, tokenizer = load_student(self.cfg)
            if self._tokenizer is None:
                self._tokenizer = tokenizer
        return self._base

    def _check_template(self, adapter: Path) -> None:
        saved = adapter / "chat_template.jinja"
        if saved.is_file() and saved.read_text(encoding="utf-8").strip() != (self.tokenizer.chat_template or "").strip():
            log.warning(
                "%s holds a chat template different from the base tokenizer's; evaluating with the base "
                "tokenizer's template (the one build_messages + apply_chat_template used for training)",
                adapter,
            )

    @contextlib.contextmanager
    def activate(self, spec: EvalModel) -> Iterator[Any]:
        """Yield the model to run for ``spec``: the base (adapters disabled) or the base with its adapter active."""
        base = self._load_base()
        if spec.adapter is None:
            if self._peft is None:
                yield base
            else:
                with self._peft.disable_adapter():
                    yield self._peft
            return
        key = spec.adapter.resolve()
        if key not in self._adapters:
            self._check_template(spec.adapter)
            # PEFT adapter names become module keys: keep them simple and unique.
            adapter_name = f"eval_{len(self._adapters)}"
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(base, str(spec.adapter), adapter_name=adapter_name, is_trainable=False)
            else:
                self._peft.load_adapter(str(spec.adapter), adapter_name=adapter_name, is_trainable=False)
            self._peft.eval()
            self._adapters[key] = adapter_name
        self._peft.set_adapter(self._adapters[key])
        yield self._peft

    def chunk_size(self) -> int:
        """Return how many items to generate between two saves of the predictions file (one batch)."""
        return max(1, self.cfg.eval.batch_size)

    def prompt_length(self, prompt: str) -> int:
        """Return the prompt's length in tokens (batches group prompts of similar length)."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(
        self, spec: EvalModel, rows: Sequence[dict[str, Any]], prompts: Sequence[str], progress: bool = True
    ) -> list[dict[str, Any]]:
        """Return greedy generations for ``prompts`` (rendered chat strings)."""
        with self.activate(spec) as model:
            return generate_greedy(
                model, self.tokenizer, prompts, self.cfg.eval.max_new_tokens, self.cfg.eval.batch_size,
                desc=f"génération {spec.name}", progress=progress,
                prefix_ids=chat_prefix_ids(self.tokenizer, self.cfg.system_prompt),
            )

    def loglik(self, spec: EvalModel, rows: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Return the five continuation log-probabilities per question."""
        with self.activate(spec) as model:
            return loglik_scores(model, self.tokenizer, rows, self.cfg.eval.batch_size)


class OpenAIBackend:
    """Any OpenAI-compatible server (vLLM with ``--enable-lora``, SGLang, TGI...), same chat messages.

    The server applies the model's chat template to the messages, so it must serve the same
    tokenizer as the one used for training. The key is read from the variable named by
    ``eval.api_key_env``; a local vLLM needs none (a placeholder is sent).
    """

    name = "openai"

    def __init__(self, cfg: Config):
        if not cfg.eval.base_url:
            raise ValueError("eval.backend=openai needs eval.base_url (e.g. http://localhost:8000/v1 for vLLM)")
        from openai import OpenAI

        from .secrets import MissingAPIKey, get_api_key, install_log_scrubber

        self.cfg = cfg
        install_log_scrubber()
        try:  # environment, then .env, then Colab secrets; the value is registered for scrubbing
            key = get_api_key(cfg.eval.api_key_env, getattr(cfg.teacher, "dotenv_path", None))
        except MissingAPIKey:
            key = None
            log.info("no key in %s: sending a placeholder (fine for a local vLLM server)", cfg.eval.api_key_env)
        self.client = OpenAI(
            base_url=cfg.eval.base_url,
            api_key=key or "EMPTY",
            max_retries=cfg.eval.max_retries,
            timeout=cfg.eval.timeout_s,
        )

    def served_name(self, spec: EvalModel) -> str:
        """Return the model name sent to the server for ``spec``."""
        if spec.name in self.cfg.eval.served_models:
            return self.cfg.eval.served_models[spec.name]
        return self.cfg.student.model if spec.adapter is None else spec.name

    def settings(self) -> dict[str, Any]:
        """Return what, besides the prompt and the model, changes the outputs (for the cache key)."""
        return {"backend": "openai", "base": self.cfg.student.model}

    def prompt_key(self, row: dict[str, Any]) -> str:
        """Return the messages sent (as JSON): the server applies the chat template."""
        return json.dumps(build_messages(row, self.cfg.system_prompt), ensure_ascii=False)

    def _error(self, exc: Exception) -> str:
        from .secrets import scrub

        return scrub(f"{type(exc).__name__}: {exc}")

    def chunk_size(self) -> int:
        """Return how many items to request between two saves of the predictions file."""
        return max(32, 4 * self.cfg.eval.concurrency)

    def prompt_length(self, prompt: str) -> int:
        """Return the prompt's length in characters (only used to order requests)."""
        return len(prompt)

    def _run(self, fn, items: Sequence[Any], desc: str, progress: bool = True) -> list[tuple[Any, str | None]]:
        results: list[tuple[Any, str | None]] = [(None, None)] * len(items)

        def work(i: int) -> tuple[int, Any, str | None]:
            try:
                return i, fn(items[i]), None
            except Exception as exc:  # every failure is reported, none is dropped
                return i, None, self._error(exc)

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.eval.concurrency)) as pool:
            bar = _bar(len(items), desc, progress)
            try:
                for i, value, error in pool.map(work, range(len(items))):
                    results[i] = (value, error)
                    bar.update(1)
            finally:
                bar.close()
        return results

    def generate(
        self, spec: EvalModel, rows: Sequence[dict[str, Any]], prompts: Sequence[str], progress: bool = True
    ) -> list[dict[str, Any]]:
        """Return greedy (temperature 0) chat completions for ``rows``; raises EvaluationError on failures."""
        model = self.served_name(spec)

        def one(row: dict[str, Any]) -> dict[str, Any]:
            resp = self.client.chat.completions.create(
                model=model,
                messages=build_messages(row, self.cfg.system_prompt),
                temperature=0.0,
                max_tokens=self.cfg.eval.max_new_tokens,
            )
            choice = resp.choices[0]
            usage = getattr(resp, "usage", None)
            return {
                "response": choice.message.content or "",
                "n_new_tokens": getattr(usage, "completion_tokens", None),
                "finish_reason": choice.finish_reason,
            }

        outcome = self._run(one, list(rows), f"génération {spec.name}", progress)
        errors = [e for _, e in outcome if e is not None]
        if errors:
            raise EvaluationError(
                f"{len(errors)} of {len(rows)} requests to {self.cfg.eval.base_url} (model {model!r}) failed; "
                f"first error: {errors[0]}. Predictions that succeeded are cached; re-run to retry the rest.",
                partial={i: value for i, (value, error) in enumerate(outcome) if error is None},
                first_error=f"model {model!r} at {self.cfg.eval.base_url}: {errors[0]}",
            ) from None
        return [value for value, _ in outcome]

    def loglik(self, spec: EvalModel, rows: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Return the five continuation log-probabilities per question from ``/completions`` with ``echo``.

        The prompt ``context + continuation`` is echoed with its token log-probabilities
        (``echo=True, logprobs=1, max_tokens=1``, what lm-eval's ``local-completions`` and vLLM
        support). A server that returns no prompt log-probabilities raises LoglikUnsupported
        rather than scoring every choice 0.
        """
        model = self.served_name(spec)
        pairs = [(loglik_context(row), cont) for row in rows for cont in LOGLIK_CONTINUATIONS]

        def one(pair: tuple[str, str]) -> float:
            context, cont = pair
            prompt = context + cont
            resp = self.client.completions.create(
                model=model, prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0.0
            )
            lp = resp.choices[0].logprobs
            offsets = list(getattr(lp, "text_offset", None) or [])
            values = list(getattr(lp, "token_logprobs", None) or [])
            if not offsets or len(offsets) != len(values) or offsets[0] != 0:
                raise LoglikUnsupported("the server returned no prompt log-probabilities for echo=True")
            if len(context) not in offsets:
                raise LoglikUnsupported("the server's tokens do not split at the end of the context")
            total, counted = 0.0, 0
            for off, value in zip(offsets, values):
                if len(context) <= off < len(prompt):
                    if value is None:
                        raise LoglikUnsupported("a continuation token has no log-probability")
                    total += float(value)
                    counted += 1
            if counted == 0:
                raise LoglikUnsupported("no continuation token found in the echoed prompt")
            return total

        outcome = self._run(one, pairs, f"log-vraisemblance {spec.name}")
        errors = [e for _, e in outcome if e is not None]
        if errors:
            raise LoglikUnsupported(f"{len(errors)} of {len(pairs)} scoring requests failed; first error: {errors[0]}")
        flat = [value for value, _ in outcome]
        n = len(LETTERS)
        return [flat[i * n : (i + 1) * n] for i in range(len(rows))]


def make_backend(cfg: Config):
    """Return the backend named by ``eval.backend`` (nothing is loaded until it is needed)."""
    if cfg.eval.backend == "hf":
        return HFBackend(cfg)
    if cfg.eval.backend == "openai":
        return OpenAIBackend(cfg)
    raise ValueError(f"eval.backend must be 'hf' or 'openai', got {cfg.eval.backend!r}")


# =============================================================================== records
def prediction_record(row: dict[str, Any], response: str | None, **extra: Any) -> dict[str, Any]:
    """Return the prediction record of one response: extracted letter, correctness, format compliance."""
    extracted = extract_answer(response)
    gold = row["answerKey"]
    record = {
        "question_id": row["id"],
        "index": row.get("index"),
        "response": response,
        "extracted": extracted,
        "gold": gold,
        "correct": extracted == gold,
        "format_ok": has_final_answer_format(response),
    }
    record.update(extra)
    return record


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


def _read_cache(path: Path, force: bool) -> dict[str, dict[str, Any]]:
    if force or not path.is_file():
        return {}
    try:
        records = read_jsonl(path)
    except Exception as exc:  # a damaged cache is recomputed, and said so
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
        return {}
    return {r["input_hash"]: r for r in records if isinstance(r, dict) and r.get("input_hash")}


def evaluate_model(cfg: Config, name: str, backend=None, force: bool = False, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return ``{"predictions", "loglik", "loglik_error", "generated", "reused"}`` for one model, writing its files.

    ``name`` is an entry of ``eval.models``. Predictions whose input hash (model and adapter
    fingerprints, rendered prompt, generation settings) is already in ``predictions_<name>.jsonl``
    are reused; the others are generated. ``extracted``/``correct``/``format_ok`` are always
    recomputed from the stored response, so an improved extractor applies to cached responses.
    """
    spec = resolve_eval_model(cfg, name)
    rows = rows if rows is not None else load_run_questions(cfg, "eval")
    backend = backend or make_backend(cfg)
    fingerprint = None
    if spec.adapter is not None:
        if _is_adapter_dir(spec.adapter):
            fingerprint = adapter_fingerprint(spec.adapter)
        else:
            log.warning(
                "%s: adapter %s is not on this machine (served by %s): cached predictions cannot tell a "
                "retrained adapter from the old one; use force=True after retraining",
                spec.name, spec.adapter, cfg.eval.base_url,
            )
    model_key = {
        "settings": backend.settings(),
        "adapter": fingerprint,
        "served": backend.served_name(spec) if isinstance(backend, OpenAIBackend) else None,
    }
    gen_key = {**model_key, "max_new_tokens": cfg.eval.max_new_tokens, "decoding": "greedy"}
    prompts = [backend.prompt_key(row) for row in rows]
    hashes = [_hash_json({**gen_key, "prompt": p}) for p in prompts]

    # ---- generation, saved after every chunk so that an interrupted run loses one batch at most
    pred_file = predictions_path(cfg, spec.name)
    cache = _read_cache(pred_file, force)
    missing = [i for i, h in enumerate(hashes) if h not in cache]
    generated: dict[int, dict[str, Any]] = {}

    def save() -> list[dict[str, Any]]:
        records = []
        for i, row in enumerate(rows):
            out = generated.get(i) or cache.get(hashes[i])
            if out is None:
                continue
            records.append(prediction_record(
                row, out.get("response"),
                n_new_tokens=out.get("n_new_tokens"), finish_reason=out.get("finish_reason"),
                model=spec.name, input_hash=hashes[i],
            ))
        write_jsonl(pred_file, records)
        return records

    failed, first_error = 0, None
    if missing:
        log.info("%s: generating %d of %d answers (%d cached)", spec.name, len(missing), len(rows), len(rows) - len(missing))
        # Longest prompts first: batches of similar lengths, and an out-of-memory error shows up at once.
        order = sorted(missing, key=lambda i: -backend.prompt_length(prompts[i]))
        chunk = backend.chunk_size()
        bar = _bar(len(order), f"génération {spec.name}")
        try:
            for start in range(0, len(order), chunk):
                part = order[start : start + chunk]
                try:
                    outs = backend.generate(spec, [rows[i] for i in part], [prompts[i] for i in part], progress=False)
                    generated.update(zip(part, outs))
                except EvaluationError as exc:
                    generated.update({part[k]: out for k, out in exc.partial.items()})
                    failed += len(part) - len(exc.partial)
                    first_error = first_error or exc.first_error
                save()
                bar.update(len(part))
        finally:
            bar.close()
    predictions = save()
    if failed:
        raise EvaluationError(
            f"{spec.name}: {failed} of {len(missing)} requests failed; first error: {first_error}. "
            f"The {len(predictions)} answers obtained are saved in {pred_file}; re-run to retry the rest."
        )

    # ---- log-likelihood multiple choice
    loglik: list[dict[str, Any]] | None = None
    loglik_error = None
    if cfg.eval.loglik:
        ll_key = {**model_key, "method": LOGLIK_METHOD}
        ll_hashes = [_hash_json({**ll_key, "context": loglik_context(row)}) for row in rows]
        ll_file = loglik_path(cfg, spec.name)
        ll_cache = _read_cache(ll_file, force)
        ll_missing = [i for i, h in enumerate(ll_hashes) if h not in ll_cache]
        scores: dict[int, list[float]] = {}
        if ll_missing:
            try:
                scores = dict(zip(ll_missing, backend.loglik(spec, [rows[i] for i in ll_missing])))
            except LoglikUnsupported as exc:
                loglik_error = str(exc)
                log.warning("%s: log-likelihood accuracy unavailable: %s", spec.name, loglik_error)
        if loglik_error is None:
            loglik = []
            for i, row in enumerate(rows):
                values = scores[i] if i in scores else [ll_cache[ll_hashes[i]]["logprobs"][letter] for letter in LETTERS]
                loglik.append(loglik_record(row, values, model=spec.name, input_hash=ll_hashes[i]))
            write_jsonl(ll_file, loglik)
    return {
        "name": spec.name,
        "adapter": _display_path(cfg, spec.adapter),
        "adapter_fingerprint": model_key["adapter"],
        "predictions": predictions,
        "loglik": loglik,
        "loglik_error": loglik_error,
        "generated": len(generated),
        "reused": len(rows) - len(generated),
    }


# =============================================================================== metrics
def model_metrics(predictions: Sequence[dict[str, Any]], loglik: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return one model's metrics: accuracy with its Wilson 95% interval, format rate, answer distribution, log-likelihood accuracy."""
    n = len(predictions)
    correct = sum(1 for p in predictions if p["correct"])
    format_ok = sum(1 for p in predictions if p["format_ok"])
    extracted = sum(1 for p in predictions if p["extracted"] is not None)
    distribution = {letter: 0 for letter in LETTERS}
    distribution["none"] = 0
    for p in predictions:
        distribution[p["extracted"] if p["extracted"] in LETTERS else "none"] += 1
    truncated = sum(1 for p in predictions if p.get("finish_reason") == "length")
    lengths = [p["n_new_tokens"] for p in predictions if isinstance(p.get("n_new_tokens"), int)]
    low, high = wilson_interval(correct, n)
    metrics: dict[str, Any] = {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [low, high],
        "format_ok": format_ok,
        "format_rate": format_ok / n if n else None,
        "extracted_rate": extracted / n if n else None,
        "answer_distribution": distribution,
        "truncated": truncated,
        "mean_new_tokens": sum(lengths) / len(lengths) if lengths else None,
        "loglik_accuracy": None,
        "loglik_ci95": None,
        "loglik_correct": None,
        "loglik_distribution": None,
    }
    if loglik:
        ll_correct = sum(1 for r in loglik if r["correct"])
        metrics["loglik_correct"] = ll_correct
        metrics["loglik_accuracy"] = ll_correct / len(loglik)
        metrics["loglik_ci95"] = list(wilson_interval(ll_correct, len(loglik)))
        # A small model may score one letter highest whatever the question (position bias):
        # the distribution shows it, where the accuracy alone would only equal that letter's share.
        metrics["loglik_distribution"] = {letter: sum(1 for r in loglik if r["predicted"] == letter) for letter in LETTERS}
    return metrics


def compare_models(
    predictions: dict[str, Sequence[dict[str, Any]]], significance: float = 0.05
) -> list[dict[str, Any]]:
    """Return the paired comparison of every pair of models on their common items (McNemar exact, Holm-adjusted)."""
    names = list(predictions)
    comparisons = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            by_a = {p["question_id"]: p["correct"] for p in predictions[a]}
            by_b = {p["question_id"]: p["correct"] for p in predictions[b]}
            if set(by_a) != set(by_b):
                raise ValueError(f"models {a} and {b} were not evaluated on the same items: paired test impossible")
            ids = sorted(by_a)
            table = paired_counts([by_a[q] for q in ids], [by_b[q] for q in ids])
            n = len(ids)
            acc_a = (table["both_correct"] + table["only_a_correct"]) / n if n else None
            acc_b = (table["both_correct"] + table["only_b_correct"]) / n if n else None
            comparisons.append({
                "a": a,
                "b": b,
                "n": n,
                **table,
                "accuracy_a": acc_a,
                "accuracy_b": acc_b,
                "difference": (acc_b - acc_a) if n else None,
                "mcnemar_p": mcnemar_exact(table["only_a_correct"], table["only_b_correct"]),
            })
    adjusted = holm_adjust([c["mcnemar_p"] for c in comparisons])
    for c, p in zip(comparisons, adjusted):
        c["mcnemar_p_holm"] = p
        c["significant"] = p < significance
    return comparisons


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def compute_metrics(cfg: Config, results: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the content of ``metrics.json`` from each model's :func:`evaluate_model` result."""
    from .plots import stand_in_note

    models = {}
    for name, res in results.items():
        metrics = model_metrics(res["predictions"], res.get("loglik"))
        if res.get("loglik_error"):
            metrics["loglik_error"] = res["loglik_error"]
        metrics["adapter"] = res.get("adapter")
        metrics["adapter_fingerprint"] = res.get("adapter_fingerprint")
        models[name] = metrics
    comparisons = compare_models({name: res["predictions"] for name, res in results.items()})
    indices = [row.get("index") for row in rows]
    data_summary_path = cfg.run_dir / "data" / "summary.json"
    data_summary = json.loads(data_summary_path.read_text(encoding="utf-8")) if data_summary_path.is_file() else {}
    stand_in = cfg.profile == "demo"
    return {
        "profile": cfg.profile,
        "stand_in": stand_in,
        "note": (
            f"demo profile: the student {cfg.student.model} and its adapters are small stand-in models "
            "fine-tuned on a stand-in teacher's answers; these numbers are NOT the course's results"
            if stand_in else ""
        ),
        "note_fr": stand_in_note(cfg.profile),
        "student": cfg.student.model,
        "models": models,
        "model_order": list(results),
        "n_items": len(rows),
        "eval_split": cfg.data.eval_split,
        "eval_indices": [min(indices), max(indices)] if indices and None not in indices else None,
        "data": {
            "n_eval": len(rows),
            "n_train": data_summary.get("n_train", cfg.data.n_train),
            "sft_examples": {
                f"stage{k}": _count_lines(cfg.run_dir / "das" / f"stage{k}_sft.jsonl") for k in (1, 2)
            },
        },
        "generation": {
            "backend": cfg.eval.backend,
            "decoding": "greedy",
            "max_new_tokens": cfg.eval.max_new_tokens,
            "batch_size": cfg.eval.batch_size,
            "dtype": cfg.student.dtype,
            "system_prompt_sha256": hashlib.sha256(cfg.system_prompt.encode("utf-8")).hexdigest(),
        },
        "methods": {
            "ci95": "Wilson score interval, 95%",
            "paired_test": "McNemar exact test (two-sided binomial on discordant items, p=1/2), "
            "Holm-adjusted across all pairs",
            "loglik": LOGLIK_METHOD,
        },
        "comparisons": comparisons,
    }


def metrics_table(metrics: dict[str, Any], digits: int = 3):
    """Return a rounded pandas DataFrame, one row per model, for display in the notebook (French headers)."""
    import pandas as pd

    rows = []
    for name in metrics.get("model_order", list(metrics["models"])):
        m = metrics["models"][name]
        ll_ci = m.get("loglik_ci95") or [None, None]
        rows.append({
            "modèle": name,
            "n": m["n"],
            "correctes": m["correct"],
            "exactitude": m["accuracy"],
            "IC 95 % bas": m["ci95"][0],
            "IC 95 % haut": m["ci95"][1],
            "format respecté": m["format_rate"],
            "sans réponse": (m["answer_distribution"]["none"] / m["n"]) if m["n"] else None,
            "tronquées": m.get("truncated"),
            "exactitude log-vraisemblance": m.get("loglik_accuracy"),
            "IC 95 % bas (log-v.)": ll_ci[0],
            "IC 95 % haut (log-v.)": ll_ci[1],
        })
    return pd.DataFrame(rows).set_index("modèle").round(digits)


def comparisons_table(metrics: dict[str, Any], digits: int = 4):
    """Return a pandas DataFrame of the paired comparisons (flips each way, McNemar p-values), French headers."""
    import pandas as pd

    rows = [
        {
            "A": c["a"],
            "B": c["b"],
            "n": c["n"],
            "seul A correct": c["only_a_correct"],
            "seul B correct": c["only_b_correct"],
            "écart B - A": c["difference"],
            "p McNemar exact": c["mcnemar_p"],
            "p ajusté (Holm)": c["mcnemar_p_holm"],
        }
        for c in metrics["comparisons"]
    ]
    return pd.DataFrame(rows).round(digits)


# =============================================================================== qualitative
def qualitative_examples(cfg: Config, rows: Sequence[dict[str, Any]], predictions: dict[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Return the crab question (``eval.qualitative_index``) and ``eval.n_random_examples`` random items, answered by each model."""
    by_model = {name: {p["question_id"]: p for p in preds} for name, preds in predictions.items()}

    def item(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "question_id": row["id"],
            "index": row.get("index"),
            "question": row["question"],
            "choices": {letter: text for letter, text in zip(row["choices"]["label"], row["choices"]["text"])},
            "gold": row["answerKey"],
            "answers": {
                name: {
                    key: preds[row["id"]][key]
                    for key in ("response", "extracted", "correct", "format_ok")
                }
                for name, preds in by_model.items()
                if row["id"] in preds
            },
        }

    highlight_row = next((r for r in rows if r.get("index") == cfg.eval.qualitative_index), None)
    rest = [r for r in rows if r is not highlight_row]
    rng = random.Random(cfg.eval.seed)
    picked = rng.sample(rest, min(cfg.eval.n_random_examples, len(rest)))
    picked.sort(key=lambda r: (r.get("index") is None, r.get("index")))
    out: dict[str, Any] = {
        "profile": cfg.profile,
        "stand_in": cfg.profile == "demo",
        "models": list(predictions),
        "qualitative_index": cfg.eval.qualitative_index,
        "highlight": item(highlight_row) if highlight_row is not None else None,
        "random_seed": cfg.eval.seed,
        "random": [item(r) for r in picked],
    }
    if highlight_row is None:
        out["highlight_missing"] = (
            f"{cfg.data.eval_split} index {cfg.eval.qualitative_index} is not among the evaluated items"
        )
    return out


# =============================================================================== phase
def _write_json(path: Path, obj: Any) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@timed_phase("evaluate")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Evaluate every model of ``eval.models``; write predictions, metrics, qualitative examples and figures; return the metrics.

    All adapters are checked before any model is loaded. Cached predictions are reused unless
    ``force``. The returned mapping is ``metrics.json`` plus ``outputs`` (paths written) and
    ``generated`` / ``reused`` counts per model.
    """
    from .plots import evaluation as eval_plots

    specs = resolve_eval_models(cfg)
    rows = load_run_questions(cfg, "eval")
    if not rows:
        raise ValueError(f"{cfg.run_dir / 'data' / 'eval.jsonl'} holds no question")
    backend = make_backend(cfg)
    results = {}
    for name, spec in zip(cfg.eval.models, specs):
        results[spec.name] = evaluate_model(cfg, name, backend=backend, force=force, rows=rows)
    metrics = compute_metrics(cfg, results, rows)
    metrics["settings"] = phase_settings(cfg, "evaluate")  # what this phase used (the report checks config.json against it)
    out = eval_dir(cfg)
    write_summary(out / "metrics.json", EvalMetrics.from_dict(metrics))
    qualitative = qualitative_examples(cfg, rows, {n: r["predictions"] for n, r in results.items()})
    _write_json(out / "qualitative.json", qualitative)
    figures = eval_plots.make_figures(cfg, metrics, {n: r["predictions"] for n, r in results.items()})
    summary = dict(metrics)
    summary["generated"] = {n: r["generated"] for n, r in results.items()}
    summary["reused"] = {n: r["reused"] for n, r in results.items()}
    summary["outputs"] = {
        "metrics": str(out / "metrics.json"),
        "qualitative": str(out / "qualitative.json"),
        "predictions": {n: str(predictions_path(cfg, n)) for n in results},
        "figures": [str(p) for p in figures],
    }
    return summary


__all__ = [
    "AdapterMissing",
    "EvalModel",
    "EvaluationError",
    "HFBackend",
    "LOGLIK_CONTINUATIONS",
    "LOGLIK_METHOD",
    "LoglikUnsupported",
    "OpenAIBackend",
    "chat_prefix_ids",
    "greedy_batch",
    "adapter_fingerprint",
    "base_fingerprint",
    "compare_models",
    "comparisons_table",
    "compute_metrics",
    "continuation_token_ids",
    "evaluate_model",
    "generate_greedy",
    "loglik_context",
    "loglik_scores",
    "make_backend",
    "metrics_table",
    "model_metrics",
    "prediction_record",
    "qualitative_examples",
    "render_chat_prompt",
    "resolve_eval_model",
    "resolve_eval_models",
    "run_phase",
]
