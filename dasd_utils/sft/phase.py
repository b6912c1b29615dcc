"""The training phase: what a stage's adapter depends on, reuse through its manifest, train_stage, the loss figure, run_phase."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from .. import layout
from ..config import Config, phase_settings
from ..data import read_jsonl, write_jsonl
from ..devices import free_memory
from ..hashing import adapter_sha256, file_sha256
from ..jsonl import read_json
from ..reuse import inputs_key, reusable
from ..summaries import SftManifest, write_summary
from ..timing import timed_part, timed_phase
from .data import build_sft_dataset, load_sft_examples
from .model import add_lora, load_base_model, load_trainable_adapter, resolve_precision, training_device
from .paths import ADAPTER_FILES, STAGES, checkpoint_dir, figure_path, has_adapter, sft_data_path, stage_dir
from .schedule import TrainingWouldNotLearn, check_plan, logged_learning_steps, plan
from .train import TrainingRun, fit, prepare_checkpoints, train_log_records

logger = logging.getLogger(__package__)

#: Bumped when the tokenization / masking recipe changes, so that old adapters are retrained.
RECIPE_VERSION = 2


def stage_inputs(cfg: Config, stage: int) -> dict[str, Any]:
    """Return everything that determines a stage's adapter: base model, data hash, settings, parent adapter.

    Two runs with equal ``stage_inputs`` give the same adapter (up to hardware non-determinism),
    so a matching manifest means the adapter is reused. Settings that change speed but not the
    result (gradient checkpointing, logging) are left out, and so is the hardware.
    """
    layout.check_stage(stage)
    s = cfg.sft
    data = sft_data_path(cfg, stage)
    if not data.is_file():
        raise layout.MissingPhaseOutput(data, "das")
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
        if not has_adapter(parent):
            raise layout.MissingPhaseOutput(parent, "train", 1, f"stage-1 adapter not found in {parent}: train stage 1 first")
        inputs["parent_adapter"] = {"sha256": adapter_sha256(parent)}
    return inputs


def read_manifest(cfg: Config, stage: int) -> dict[str, Any] | None:
    """Return the stage's manifest, or None when it has not been trained (completely) yet."""
    return read_json(layout.sft_manifest(cfg.run_dir, stage))


