"""How many optimizer steps a training makes, how many of them learn, and the guard against a training that cannot.

A stage whose optimizer steps all run at a learning rate of 0 saves an adapter equal to its parent:
every later comparison then compares a model with itself. That happened in the demo: 6 examples,
batch 2 × accumulation 4, one epoch give **one** optimizer step, and transformers rounds the warm-up
*up* (``ceil(0.03 × 1) = 1``); a linear warm-up starts at 0, so the only step ran at lr 0.

The rules here:

* **Steps.** As the Hugging Face Trainer counts them: ``ceil(examples / (batch × processes))``
  batches per epoch, ``ceil(batches / accumulation)`` optimizer steps per epoch (at least 1), and
  ``ceil(epochs × steps per epoch)`` in all (or ``sft.max_steps`` when set).
* **Warm-up, rounded down** (:func:`warmup_steps`): ``floor(warmup_ratio × steps)``. Transformers
  rounds up, which gives a short run one warm-up step, its first, at lr 0; rounding down gives a
  run shorter than ``1 / warmup_ratio`` steps (34 at the course's 3 %) no warm-up at all, and leaves
  long runs as they were (the course's 3 epochs of 550 questions: 6 warm-up steps of 207 instead
  of 7).
* **Learning steps** (:func:`learning_steps`): the steps whose learning rate is above 0. The
  schedules the project uses (cosine, linear, constant, each with an optional linear warm-up from 0)
  are zero only at the warm-up's first step; the logged learning rate of each step is the one it
  used (transformers logs it before the scheduler moves), so :func:`logged_learning_steps` counts
  them from ``train_log.jsonl`` after training.

:func:`check_plan` refuses, before anything is loaded, a stage that would make fewer than
``sft.min_learning_steps`` learning steps; ``sft.allow_short_training`` lets it run anyway.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping


class TrainingWouldNotLearn(ValueError):
    """A stage would make too few optimizer steps at a non-zero learning rate; the message says what to change."""


@dataclass(frozen=True)
class StepPlan:
    """The optimizer steps a training will make: in all, in warm-up, and at a non-zero learning rate."""

    examples: int
    examples_per_step: int
    steps_per_epoch: int
    steps: int
    warmup_steps: int
    learning_steps: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def planned_steps(n_examples: int, per_device_batch_size: int, grad_accum: int, epochs: float,
                  max_steps: int = -1, world_size: int = 1) -> int:
    """Return the number of optimizer steps the Trainer will make (its own count: partial batches and accumulations included)."""
    if max_steps > 0:
        return max_steps
    batches = math.ceil(n_examples / max(1, per_device_batch_size * world_size))
    per_epoch = max(math.ceil(batches / max(1, grad_accum)), 1)
    return math.ceil(epochs * per_epoch)


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """Return the warm-up steps of a run of ``total_steps``: ``floor(warmup_ratio × total_steps)``."""
    return int(math.floor(max(0.0, warmup_ratio) * total_steps))


def learning_steps(total_steps: int, warmup: int) -> int:
    """Return how many steps run at a learning rate above 0: all but the warm-up's first (lr 0), when there is a warm-up."""
    return max(0, total_steps - (1 if warmup >= 1 else 0))


def plan(n_examples: int, settings: Any, world_size: int = 1) -> StepPlan:
    """Return the :class:`StepPlan` of training ``n_examples`` with ``settings`` (a FineTuneConfig)."""
    batch, accum = settings.per_device_batch_size, settings.grad_accum
    steps = planned_steps(n_examples, batch, accum, settings.epochs, settings.max_steps, world_size)
    warmup = warmup_steps(settings.warmup_ratio, steps)
    return StepPlan(n_examples, batch * accum * world_size, planned_steps(n_examples, batch, accum, 1.0, -1, world_size),
                    steps, warmup, learning_steps(steps, warmup))


def check_plan(step_plan: StepPlan, settings: Any, what: str) -> None:
    """Raise :class:`TrainingWouldNotLearn` when ``step_plan`` learns in fewer than ``sft.min_learning_steps`` steps.

    ``what`` names the training ("SFT stage 2", "analyses variant random_s1"). Nothing is raised
    when ``sft.allow_short_training`` is set.
    """
    minimum = int(settings.min_learning_steps)
    if step_plan.learning_steps >= minimum or settings.allow_short_training:
        return
    warm = (f", of which {step_plan.warmup_steps} warm-up step(s) (the first at lr 0)" if step_plan.warmup_steps else "")
    steps = (f"sft.max_steps={settings.max_steps} step(s)" if settings.max_steps > 0 else
             f"{step_plan.steps_per_epoch} step(s) per epoch, x sft.epochs={settings.epochs:g} = {step_plan.steps} step(s)")
    raise TrainingWouldNotLearn(
        f"{what} would make {step_plan.learning_steps} optimizer step(s) at a non-zero learning rate, fewer than "
        f"sft.min_learning_steps={minimum}: {step_plan.examples} examples at {step_plan.examples_per_step} per step "
        f"(sft.per_device_batch_size={settings.per_device_batch_size} x sft.grad_accum={settings.grad_accum}) give "
        f"{steps}{warm}. Its adapter "
        "would stay (almost) equal to its parent and every comparison with it would compare a model with itself. "
        "Change one of: sft.grad_accum or sft.per_device_batch_size (fewer examples per step), sft.epochs (more "
        "passes), sft.warmup_ratio (shorter warm-up), or give the stage more examples; or set "
        "sft.allow_short_training=true to train anyway."
    )


def logged_learning_steps(log: Iterable[Mapping[str, Any]]) -> int | None:
    """Return how many logged steps had a learning rate above 0 (None when the log holds no learning rate).

    Exact with ``sft.logging_steps = 1`` (every step logged with the rate it used).
    """
    rates = [entry.get("learning_rate") for entry in log if "loss" in entry]
    rates = [r for r in rates if r is not None]
    if not rates:
        return None
    return sum(1 for r in rates if float(r) > 0.0)


def adapter_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Return how far the trainable weights moved: L2 norm of the difference, relative to the starting norm, largest change.

    ``before`` and ``after`` map parameter names to tensors (the trainable LoRA weights at the start
    of training, i.e. the parent adapter or the fresh LoRA initialisation, and at the end).
    """
    import torch

    diff_sq = start_sq = 0.0
    largest = 0.0
    for name, start in before.items():
        end = after[name].to(start.device, torch.float64)
        start = start.to(torch.float64)
        delta = end - start
        diff_sq += float(torch.sum(delta * delta))
        start_sq += float(torch.sum(start * start))
        largest = max(largest, float(delta.abs().max())) if delta.numel() else largest
    l2 = math.sqrt(diff_sq)
    return {"l2": l2, "relative": l2 / math.sqrt(start_sq) if start_sq > 0 else (math.inf if l2 > 0 else 0.0),
            "max_abs": largest}


__all__ = ["StepPlan", "TrainingWouldNotLearn", "adapter_change", "check_plan", "learning_steps",
           "logged_learning_steps", "plan", "planned_steps", "warmup_steps"]
