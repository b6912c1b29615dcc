"""How many optimizer steps learn, the warm-up rule, and the guard against a training that cannot learn."""

from __future__ import annotations

import dataclasses

import pytest

from dasd_utils import sft
from dasd_utils.config import FineTuneConfig, load_config
from dasd_utils.sft.schedule import (
    TrainingWouldNotLearn,
    adapter_change,
    check_plan,
    learning_steps,
    logged_learning_steps,
    plan,
    planned_steps,
    warmup_steps,
)
from support.sft_runs import tiny_sft_cfg, write_sft_file


# --------------------------------------------------------------------------- the arithmetic
@pytest.mark.parametrize("n, batch, accum, epochs, world, expected", [
    (6, 2, 4, 1.0, 1, 1),     # the demo's old stage 2: 3 batches, one (partial) accumulation
    (23, 2, 4, 1.0, 1, 3),    # 12 batches -> ceil(12 / 4)
    (23, 2, 1, 2.0, 1, 24),   # 12 steps per epoch, two epochs
    (550, 2, 4, 3.0, 1, 207),  # the course's stage 1: 275 batches -> 69 steps per epoch
    (550, 2, 4, 3.0, 4, 54),  # four processes: 69 batches each -> 18 steps per epoch
    (7, 2, 1, 1.5, 1, 6),     # fractional epochs round up, as the Trainer does
])
def test_planned_steps_count_like_the_trainer(n, batch, accum, epochs, world, expected):
    assert planned_steps(n, batch, accum, epochs, world_size=world) == expected
    assert planned_steps(n, batch, accum, epochs, max_steps=3, world_size=world) == 3


def test_warmup_is_rounded_down_so_a_short_run_has_none():
    assert warmup_steps(0.03, 1) == 0  # transformers' ceil would give 1: the only step at lr 0
    assert warmup_steps(0.03, 33) == 0 and warmup_steps(0.03, 34) == 1
    assert warmup_steps(0.03, 207) == 6  # the course's stage 1 (ceil: 7)
    assert warmup_steps(0.0, 500) == 0
    assert learning_steps(1, 0) == 1 and learning_steps(1, 1) == 0 and learning_steps(207, 6) == 206


def test_the_plan_of_the_demos_old_stage_2_does_not_learn_and_is_refused():
    settings = FineTuneConfig(per_device_batch_size=2, grad_accum=4, epochs=1.0, warmup_ratio=0.03)
    step_plan = plan(6, settings)
    assert (step_plan.steps, step_plan.warmup_steps, step_plan.learning_steps) == (1, 0, 1)
    with pytest.raises(TrainingWouldNotLearn) as exc:
        check_plan(step_plan, settings, "SFT stage 2")
    message = str(exc.value)
    for needle in ("SFT stage 2 would make 1 optimizer step(s)", "sft.min_learning_steps=5", "6 examples at 8 per step",
                   "sft.grad_accum", "sft.per_device_batch_size", "sft.epochs", "sft.warmup_ratio",
                   "sft.allow_short_training=true"):
        assert needle in message
    check_plan(step_plan, dataclasses.replace(settings, allow_short_training=True), "SFT stage 2")  # allowed: no error
    check_plan(plan(6, dataclasses.replace(settings, grad_accum=1, epochs=4.0)), settings, "SFT stage 2")  # 12 steps


def test_logged_learning_steps_count_the_steps_above_zero():
    log = [{"step": 1, "loss": 2.0, "learning_rate": 0.0}, {"step": 2, "loss": 1.9, "learning_rate": 1e-4},
           {"train_runtime": 3.0}, {"step": 3, "loss": 1.8, "learning_rate": 5e-5}]
    assert logged_learning_steps(log) == 2
    assert logged_learning_steps([{"train_runtime": 1.0}]) is None


def test_adapter_change_is_zero_only_when_no_weight_moved():
    import torch

    before = {"a": torch.ones(2, 2), "b": torch.zeros(3)}
    assert adapter_change(before, {k: v.clone() for k, v in before.items()}) == {"l2": 0.0, "relative": 0.0, "max_abs": 0.0}
    moved = adapter_change(before, {"a": torch.ones(2, 2), "b": torch.tensor([0.0, 3.0, 4.0])})
    assert moved["l2"] == pytest.approx(5.0) and moved["relative"] == pytest.approx(2.5) and moved["max_abs"] == 4.0


def test_min_learning_steps_is_a_setting_a_notebook_may_change():
    from dasd_utils.config import OPERATIONAL_KEYS

    assert {"sft.min_learning_steps", "sft.allow_short_training"} <= OPERATIONAL_KEYS
    assert load_config("colab").sft.min_learning_steps == 5 and not load_config("colab").sft.allow_short_training


# --------------------------------------------------------------------------- the guard in train_stage
def test_a_degenerate_setting_stops_before_anything_is_trained(tmp_path, tiny_model_dir):
    # One example and a large accumulation: one optimizer step in all.
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{
        "sft.max_steps": -1, "sft.per_device_batch_size": 1, "sft.grad_accum": 16, "sft.epochs": 1.0,
        "sft.min_learning_steps": 5})
    write_sft_file(cfg, 1, 1)
    with pytest.raises(TrainingWouldNotLearn, match=r"SFT stage 1 would make 1 optimizer step\(s\).*1 examples at 16 per step"):
        sft.train_stage(cfg, 1)
    assert sft.read_manifest(cfg, 1) is None and not sft.has_adapter(sft.stage_dir(cfg, 1))


@pytest.mark.trains
def test_a_short_run_learns_at_every_step_and_its_manifest_says_how_far_it_moved(tmp_path, tiny_model_dir):
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{
        "sft.max_steps": -1, "sft.per_device_batch_size": 2, "sft.grad_accum": 1, "sft.epochs": 1.0,
        "sft.warmup_ratio": 0.03, "sft.min_learning_steps": 3})
    write_sft_file(cfg, 1, 6)
    manifest = sft.train_stage(cfg, 1)
    assert manifest["steps"] == 3 and manifest["schedule"]["warmup_steps"] == 0
    assert manifest["learning_steps"] == 3  # transformers' own rounding would have run step 1 at lr 0
    assert all(r["learning_rate"] > 0 for r in sft.read_train_log(cfg, 1))
    assert manifest["adapter_change"]["l2"] > 0 and manifest["adapter_change"]["max_abs"] > 0
    write_sft_file(cfg, 2, 6, offset=60)
    stage2 = sft.train_stage(cfg, 2)
    assert stage2["learning_steps"] == 3 and stage2["adapter_change"]["relative"] > 0  # moved from the stage-1 adapter


@pytest.mark.trains
def test_an_adapter_equal_to_its_parent_is_not_saved_as_finished(tmp_path, tiny_model_dir, monkeypatch):
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir)
    write_sft_file(cfg, 1, 4)
    real_fit = sft.phase.fit

    def frozen(model, tokenizer, dataset, run, callbacks=()):  # a learning rate of 0: no weight can move
        return real_fit(model, tokenizer, dataset, dataclasses.replace(run, learning_rate=0.0), callbacks)

    monkeypatch.setattr(sft.phase, "fit", frozen)
    with pytest.raises(TrainingWouldNotLearn, match="ended with an adapter equal to its parent"):
        sft.train_stage(cfg, 1)
    assert sft.read_manifest(cfg, 1) is None
    cfg.sft.allow_short_training = True  # explicitly allowed: trained and recorded as such
    manifest = sft.train_stage(cfg, 1)
    assert manifest["adapter_change"]["l2"] == 0.0 and manifest["learning_steps"] == 0