def reusable_manifest(cfg: Config, stage: int, inputs: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the stage's manifest when its adapter exists and was trained on the same inputs, else None."""
    path = layout.sft_manifest(cfg.run_dir, stage)
    if not path.is_file():  # never trained to the end: no need to hash the inputs
        return None
    inputs = stage_inputs(cfg, stage) if inputs is None else inputs
    adapter = [stage_dir(cfg, stage) / name for name in ADAPTER_FILES]
    return reusable(path, inputs_key(inputs), adapter)


def read_train_log(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the stage's ``train_log.jsonl`` records (empty when the stage has not been trained)."""
    path = layout.sft_train_log(cfg.run_dir, stage)
    return read_jsonl(path) if path.is_file() else []


def _in_run(cfg: Config, path: Path) -> str:
    """Return ``path`` relative to the run directory (what a manifest records: the run may move)."""
    return path.relative_to(cfg.run_dir).as_posix()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def training_name(cfg: Config, stage: int) -> str:
    """Return how messages name this training: "SFT stage N", or the analyses variant whose folder the run is."""
    run = Path(cfg.run_dir)
    if run.parent.name == "analyses":
        return f"the analyses variant {run.name!r} (its stage-2 training)"
    return f"SFT stage {stage}"


@timed_part("train", lambda stage, force=False: f"stage{stage}")  # the notebooks train stage by stage
def train_stage(cfg: Config, stage: int, force: bool = False) -> dict[str, Any]:
    """Return the manifest of ``stage`` after training it, or the existing one when its inputs did not change.

    Stage 1 adds a fresh LoRA adapter to the student; stage 2 loads the stage-1 adapter as
    trainable and continues with ``sft.lr_stage2``. Writes the adapter, the tokenizer,
    ``train_log.jsonl`` and ``manifest.json`` to ``sft/stage{stage}/`` (main process only).

    Raises :class:`~dasd_utils.sft.schedule.TrainingWouldNotLearn` before loading anything when the
    stage would make fewer than ``sft.min_learning_steps`` optimizer steps at a non-zero learning
    rate, and after training when the adapter did not move from its parent (nothing is saved as
    finished then), unless ``sft.allow_short_training``.
    """
    from ..models import load_tokenizer, resolve_model

    layout.check_stage(stage)
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
        layout.sft_manifest(cfg.run_dir, stage).unlink(missing_ok=True)
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
    step_plan = plan(stats.n_examples, cfg.sft, state.num_processes)
    check_plan(step_plan, cfg.sft, training_name(cfg, stage))  # before the model is loaded: fail in seconds

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
            f"[SFT] stage {stage} : {stats.n_examples} exemples ({stats.n_supervised_tokens} tokens supervisés), "
            f"{n_trainable:,} paramètres LoRA entraînables sur {n_total:,}, précision {precision}, "
            f"appareil {device}, lr {learning_rate:g}",
            flush=True,
        )
    run = TrainingRun(
        # Only a CUDA device runs out of memory in a way a smaller batch can fix.
        settings=dataclasses.replace(cfg.sft, oom_backoff=cfg.sft.oom_backoff and device == "cuda"),
        output_dir=str(out),
        learning_rate=learning_rate,
        precision=precision,
        use_cpu=device == "cpu",
        max_length=cutoff,
        checkpoint_dir=str(checkpoints) if cfg.sft.checkpoint_steps > 0 else None,
    )
    if cfg.sft.max_steps > 0 and state.is_main_process:
        planned = cfg.sft.max_steps * cfg.sft.per_device_batch_size * cfg.sft.grad_accum * state.num_processes
        if planned < stats.n_examples * cfg.sft.epochs:
            print(
                f"[SFT] stage {stage} : sft.max_steps={cfg.sft.max_steps} limite l'entraînement à environ {planned} "
                f"exemples vus sur {stats.n_examples} x {cfg.sft.epochs:g} époque(s)",
                flush=True,
            )
    result = fit(model, tokenizer, dataset, run)
    log = train_log_records(result.log_history)
    learned = logged_learning_steps(log) if cfg.sft.logging_steps == 1 else None
    change = result.adapter_change or {}
    if change.get("l2", 0.0) == 0.0 and not cfg.sft.allow_short_training:
        raise TrainingWouldNotLearn(
            f"{training_name(cfg, stage)} ended with an adapter equal to its parent (no weight moved: "
            f"{result.global_step} optimizer step(s), {learned if learned is not None else 'an unknown number'} at a "
            "non-zero learning rate). Nothing was saved as finished. Raise sft.epochs or lower sft.grad_accum / "
            "sft.per_device_batch_size so that more steps learn, check the learning rate (sft.lr_stage1 / "
            "sft.lr_stage2), or set sft.allow_short_training=true to keep it anyway."
        )
    trainer = result.trainer
    trainer.save_model(str(out))  # adapter + tokenizer, main process only (Trainer checks)
    manifest = {
        "stage": stage,
        "base_model": cfg.student.model,
        "base_model_path": resolve_model(cfg.student.model, cfg),
        "data_path": _in_run(cfg, sft_data_path(cfg, stage)),
        "data_sha256": inputs["data_sha256"],
        "parent_adapter": ({"path": _in_run(cfg, stage_dir(cfg, 1)), **inputs["parent_adapter"]} if stage == 2 else None),
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
        # Steps that could learn: planned before training, and counted in the log after it.
        "schedule": step_plan.to_dict(),
        "learning_steps": learned,
        "adapter_change": {k: round(v, 6) for k, v in change.items()} if change else None,
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
        write_jsonl(layout.sft_train_log(cfg.run_dir, stage), log)
        (out / "training_args.bin").unlink(missing_ok=True)  # pickled arguments: not needed, not portable
        manifest["wall_time_s"] = round(time.perf_counter() - wall_start, 1)
        manifest = {"key": inputs_key(inputs), **manifest}  # the reuse key (reuse.reusable compares it)
        write_summary(layout.sft_manifest(cfg.run_dir, stage), SftManifest.from_dict(manifest))
        # The finished adapter is saved: the checkpoints (with optimizer states) are no longer needed.
        shutil.rmtree(checkpoints, ignore_errors=True)
    state.wait_for_everyone()
    del trainer, result, model
    free_memory()
    manifest.setdefault("wall_time_s", round(time.perf_counter() - wall_start, 1))
    return dict(manifest, reused=False)


def distributed_state(cfg: Config):
    """Return accelerate's process state (rank, number of processes), set up for the training device.

    Under ``accelerate launch`` / ``torchrun`` on GPUs this initialises NCCL; on the CPU it must be
    told so (``cpu=True``) to use gloo, otherwise every process would believe it is the main one.
    """
    from accelerate import PartialState

    return PartialState(cpu=training_device(cfg.student.device) == "cpu")


def plot_loss(cfg: Config) -> Path | None:
    """Return the path of ``figures/sft_loss.png`` drawn from both stages' logs (None when nothing is logged)."""
    from ..plots.sft import plot_sft_loss

    logs = {f"stage{stage}": read_train_log(cfg, stage) for stage in STAGES}
    if not any(logs.values()):
        return None
    return plot_sft_loss(logs, figure_path(cfg), profile=cfg.profile)


def _stage_summary(cfg: Config, manifest: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("steps", "learning_steps", "epochs", "first_loss", "final_loss", "train_loss", "num_tokens",
            "tokens_per_s", "train_runtime_s", "wall_time_s", "reused")
    summary = {key: manifest.get(key) for key in keys}
    summary["n_examples"] = manifest.get("dataset", {}).get("n_examples")
    summary["adapter_change_l2"] = (manifest.get("adapter_change") or {}).get("l2")
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


