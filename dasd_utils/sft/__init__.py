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

Modules: :mod:`.data` (examples, tokenization and the loss mask), :mod:`.model` (device, precision,
base model, LoRA), :mod:`.train` (one ``fit`` with TRL: arguments, backoff, checkpoints),
:mod:`.phase` (stage inputs and reuse, ``train_stage``, ``run_phase``), :mod:`.schedule` (how many steps
learn: the warm-up rule and the guard against a training that cannot learn), :mod:`.paths`.
"""

from __future__ import annotations

from ..chat import END_OF_TURN_TOKENS, end_of_turn_ids
from ..config import FineTuneConfig
from ..hashing import adapter_sha256, file_sha256
from .data import DatasetStats, build_sft_dataset, load_sft_examples, tokenize_sft_example
from .model import (
    SFTSetupError,
    qlora_kwargs,
    add_lora,
    load_adapter_model,
    load_base_model,
    load_trainable_adapter,
    lora_config,
    resolve_precision,
    training_device,
)
from .paths import ADAPTER_FILES, STAGES, checkpoint_dir, figure_path, has_adapter, sft_data_path, stage_dir
from .phase import (
    RECIPE_VERSION,
    distributed_state,
    plot_loss,
    read_manifest,
    read_train_log,
    reusable_manifest,
    run_phase,
    stage_inputs,
    train_stage,
)
from .schedule import StepPlan, TrainingWouldNotLearn, adapter_change, check_plan, logged_learning_steps, plan, warmup_steps
from .train import (
    FitResult,
    NonFiniteLoss,
    TrainingRun,
    clear_checkpoints,
    fit,
    last_checkpoint,
    non_finite_loss_guard,
    prepare_checkpoints,
    sft_arguments,
    train_log_records,
)

__all__ = [
    "ADAPTER_FILES",
    "DatasetStats",
    "END_OF_TURN_TOKENS",
    "FineTuneConfig",
    "FitResult",
    "NonFiniteLoss",
    "RECIPE_VERSION",
    "SFTSetupError",
    "STAGES",
    "StepPlan",
    "TrainingRun",
    "TrainingWouldNotLearn",
    "adapter_change",
    "check_plan",
    "logged_learning_steps",
    "plan",
    "warmup_steps",
    "adapter_sha256",
    "add_lora",
    "build_sft_dataset",
    "checkpoint_dir",
    "clear_checkpoints",
    "distributed_state",
    "end_of_turn_ids",
    "figure_path",
    "file_sha256",
    "fit",
    "has_adapter",
    "last_checkpoint",
    "load_adapter_model",
    "load_base_model",
    "load_sft_examples",
    "load_trainable_adapter",
    "lora_config",
    "non_finite_loss_guard",
    "plot_loss",
    "qlora_kwargs",
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
