"""Phases 5-6: two-stage LoRA supervised fine-tuning with TRL's ``SFTTrainer``.

Stage 1 trains a fresh LoRA adapter on ``das/stage1_sft.jsonl`` (quality-kept low-temperature
teacher responses); stage 2 loads the stage-1 adapter *as trainable* and continues on
``das/stage2_sft.jsonl`` (DAS-kept high-temperature responses) with ``sft.lr_stage2``.

Loss masking. Every example is ``[system, user, assistant]`` messages rendered with the student's
own chat template. We tokenize it ourselves and hand ``SFTTrainer`` a dataset that already holds
``input_ids`` and ``labels`` (TRL then leaves the labels as they are). The label mask covers
exactly the assistant's response tokens plus the end-of-turn token (``<|im_end|>`` for
SmolLM2 / Qwen); the system prompt, the question, the ``<|im_start|>assistant\\n`` header and the
newline the template writes after ``<|im_end|>`` are set to -100. Why not TRL's built-in options:

* ``assistant_only_loss`` needs ``{% generation %}`` markers, which SmolLM2's template lacks;
* the conversational prompt-completion format (``completion_only_loss``) also trains on the
  template's trailing newline after ``<|im_end|>``, and truncation there is silent.

The prompt part is the template rendered with ``add_generation_prompt=True`` plus any text the
template writes before the assistant's text (Qwen3's hybrid template: an empty ``<think>`` block),
i.e. exactly the tokens the model sees at DAS scoring and evaluation time (one rendering for the
three, :mod:`dasd_utils.chat`), with the same system prompt (``cfg.system_prompt``; a data file
written with another one is refused).

Hardware: bf16 on GPUs with native bf16 (Ampere and newer), fp16 on older ones (T4), fp32 on the
CPU (``sft.precision: auto``); gradient checkpointing (``sft.gradient_checkpointing``); optional
4-bit QLoRA (``sft.load_in_4bit``, bitsandbytes: the optional extra ``pip install -e ".[qlora]"``,
CUDA only); on CUDA out-of-memory the per-device
batch is halved and the gradient accumulation doubled (same effective batch) through accelerate's
``find_executable_batch_size``, announced in the log and recorded in the manifest.

Disconnects (Colab): a checkpoint is written every ``sft.checkpoint_steps`` optimizer steps to
``sft/stage{N}/checkpoints/`` (adapter, optimizer, scheduler, RNG states); a re-run with the same
inputs resumes from the last complete one and ends with the adapter an uninterrupted run gives.
Checkpoints are deleted once the stage is finished, and discarded when the inputs change or with
``force``. A NaN or infinite logged loss (an fp16 overflow on a T4) stops training with
:class:`NonFiniteLoss`; TRL's default of hiding such losses from the log is turned off.

Multi-GPU: ``accelerate launch -m dasd_utils train ...`` runs this same code under DDP (the
``Trainer`` does the distribution); only the main process writes adapters, manifests and figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .chat import END_OF_TURN_TOKENS, end_of_turn_ids, render_turn
from .config import Config, phase_settings
from .data import read_jsonl
from .hashing import adapter_sha256, file_sha256
from .summaries import SftManifest, write_summary
from .timing import timed_phase

logger = logging.getLogger(__name__)

STAGES = (1, 2)
#: Bumped when the tokenization / masking recipe changes, so that old adapters are retrained.
RECIPE_VERSION = 2
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class SFTSetupError(RuntimeError):
    """Training cannot start with these settings on this machine; the message says what to change."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite (e.g. an fp16 overflow): training stopped, the message says what to try."""


# --------------------------------------------------------------------------- paths
def stage_dir(cfg: Config, stage: int) -> Path:
    """Return ``<run_dir>/sft/stage{stage}`` (adapter, tokenizer, train_log.jsonl, manifest.json)."""
    _check_stage(stage)
    return cfg.run_dir / "sft" / f"stage{stage}"


def sft_data_path(cfg: Config, stage: int) -> Path:
    """Return the SFT-ready dataset written by the DAS phase for ``stage``."""
    _check_stage(stage)
    return cfg.run_dir / "das" / f"stage{stage}_sft.jsonl"


def figure_path(cfg: Config) -> Path:
    """Return ``<run_dir>/figures/sft_loss.png``."""
    return cfg.run_dir / "figures" / "sft_loss.png"


def checkpoint_dir(cfg: Config, stage: int) -> Path:
    """Return ``<run_dir>/sft/stage{stage}/checkpoints`` (resumable checkpoints while the stage trains)."""
    return stage_dir(cfg, stage) / "checkpoints"


