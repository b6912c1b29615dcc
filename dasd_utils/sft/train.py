"""One training run with TRL's ``SFTTrainer``: TRL's arguments, fit, out-of-memory backoff, checkpoints, the non-finite-loss guard."""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import FineTuneConfig
from ..jsonl import read_json, write_json_atomic
from ..reuse import same_inputs
from .model import SFTSetupError

logger = logging.getLogger(__package__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite (e.g. an fp16 overflow): training stopped, the message says what to try."""


@dataclass(frozen=True)
class TrainingRun:
    """What one :func:`fit` call trains with: the run's :class:`FineTuneConfig` plus what the stage resolved.

    ``settings`` holds every training setting (epochs, batch split, schedule, seed, out-of-memory
    backoff, checkpoint interval); the other fields are what ``train_stage`` resolves for one stage on
    this machine: where the adapter goes, the stage's learning rate, the precision, the device, the
    cutoff bounded by the student's context, and the checkpoint folder (None: no checkpoints).
    """

    settings: FineTuneConfig
    output_dir: str
    learning_rate: float
    precision: str = "fp32"  # resolved: bf16 | fp16 | fp32
    use_cpu: bool = True
    max_length: int | None = None
    checkpoint_dir: str | None = None

    @property
    def checkpoints(self) -> bool:
        """True when checkpoints are saved (and resumed from) in ``checkpoint_dir``."""
        return self.settings.checkpoint_steps > 0 and bool(self.checkpoint_dir)


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
    #: How far the trainable weights moved from where this training started (the parent adapter or
    #: the fresh LoRA initialisation): :func:`dasd_utils.sft.schedule.adapter_change`.
    adapter_change: dict[str, float] | None = None


def sft_arguments(run: TrainingRun, per_device_batch_size: int, grad_accum: int, n_examples: int, world_size: int = 1):
    """Return TRL's ``SFTConfig`` for ``run`` with this batch split (the one place TRL's arguments are built).

    The warm-up is given as a number of steps, rounded down from ``sft.warmup_ratio``
    (:func:`dasd_utils.sft.schedule.warmup_steps`): transformers would round it up, and a short
    run's first step, its only warm-up step, would then run at a learning rate of 0.
    """
    from trl import SFTConfig

    from .schedule import planned_steps, warmup_steps

    settings = run.settings
    total = planned_steps(n_examples, per_device_batch_size, grad_accum, settings.epochs, settings.max_steps, world_size)
    checkpoints = run.checkpoints
    return SFTConfig(
        output_dir=run.checkpoint_dir if checkpoints else run.output_dir,
        learning_rate=run.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=per_device_batch_size,
        gradient_accumulation_steps=grad_accum,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=warmup_steps(settings.warmup_ratio, total),
        weight_decay=settings.weight_decay,
        bf16=run.precision == "bf16",
        fp16=run.precision == "fp16",
        use_cpu=run.use_cpu,
        gradient_checkpointing=settings.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        max_length=run.max_length,
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


def trainable_in_fp32(model) -> int:
    """Return how many trainable tensors were cast to fp32 (they train there under fp16 mixed precision).

    TRL's SFTTrainer casts the LoRA weights of a quantized (QLoRA) model to bf16, following the
    QLoRA paper; fp16 mixed precision (a T4, which has no bf16) then fails at the first optimizer
    step, because the gradient scaler only unscales fp32 gradients ("_amp_foreach_non_finite_check_
    and_unscale_cuda not implemented for 'BFloat16'", seen on a GPU with TRL 1.16). The adapter is
    small (33 M parameters for Qwen3-4B at r=16), so fp32 costs little memory.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


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
    return (read_json(checkpoint / "trainer_state.json") or {}).get("train_batch_size")


def fit(model, tokenizer, dataset, run: TrainingRun, callbacks: Sequence[Any] = ()) -> FitResult:
    """Return the result of training ``model`` (a PEFT model) on a tokenized dataset with TRL's SFTTrainer.

    With ``run.settings.checkpoint_steps``, a checkpoint is saved every that many steps into
    ``run.checkpoint_dir`` and training resumes from the last complete one found there
    (adapter, optimizer, scheduler, RNG states and the position in the data order restored, so the
    result equals an uninterrupted run's); ``FitResult.resumed_from`` names it. A NaN or infinite
    logged loss stops training with :class:`NonFiniteLoss`.

    On an out-of-memory error (and ``run.settings.oom_backoff``), accelerate's
    ``find_executable_batch_size`` retries with half the per-device batch and twice the gradient
    accumulation, so the effective batch stays the same; the adapter is first reset to its state
    before the failed attempt. Each backoff is logged as a warning and listed in the result.
    """
    from accelerate.utils import find_executable_batch_size
    from accelerate.utils.memory import should_reduce_batch_size
    from trl import SFTTrainer

    from accelerate import PartialState

    from .schedule import adapter_change

    settings = run.settings
    effective_batch = settings.per_device_batch_size * settings.grad_accum
    world_size = PartialState().num_processes
    # Where training starts (the parent adapter, or LoRA's initialisation): restored on an
    # out-of-memory retry, and compared with the end to measure how far the adapter moved.
    initial_state = _trainable_state(model)
    backoffs: list[dict[str, int]] = []
    attempts = {"n": 0}

    batch_holder = {"size": settings.per_device_batch_size}
    # A previous session that backed off to a smaller batch left checkpoints at that batch: start
    # there, so that the resume keeps the same batch split (and the same result).
    previous = last_checkpoint(run.checkpoint_dir) if run.checkpoints else None
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
            _restore_trainable(model, initial_state)
            clear_checkpoints(run.checkpoint_dir)  # the failed batch split's checkpoints cannot be resumed
        trainer = SFTTrainer(
            model=model,
            args=sft_arguments(run, per_device_batch_size, grad_accum, len(dataset), world_size),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[non_finite_loss_guard(run.precision), *callbacks],
        )
        if run.precision == "fp16":
            trainable_in_fp32(trainer.model)
        resume = last_checkpoint(run.checkpoint_dir) if run.checkpoints else None
        if resume is not None and _checkpoint_batch(resume) not in (None, per_device_batch_size):
            logger.warning("checkpoint %s was written with another per-device batch: starting over", resume)
            clear_checkpoints(run.checkpoint_dir)
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
            adapter_change=adapter_change(initial_state, _trainable_state(model)),
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


def prepare_checkpoints(folder: Path, inputs: Mapping[str, Any], force: bool = False, enabled: bool = True) -> bool:
    """Return True when ``folder`` holds checkpoints of these inputs to resume from; otherwise empty it.

    ``folder/inputs.json`` records the inputs the checkpoints were trained on: checkpoints of other
    inputs (changed data or settings), or any checkpoint when ``force`` or checkpoints are off, are
    deleted so that training starts over.
    """
    marker = folder / "inputs.json"
    if not force and enabled and marker.is_file():
        if same_inputs(read_json(marker), inputs):
            return True
        logger.info("%s holds checkpoints of other inputs: deleted, training starts over", folder)
    if folder.exists():
        shutil.rmtree(folder)
    if enabled:
        folder.mkdir(parents=True)
        write_json_atomic(marker, inputs)
    return False