def prepare_checkpoints(folder: Path, inputs: Mapping[str, Any], force: bool = False, enabled: bool = True) -> bool:
    """Return True when ``folder`` holds checkpoints of these inputs to resume from; otherwise empty it.

    ``folder/inputs.json`` records the inputs the checkpoints were trained on: checkpoints of other
    inputs (changed data or settings), or any checkpoint when ``force`` or checkpoints are off, are
    deleted so that training starts over.
    """
    marker = folder / "inputs.json"
    if not force and enabled and marker.is_file():
        if _jsonable(json.loads(marker.read_text(encoding="utf-8"))) == _jsonable(inputs):
            return True
        logger.info("%s holds checkpoints of other inputs: deleted, training starts over", folder)
    if folder.exists():
        shutil.rmtree(folder)
    if enabled:
        folder.mkdir(parents=True)
        _write_json(marker, inputs)
    return False


def _check_stage(stage: int) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")


# --------------------------------------------------------------------------- data
def load_sft_examples(path: str | os.PathLike, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Return the records of an SFT-ready JSONL file, validated (``messages`` = system, user, assistant).

    Raises FileNotFoundError when the file is missing and ValueError naming the line for a
    malformed record or (when ``system_prompt`` is given) a system prompt that differs from it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the 'das' phase first (python -m dasd_utils das ...)")
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
        if system_prompt is not None and messages[0]["content"] != system_prompt:
            raise ValueError(
                f"{where}: its system prompt differs from cfg.system_prompt. Training must use the prompt "
                "that generation and evaluation use: re-run the 'generate' and 'das' phases with this "
                "system prompt, or set system_prompt back to the one the data was generated with."
            )
    return records


def tokenize_sft_example(tokenizer, messages: Sequence[Mapping[str, str]], cutoff_len: int | None = None) -> dict[str, Any]:
    """Return ``input_ids`` and ``labels`` for ``[system, user, assistant]``: loss on the response and end-of-turn only.

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

    prompt_ids, response_ids, tail_ids = encode(layout.prompt), encode(turn.response), encode(layout.tail)
    stops = end_of_turn_ids(tokenizer)
    if any(t in stops for t in response_ids):
        raise ValueError("the assistant's text holds an end-of-turn token: the model would learn to stop inside its answer")
    full_ids = prompt_ids + response_ids + [layout.end_of_turn_id] + tail_ids
    prompt_len = len(prompt_ids)
    response_end = prompt_len + len(response_ids) + 1
    labels = [-100] * prompt_len + full_ids[prompt_len:response_end] + [-100] * len(tail_ids)
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
        tok = tokenize_sft_example(tokenizer, record["messages"], cutoff_len)
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


# --------------------------------------------------------------------------- hardware
def training_device(preference: str = "auto") -> str:
    """Return ``cuda`` when a GPU is visible and not refused by ``preference``, else ``cpu``."""
    import torch

    if preference == "cpu" or not torch.cuda.is_available():
        if preference.startswith("cuda") and not torch.cuda.is_available():
            raise SFTSetupError(f"student.device={preference!r} but no CUDA GPU is visible")
        return "cpu"
    return "cuda"


def resolve_precision(preference: str, device: str) -> str:
    """Return ``bf16``, ``fp16`` or ``fp32``: auto picks bf16 on GPUs with native bf16, fp16 on older ones, fp32 on CPU."""
    import torch

    if preference not in ("auto", "bf16", "fp16", "fp32"):
        raise SFTSetupError(f"sft.precision must be auto|bf16|fp16|fp32, got {preference!r}")
    if device == "cpu":
        if preference == "fp16":
            raise SFTSetupError("sft.precision=fp16 needs a CUDA GPU; on the CPU use fp32 (or auto)")
        return "fp32" if preference == "auto" else preference
    # torch.cuda.is_bf16_supported() also says True on a T4, where bf16 is only emulated (slow):
    # native bf16 starts with compute capability 8.0 (Ampere).
    major, minor = torch.cuda.get_device_capability()
    native_bf16 = major >= 8
    if preference == "auto":
        return "bf16" if native_bf16 else "fp16"
    if preference == "bf16" and not native_bf16:
        raise SFTSetupError(
            f"sft.precision=bf16 but this GPU ({torch.cuda.get_device_name()}, compute capability {major}.{minor}) "
            "has no native bf16: use sft.precision=fp16 or auto"
        )
    return preference


def _torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_base_model(cfg: Config, precision: str, device: str):
    """Return the student's base model for training (4-bit through bitsandbytes when ``sft.load_in_4bit``)."""
    from transformers import AutoModelForCausalLM

    from .models import ModelUnavailable, resolve_model

    kwargs: dict[str, Any] = {"dtype": _torch_dtype(precision), "trust_remote_code": False}
    if cfg.student.attn_implementation:
        kwargs["attn_implementation"] = cfg.student.attn_implementation
    if cfg.sft.load_in_4bit:
        kwargs.update(_qlora_kwargs(precision, device))
    path = resolve_model(cfg.student.model, cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelUnavailable(f"could not load the student {cfg.student.model!r} for training: {exc}") from exc
    model.config.use_cache = False  # the KV cache is useless in training and clashes with checkpointing
    if cfg.sft.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.sft.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def _qlora_kwargs(precision: str, device: str) -> dict[str, Any]:
    """Return the ``from_pretrained`` arguments of a 4-bit QLoRA base model, or raise SFTSetupError."""
    if device != "cuda":
        raise SFTSetupError(
            "sft.load_in_4bit=true (QLoRA) needs a CUDA GPU and none is visible: set sft.load_in_4bit=false"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise SFTSetupError(
            'sft.load_in_4bit=true needs bitsandbytes (an optional extra): pip install bitsandbytes, '
            'or pip install -e ".[qlora]"'
        ) from exc
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_torch_dtype(precision if precision != "fp32" else "fp16"),
    )
    # Quantized weights are placed at load time, one full copy per process under DDP.
    return {"quantization_config": quant, "device_map": {"": PartialState().local_process_index}}


def lora_config(cfg: Config):
    """Return the PEFT ``LoraConfig`` of stage 1 (r, alpha, dropout, target modules from ``cfg.sft``)."""
    from peft import LoraConfig

    target = cfg.sft.target_modules
    if isinstance(target, str) and target != "all-linear":
        target = [t.strip() for t in target.split(",") if t.strip()]
    return LoraConfig(
        r=cfg.sft.lora_r,
        lora_alpha=cfg.sft.lora_alpha,
        lora_dropout=cfg.sft.lora_dropout,
        target_modules=target,
        bias="none",
        task_type="CAUSAL_LM",
    )


def add_lora(model, cfg: Config):
    """Return ``model`` wrapped with a fresh trainable LoRA adapter (stage 1), initialised from ``sft.seed``."""
    from peft import get_peft_model
    from transformers import set_seed

    # LoRA's A matrices are drawn from the global RNG: seed it here, not only in the Trainer
    # (which seeds after the adapter exists), so that a re-run gives the same adapter.
    set_seed(cfg.sft.seed)
    return get_peft_model(model, lora_config(cfg))


def load_trainable_adapter(model, adapter_dir: str | os.PathLike):
    """Return ``model`` wrapped with the adapter saved in ``adapter_dir``, its LoRA weights trainable (stage 2)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


# --------------------------------------------------------------------------- training
@dataclass
class TrainSettings:
    """What ``fit`` needs besides the model and the data (resolved from ``cfg.sft`` by ``train_stage``)."""

    output_dir: str
    learning_rate: float
    epochs: float = 3.0
    per_device_batch_size: int = 2
    grad_accum: int = 4
    precision: str = "fp32"  # resolved: bf16 | fp16 | fp32
    use_cpu: bool = True
    gradient_checkpointing: bool = True
    max_length: int | None = 2048
    max_steps: int = -1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    logging_steps: int = 1
    seed: int = 42
    #: Halve the batch / double the accumulation on out-of-memory errors.
    oom_backoff: bool = True
    #: Save a resumable checkpoint every this many optimizer steps into ``checkpoint_dir`` (0: never),
    #: and resume from the last complete one found there.
    checkpoint_steps: int = 0
    checkpoint_dir: str | None = None


@dataclass
class FitResult:
    """What one training run produced: the trainer's log, the batch split used, throughput."""

    log_history: list[dict[str, Any]]
    metrics: dict[str, Any]
    global_step: int
    per_device_batch_size: int
    grad_accum: int
    oom_backoffs: list[dict[str, int]] = field(default_factory=list)
    num_tokens: int | None = None
    train_runtime_s: float | None = None
    tokens_per_s: float | None = None
    trainer: Any = None
    #: The checkpoint training resumed from (``checkpoint-<step>``), None for a run from scratch.
    resumed_from: str | None = None


def sft_arguments(settings: TrainSettings, per_device_batch_size: int, grad_accum: int):
    """Return TRL's ``SFTConfig`` for ``settings`` with this batch split."""
    from trl import SFTConfig as TRLSFTConfig

    warmup = settings.warmup_ratio
    checkpoints = settings.checkpoint_steps > 0 and settings.checkpoint_dir
    return TRLSFTConfig(
        output_dir=settings.checkpoint_dir if checkpoints else settings.output_dir,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=per_device_batch_size,
        gradient_accumulation_steps=grad_accum,
        lr_scheduler_type=settings.lr_scheduler,
        # transformers 5 takes the warmup ratio as a float in [0, 1) through warmup_steps.
        warmup_steps=float(warmup) if 0 < warmup < 1 else int(warmup),
        weight_decay=settings.weight_decay,
        bf16=settings.precision == "bf16",
        fp16=settings.precision == "fp16",
        use_cpu=settings.use_cpu,
        gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        max_length=settings.max_length,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if checkpoints else "no",
        save_steps=settings.checkpoint_steps if checkpoints else 500,
        # Two, so that a session killed while writing the newest one still has the previous one.
        save_total_limit=2,
        # A NaN / inf loss must reach the log (and NonFiniteLossGuard), not be averaged away.
        logging_nan_inf_filter=False,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        # LoRA leaves most parameters frozen; DDP must not search the graph for unused ones.
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
    )


def _trainable_state(model) -> dict[str, Any]:
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def _restore_trainable(model, state: Mapping[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name].to(p.device))


def non_finite_loss_guard(precision: str):
    """Return a TrainerCallback that raises :class:`NonFiniteLoss` as soon as a logged loss is NaN or infinite."""
    from transformers import TrainerCallback

    class NonFiniteLossGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is None or math.isfinite(float(loss)):
                return
            hint = (
                "with sft.precision=fp16 (T4) this is an fp16 overflow: lower the learning rate, or train in "
                "fp32 (sft.precision=fp32, slower, more memory), or in bf16 on an Ampere or newer GPU"
                if precision == "fp16" else
                "lower the learning rate (sft.lr_stage1 / sft.lr_stage2) or check the training data"
            )
            raise NonFiniteLoss(
                f"training stopped at step {state.global_step}: the loss is {loss} ({precision}). "
                f"The adapter would be garbage, so nothing is saved as finished; {hint}"
            )

    return NonFiniteLossGuard()


def last_checkpoint(folder: str | os.PathLike | None) -> Path | None:
    """Return the newest complete ``checkpoint-<step>`` folder in ``folder`` (trainer state and adapter written), or None."""
    if not folder or not Path(folder).is_dir():
        return None
    found = []
    for path in Path(folder).glob("checkpoint-*"):
        step = path.name.split("-", 1)[1]
        if step.isdigit() and (path / "trainer_state.json").is_file() and (path / "adapter_model.safetensors").is_file():
            found.append((int(step), path))
    return max(found)[1] if found else None


def clear_checkpoints(folder: str | os.PathLike | None) -> None:
    """Delete the ``checkpoint-<step>`` folders in ``folder``, keeping its ``inputs.json`` record."""
    if folder and Path(folder).is_dir():
        for path in Path(folder).glob("checkpoint-*"):
            shutil.rmtree(path, ignore_errors=True)


def _checkpoint_batch(checkpoint: Path) -> int | None:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return state.get("train_batch_size")


def fit(model, tokenizer, dataset, settings: TrainSettings, callbacks: Sequence[Any] = ()) -> FitResult:
    """Return the result of training ``model`` (a PEFT model) on a tokenized dataset with TRL's SFTTrainer.

    With ``settings.checkpoint_steps``, a checkpoint is saved every that many steps into
    ``settings.checkpoint_dir`` and training resumes from the last complete one found there
    (adapter, optimizer, scheduler, RNG states and the position in the data order restored, so the
    result equals an uninterrupted run's); ``FitResult.resumed_from`` names it. A NaN or infinite
    logged loss stops training with :class:`NonFiniteLoss`.

    On an out-of-memory error (and ``settings.oom_backoff``), accelerate's
    ``find_executable_batch_size`` retries with half the per-device batch and twice the gradient
    accumulation, so the effective batch stays the same; the adapter is first reset to its state
    before the failed attempt. Each backoff is logged as a warning and listed in the result.
    """
    from accelerate.utils import find_executable_batch_size
    from accelerate.utils.memory import should_reduce_batch_size
    from trl import SFTTrainer

    effective_batch = settings.per_device_batch_size * settings.grad_accum
    initial_state = _trainable_state(model) if settings.oom_backoff else None
    backoffs: list[dict[str, int]] = []
    attempts = {"n": 0}

    batch_holder = {"size": settings.per_device_batch_size}
    # A previous session that backed off to a smaller batch left checkpoints at that batch: start
    # there, so that the resume keeps the same batch split (and the same result).
    previous = last_checkpoint(settings.checkpoint_dir) if settings.checkpoint_steps > 0 else None
    previous_batch = _checkpoint_batch(previous) if previous is not None else None
    if settings.oom_backoff and previous_batch and previous_batch < settings.per_device_batch_size:
        batch_holder["size"] = previous_batch
        backoffs.append({"per_device_batch_size": previous_batch,
                         "grad_accum": max(1, math.ceil(effective_batch / previous_batch)), "from_checkpoint": True})
        logger.info("resuming at per-device batch %d, the batch the interrupted session had backed off to", previous_batch)

    def reduce_batch_size() -> int:
        # Halve (accelerate's default takes 10% off), the accumulation doubles in `attempt`.
        batch_holder["size"] //= 2
        return batch_holder["size"]

    def attempt(per_device_batch_size: int) -> FitResult:
        attempts["n"] += 1
        grad_accum = max(1, math.ceil(effective_batch / per_device_batch_size))
        if attempts["n"] > 1:
            backoffs.append({"per_device_batch_size": per_device_batch_size, "grad_accum": grad_accum})
            logger.warning(
                "CUDA out of memory: retrying with per-device batch %d and gradient accumulation %d "
                "(effective batch %d, was %d x %d); the adapter restarts from its initial weights",
                per_device_batch_size, grad_accum, per_device_batch_size * grad_accum,
                settings.per_device_batch_size, settings.grad_accum,
            )
            print(
                f"[SFT] mémoire GPU insuffisante : nouvel essai avec un lot de {per_device_batch_size} par GPU "
                f"et une accumulation de {grad_accum} (lot effectif {per_device_batch_size * grad_accum})",
                flush=True,
            )
            if initial_state is not None:
                _restore_trainable(model, initial_state)
            clear_checkpoints(settings.checkpoint_dir)  # the failed batch split's checkpoints cannot be resumed
        trainer = SFTTrainer(
            model=model,
            args=sft_arguments(settings, per_device_batch_size, grad_accum),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[non_finite_loss_guard(settings.precision), *callbacks],
        )
        resume = last_checkpoint(settings.checkpoint_dir) if settings.checkpoint_steps > 0 else None
        if resume is not None and _checkpoint_batch(resume) not in (None, per_device_batch_size):
            logger.warning("checkpoint %s was written with another per-device batch: starting over", resume)
            clear_checkpoints(settings.checkpoint_dir)
            resume = None
        if resume is not None:
            logger.info("resuming training from %s", resume)
            print(f"[SFT] reprise depuis le checkpoint {resume.name} (entraînement interrompu auparavant)", flush=True)
        failure = None
        try:
            output = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried, the rest re-raised
            if not (settings.oom_backoff and should_reduce_batch_size(exc)):
                raise
            failure = str(exc.args[0])[:300]
        if failure is not None:
            # Leaving the except block releases the traceback (and the trainer, its optimizer state
            # and activations with it) before accelerate clears the device cache and retries.
            del trainer
            raise RuntimeError(f"CUDA out of memory. (at per-device batch {per_device_batch_size}: {failure})")
        history = list(trainer.state.log_history)
        num_tokens = None
        for entry in reversed(history):
            if "num_tokens" in entry:
                num_tokens = int(entry["num_tokens"])
                break
        runtime = output.metrics.get("train_runtime")
        return FitResult(
            log_history=history,
            metrics=dict(output.metrics),
            global_step=int(trainer.state.global_step),
            per_device_batch_size=per_device_batch_size,
            grad_accum=grad_accum,
            oom_backoffs=backoffs,
            num_tokens=num_tokens,
            train_runtime_s=runtime,
            tokens_per_s=(num_tokens / runtime) if num_tokens and runtime else None,
            trainer=trainer,
            resumed_from=resume.name if resume is not None else None,
        )

    if not settings.oom_backoff:
        return attempt(settings.per_device_batch_size)
    runner = find_executable_batch_size(
        attempt, starting_batch_size=batch_holder["size"], reduce_batch_size_fn=reduce_batch_size
    )
    try:
        return runner()
    except RuntimeError as exc:
        if "No executable batch size found" in str(exc):
            raise SFTSetupError(
                "out of memory even with a per-device batch of 1: lower sft.cutoff_len, turn on "
                "sft.gradient_checkpointing or sft.load_in_4bit, or use a larger GPU"
            ) from None
        raise


def train_log_records(log_history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one record per logged training step (``step``, ``loss``, ``learning_rate``, ``epoch``, ...)."""
    keep = ("grad_norm", "mean_token_accuracy", "entropy", "num_tokens")
    records = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue  # the final summary entry holds train_loss, not loss
        record = {
            "step": int(entry["step"]),
            "loss": float(entry["loss"]),
            "learning_rate": float(entry["learning_rate"]) if "learning_rate" in entry else None,
            "epoch": float(entry["epoch"]) if "epoch" in entry else None,
        }
        for key in keep:
            if key in entry:
                record[key] = entry[key]
        records.append(record)
    return records


# --------------------------------------------------------------------------- reuse
def stage_inputs(cfg: Config, stage: int) -> dict[str, Any]:
    """Return everything that determines a stage's adapter: base model, data hash, settings, parent adapter.

    Two runs with equal ``stage_inputs`` give the same adapter (up to hardware non-determinism),
    so a matching manifest means the adapter is reused. Settings that change speed but not the
    result (gradient checkpointing, logging) are left out, and so is the hardware.
    """
    _check_stage(stage)
    s = cfg.sft
    data = sft_data_path(cfg, stage)
    if not data.is_file():
        raise FileNotFoundError(f"{data} not found: run the 'das' phase first (python -m dasd_utils das ...)")
    inputs: dict[str, Any] = {
        "recipe_version": RECIPE_VERSION,
        "stage": stage,
        "base_model": cfg.student.model,
        # Content hashes only, no paths: the same run reached through a relative (CLI) or an
        # absolute (notebook) run directory must reuse its adapters.
        "data_sha256": file_sha256(data),
        "system_prompt_sha256": hashlib.sha256(cfg.system_prompt.encode()).hexdigest(),
        "settings": {
            "lora_r": s.lora_r,
            "lora_alpha": s.lora_alpha,
            "lora_dropout": s.lora_dropout,
            "target_modules": s.target_modules,
            "cutoff_len": s.cutoff_len,
            "learning_rate": s.lr_stage1 if stage == 1 else s.lr_stage2,
            "epochs": s.epochs,
            "per_device_batch_size": s.per_device_batch_size,
            "grad_accum": s.grad_accum,
            "lr_scheduler": s.lr_scheduler,
            "warmup_ratio": s.warmup_ratio,
            "weight_decay": s.weight_decay,
            "precision": s.precision,
            "load_in_4bit": s.load_in_4bit,
            "max_steps": s.max_steps,
            "seed": s.seed,
        },
    }
    if stage == 2:
        parent = stage_dir(cfg, 1)
        if not all((parent / name).is_file() for name in ADAPTER_FILES):
            raise FileNotFoundError(f"stage-1 adapter not found in {parent}: train stage 1 first")
        inputs["parent_adapter"] = {"sha256": adapter_sha256(parent)}
    return inputs


def read_manifest(cfg: Config, stage: int) -> dict[str, Any] | None:
    """Return the stage's manifest, or None when it has not been trained (completely) yet."""
    path = stage_dir(cfg, stage) / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def reusable_manifest(cfg: Config, stage: int, inputs: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the stage's manifest when its adapter exists and was trained on the same inputs, else None."""
    manifest = read_manifest(cfg, stage)
    if manifest is None:
        return None
    folder = stage_dir(cfg, stage)
    if not all((folder / name).is_file() for name in ADAPTER_FILES):
        return None
    inputs = stage_inputs(cfg, stage) if inputs is None else inputs
    if _jsonable(manifest.get("inputs")) != _jsonable(inputs):
        return None
    return manifest


def read_train_log(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the stage's ``train_log.jsonl`` records (empty when the stage has not been trained)."""
    path = stage_dir(cfg, stage) / "train_log.jsonl"
    return read_jsonl(path) if path.is_file() else []


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


# --------------------------------------------------------------------------- stages
def train_stage(cfg: Config, stage: int, force: bool = False) -> dict[str, Any]:
    """Return the manifest of ``stage`` after training it, or the existing one when its inputs did not change.

    Stage 1 adds a fresh LoRA adapter to the student; stage 2 loads the stage-1 adapter as
    trainable and continues with ``sft.lr_stage2``. Writes the adapter, the tokenizer,
    ``train_log.jsonl`` and ``manifest.json`` to ``sft/stage{stage}/`` (main process only).
    """
    from .models import load_tokenizer, resolve_model

    _check_stage(stage)
    wall_start = time.perf_counter()
    state = distributed_state(cfg)
    inputs = stage_inputs(cfg, stage)
    if not force:
        manifest = reusable_manifest(cfg, stage, inputs)
        if manifest is not None:
            logger.info("SFT stage %d: reusing the adapter in %s (same inputs)", stage, stage_dir(cfg, stage))
            return dict(manifest, reused=True)

    out = stage_dir(cfg, stage)
    checkpoints = checkpoint_dir(cfg, stage)
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        # The manifest marks a finished stage: remove it first so that a crash mid-training never
        # leaves an old manifest next to a half-written adapter.
        (out / "manifest.json").unlink(missing_ok=True)
        prepare_checkpoints(checkpoints, inputs, force=force, enabled=cfg.sft.checkpoint_steps > 0)
    state.wait_for_everyone()

    records = load_sft_examples(sft_data_path(cfg, stage), cfg.system_prompt)
    if not records:
        raise ValueError(
            f"{sft_data_path(cfg, stage)} holds no example: nothing to train stage {stage} on "
            + ("(the DAS filter kept nothing: lower das.keep_ratio_threshold or generate more)" if stage == 2 else "")
        )
    tokenizer = load_tokenizer(cfg.student.model, cfg)
    cutoff = min(cfg.sft.cutoff_len, cfg.student.max_context) if cfg.student.max_context else cfg.sft.cutoff_len
    dataset, stats = build_sft_dataset(records, tokenizer, cutoff)

    device = training_device(cfg.student.device)
    precision = resolve_precision(cfg.sft.precision, device)
    model = load_base_model(cfg, precision, device)
    if stage == 1:
        model = add_lora(model, cfg)
        learning_rate = cfg.sft.lr_stage1
    else:
        model = load_trainable_adapter(model, stage_dir(cfg, 1))
        learning_rate = cfg.sft.lr_stage2
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    if state.is_main_process:
        print(
            f"[SFT] étape {stage} : {stats.n_examples} exemples ({stats.n_supervised_tokens} jetons supervisés), "
            f"{n_trainable:,} paramètres LoRA entraînables sur {n_total:,}, précision {precision}, "
            f"appareil {device}, lr {learning_rate:g}",
            flush=True,
        )
    settings = TrainSettings(
        output_dir=str(out),
        learning_rate=learning_rate,
        epochs=cfg.sft.epochs,
        per_device_batch_size=cfg.sft.per_device_batch_size,
        grad_accum=cfg.sft.grad_accum,
        precision=precision,
        use_cpu=device == "cpu",
        gradient_checkpointing=cfg.sft.gradient_checkpointing,
        max_length=cutoff,
        max_steps=cfg.sft.max_steps,
        lr_scheduler=cfg.sft.lr_scheduler,
        warmup_ratio=cfg.sft.warmup_ratio,
        weight_decay=cfg.sft.weight_decay,
        logging_steps=cfg.sft.logging_steps,
        seed=cfg.sft.seed,
        oom_backoff=cfg.sft.oom_backoff and device == "cuda",
        checkpoint_steps=cfg.sft.checkpoint_steps,
        checkpoint_dir=str(checkpoints) if cfg.sft.checkpoint_steps > 0 else None,
    )
    if cfg.sft.max_steps > 0 and state.is_main_process:
        planned = cfg.sft.max_steps * cfg.sft.per_device_batch_size * cfg.sft.grad_accum * state.num_processes
        if planned < stats.n_examples * cfg.sft.epochs:
            print(
                f"[SFT] étape {stage} : sft.max_steps={cfg.sft.max_steps} limite l'entraînement à environ {planned} "
                f"exemples vus sur {stats.n_examples} x {cfg.sft.epochs:g} époque(s)",
                flush=True,
            )
    result = fit(model, tokenizer, dataset, settings)
    log = train_log_records(result.log_history)
    trainer = result.trainer
    trainer.save_model(str(out))  # adapter + tokenizer, main process only (Trainer checks)
    manifest = {
        "stage": stage,
        "base_model": cfg.student.model,
        "base_model_path": resolve_model(cfg.student.model, cfg),
        "data_path": f"das/{sft_data_path(cfg, stage).name}",  # relative to the run directory
        "data_sha256": inputs["data_sha256"],
        "parent_adapter": ({"path": "sft/stage1", **inputs["parent_adapter"]} if stage == 2 else None),
        "config": dataclasses.asdict(cfg.sft),
        "settings": phase_settings(cfg, "train"),
        "inputs": inputs,
        "dataset": dataclasses.asdict(stats),
        "hardware": {
            "device": device,
            "precision": precision,
            "world_size": state.num_processes,
            "per_device_batch_size": result.per_device_batch_size,
            "grad_accum": result.grad_accum,
            "effective_batch": result.per_device_batch_size * result.grad_accum * state.num_processes,
            "oom_backoffs": result.oom_backoffs,
            "gradient_checkpointing": cfg.sft.gradient_checkpointing,
            "load_in_4bit": cfg.sft.load_in_4bit,
        },
        "learning_rate": learning_rate,
        "trainable_parameters": n_trainable,
        "steps": result.global_step,
        "examples_seen": result.global_step * result.per_device_batch_size * result.grad_accum * state.num_processes,
        "epochs": float(result.metrics.get("epoch", log[-1]["epoch"] if log else 0.0)),
        "first_loss": log[0]["loss"] if log else None,
        "final_loss": log[-1]["loss"] if log else None,
        "train_loss": result.metrics.get("train_loss"),
        "num_tokens": result.num_tokens,
        "train_runtime_s": result.train_runtime_s,
        "tokens_per_s": round(result.tokens_per_s, 1) if result.tokens_per_s else None,
        "checkpoint_steps": cfg.sft.checkpoint_steps,
        "resumed_from": result.resumed_from,
        "versions": _versions(),
    }
    if state.is_main_process:
        from .data import write_jsonl

        write_jsonl(out / "train_log.jsonl", log)
        (out / "training_args.bin").unlink(missing_ok=True)  # pickled arguments: not needed, not portable
        manifest["wall_time_s"] = round(time.perf_counter() - wall_start, 1)
        write_summary(out / "manifest.json", SftManifest.from_dict(manifest))
        # The finished adapter is saved: the checkpoints (with optimizer states) are no longer needed.
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    del trainer, result, model
    _free_memory()
    manifest.setdefault("wall_time_s", round(time.perf_counter() - wall_start, 1))
    return dict(manifest, reused=False)


def distributed_state(cfg: Config):
    """Return accelerate's process state (rank, number of processes), set up for the training device.

    Under ``accelerate launch`` / ``torchrun`` on GPUs this initialises NCCL; on the CPU it must be
    told so (``cpu=True``) to use gloo, otherwise every process would believe it is the main one.
    """
    from accelerate import PartialState

    return PartialState(cpu=training_device(cfg.student.device) == "cpu")


def _free_memory() -> None:
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=True)


def load_adapter_model(cfg: Config, stage: int, device: str | None = None, dtype: str | None = None):
    """Return ``(model, tokenizer)``: the student with the stage's adapter, in eval mode, for inference."""
    from peft import PeftModel

    from .models import load_model

    folder = stage_dir(cfg, stage)
    if not all((folder / name).is_file() for name in ADAPTER_FILES):
        raise FileNotFoundError(f"no adapter in {folder}: run the 'train' phase first")
    model, tokenizer = load_model(
        cfg.student.model, cfg, dtype=dtype or cfg.student.dtype, device=device or cfg.student.device
    )
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer


def plot_loss(cfg: Config) -> Path | None:
    """Return the path of ``figures/sft_loss.png`` drawn from both stages' logs (None when nothing is logged)."""
    from .plots.sft import plot_sft_loss

    logs = {f"stage{stage}": read_train_log(cfg, stage) for stage in STAGES}
    if not any(logs.values()):
        return None
    return plot_sft_loss(logs, figure_path(cfg), profile=cfg.profile)


def _stage_summary(cfg: Config, manifest: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("steps", "epochs", "first_loss", "final_loss", "train_loss", "num_tokens", "tokens_per_s",
            "train_runtime_s", "wall_time_s", "reused")
    summary = {key: manifest.get(key) for key in keys}
    summary["n_examples"] = manifest.get("dataset", {}).get("n_examples")
    summary["adapter_dir"] = str(stage_dir(cfg, int(manifest["stage"])))
    return summary


@timed_phase("train")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Train stage 1 then stage 2 (reusing adapters whose inputs did not change); return a summary per stage."""
    results = {}
    for stage in STAGES:
        manifest = train_stage(cfg, stage, force=force)
        results[f"stage{stage}"] = _stage_summary(cfg, manifest)
    figure = None
    if distributed_state(cfg).is_main_process:
        figure = plot_loss(cfg)
    results["figure"] = str(figure) if figure else None
    return results


__all__ = [
    "DatasetStats",
    "FitResult",
    "SFTSetupError",
    "STAGES",
    "TrainSettings",
    "add_lora",
    "adapter_sha256",
    "build_sft_dataset",
    "checkpoint_dir",
    "clear_checkpoints",
    "distributed_state",
    "end_of_turn_ids",
    "END_OF_TURN_TOKENS",
    "figure_path",
    "fit",
    "load_adapter_model",
    "load_base_model",
    "load_sft_examples",
    "load_trainable_adapter",
    "last_checkpoint",
    "lora_config",
    "NonFiniteLoss",
    "non_finite_loss_guard",
    "plot_loss",
    "prepare_checkpoints",
    "read_manifest",
    "read_train_log",
    "resolve_precision",
    "reusable_manifest",
    "run_phase",
    "sft_arguments",
    "sft_data_path",
    "stage_dir",
    "stage_inputs",
    "tokenize_sft_example",
    "train_log_records",
    "train_stage",
    "training_device",
]
