"""SFT survives a disconnect: checkpoints every N steps, resume gives the same adapter; NaN losses stop training."""

from __future__ import annotations

import json

import pytest

from dasd_utils import sft
from support.sft_runs import adapter_tensors, tiny_sft_cfg, write_sft_file

pytestmark = pytest.mark.trains


class Disconnect(RuntimeError):
    """Stands for a Colab session dying right after a checkpoint was written."""


def _stop_after_save(step: int):
    from transformers import TrainerCallback

    class StopAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Disconnect(f"killed after checkpoint {step}")

    return StopAfterSave()


def _with_callback(monkeypatch, callback):
    real_fit = sft.fit

    def fit(model, tokenizer, dataset, settings, callbacks=()):
        return real_fit(model, tokenizer, dataset, settings, [*callbacks, callback])

    monkeypatch.setattr(sft.phase, "fit", fit)


def _train_until_killed(monkeypatch, cfg, step: int) -> None:
    """Train stage 1 until the session "dies" right after checkpoint ``step``."""
    with monkeypatch.context() as patch:
        _with_callback(patch, _stop_after_save(step))
        with pytest.raises(Disconnect):
            sft.train_stage(cfg, 1)


def _cfg(run_dir, tiny_model_dir):
    # 8 examples, batch 2 x 1, 2 epochs = 8 steps; dropout on, so the resumed RNG state matters too.
    return tiny_sft_cfg(run_dir, tiny_model_dir, **{
        "sft.max_steps": -1, "sft.epochs": 2, "sft.checkpoint_steps": 3, "sft.lora_dropout": 0.1,
    })


def test_killed_and_resumed_training_ends_with_the_same_adapter(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import torch

    straight = _cfg(tmp_path / "straight", tiny_model_dir)
    write_sft_file(straight, 1, 8)
    reference = sft.train_stage(straight, 1)
    assert reference["steps"] == 8 and reference["resumed_from"] is None
    assert not sft.checkpoint_dir(straight, 1).exists()  # deleted once the stage finished

    killed = _cfg(tmp_path / "killed", tiny_model_dir)
    write_sft_file(killed, 1, 8)
    _train_until_killed(monkeypatch, killed, 6)
    folder = sft.checkpoint_dir(killed, 1)
    assert sft.last_checkpoint(folder).name == "checkpoint-6"
    assert sft.read_manifest(killed, 1) is None  # an interrupted stage is never reused as finished
    torch.manual_seed(999)  # a new session: other global RNG history
    resumed = sft.train_stage(killed, 1)
    assert resumed["resumed_from"] == "checkpoint-6" and resumed["steps"] == 8
    assert "reprise depuis le checkpoint checkpoint-6" in capsys.readouterr().out
    assert not folder.exists()
    a, b = adapter_tensors(sft.stage_dir(straight, 1)), adapter_tensors(sft.stage_dir(killed, 1))
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the loss log of the resumed run continues the interrupted one: the same final losses
    assert [r["loss"] for r in sft.read_train_log(killed, 1)][-2:] == [r["loss"] for r in sft.read_train_log(straight, 1)][-2:]


def test_checkpoints_of_other_inputs_or_forced_runs_are_discarded(tmp_path, tiny_model_dir, monkeypatch):
    cfg = _cfg(tmp_path / "run", tiny_model_dir)
    write_sft_file(cfg, 1, 8)
    _train_until_killed(monkeypatch, cfg, 3)
    folder = sft.checkpoint_dir(cfg, 1)
    inputs = sft.stage_inputs(cfg, 1)
    assert json.loads((folder / "inputs.json").read_text())["settings"] == inputs["settings"]
    assert sft.prepare_checkpoints(folder, inputs) is True and sft.last_checkpoint(folder) is not None
    changed = dict(inputs, data_sha256="0" * 64)
    assert sft.prepare_checkpoints(folder, changed) is False
    assert sft.last_checkpoint(folder) is None
    assert sft.prepare_checkpoints(folder, changed, force=True) is False
    assert sft.prepare_checkpoints(folder, changed, enabled=False) is False and not folder.exists()


def test_a_nan_loss_stops_training_with_a_clear_message(tmp_path, tiny_model_dir, monkeypatch):
    """An fp16 overflow shows up as a NaN loss: training must stop, not save a garbage adapter."""
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{"sft.max_steps": 4, "sft.checkpoint_steps": 0})
    write_sft_file(cfg, 1, 4)
    real_add_lora = sft.add_lora
    calls = {"n": 0}

    def poisoned(model, cfg):
        peft_model = real_add_lora(model, cfg)

        def hook(module, args, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] >= 2 else output  # overflow from the 2nd forward on

        peft_model.get_input_embeddings().register_forward_hook(hook)
        return peft_model

    monkeypatch.setattr(sft.phase, "add_lora", poisoned)
    with pytest.raises(sft.NonFiniteLoss, match=r"training stopped at step 2: the loss is nan"):
        sft.train_stage(cfg, 1)
    assert sft.read_manifest(cfg, 1) is None
    assert not (sft.stage_dir(cfg, 1) / "adapter_model.safetensors").exists()


def test_guard_names_the_fp16_remedies():
    from types import SimpleNamespace

    guard = sft.non_finite_loss_guard("fp16")
    state = SimpleNamespace(global_step=17)
    guard.on_log(None, state, None, logs={"loss": 1.25})  # finite: nothing happens
    guard.on_log(None, state, None, logs={"learning_rate": 1e-4})
    with pytest.raises(sft.NonFiniteLoss, match="step 17: the loss is inf .*fp16 overflow.*sft.precision=fp32"):
        guard.on_log(None, state, None, logs={"loss": float("inf")})


def test_training_arguments_checkpoint_and_keep_nan_in_the_log(tmp_path):
    settings = sft.TrainingRun(sft.FineTuneConfig(checkpoint_steps=5), output_dir=str(tmp_path / "out"),
                               learning_rate=1e-4, checkpoint_dir=str(tmp_path / "out" / "checkpoints"))
    args = sft.sft_arguments(settings, 2, 4, 16)
    assert args.save_strategy == "steps" and args.save_steps == 5 and args.output_dir.endswith("checkpoints")
    assert args.logging_nan_inf_filter is False
    off = sft.sft_arguments(sft.TrainingRun(sft.FineTuneConfig(checkpoint_steps=0), output_dir=str(tmp_path / "o"),
                                            learning_rate=1e-4), 2, 4, 16)
    assert off.save_strategy == "no"


def test_qlora_without_bitsandbytes_names_the_optional_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(sft.SFTSetupError, match=r'optional extra.*pip install -e "\.\[qlora\]"'):
        sft.qlora_kwargs("fp16", "cuda")


def test_resume_keeps_the_batch_an_earlier_session_backed_off_to(tmp_path, tiny_model_dir, monkeypatch):
    """A T4 session that halved its batch after an OOM, then died: the next one resumes at that batch."""
    import torch

    from dasd_utils.models import load_tokenizer

    cfg = _cfg(tmp_path / "run", tiny_model_dir)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    records = sft.load_sft_examples(write_sft_file(cfg, 1, 4), cfg.system_prompt)
    dataset, _ = sft.build_sft_dataset(records, tokenizer, 256)

    def settings(name, batch, accum, backoff):
        return sft.TrainingRun(
            sft.FineTuneConfig(epochs=1, per_device_batch_size=batch, grad_accum=accum, gradient_checkpointing=False,
                               seed=42, oom_backoff=backoff, checkpoint_steps=1),
            output_dir=str(tmp_path / name), learning_rate=2e-4, precision="fp32", use_cpu=True, max_length=256,
            checkpoint_dir=str(tmp_path / name / "checkpoints"))

    def model():
        return sft.add_lora(sft.load_base_model(cfg, "fp32", "cpu"), cfg)

    reference = sft.fit(model(), tokenizer, dataset, settings("ref", 1, 2, False))
    with pytest.raises(Disconnect):  # the earlier session, already at batch 1 x 2, dies after step 1
        sft.fit(model(), tokenizer, dataset, settings("run", 1, 2, False), [_stop_after_save(1)])
    resumed = sft.fit(model(), tokenizer, dataset, settings("run", 2, 1, True))  # configured 2 x 1
    assert resumed.resumed_from == "checkpoint-1"
    assert (resumed.per_device_batch_size, resumed.grad_accum) == (1, 2)
    assert resumed.oom_backoffs[0] == {"per_device_batch_size": 1, "grad_accum": 2, "from_checkpoint": True}
    a = {n: p for n, p in reference.trainer.model.named_parameters() if "lora_" in n}
    b = {n: p for n, p in resumed.trainer.model.named_parameters() if "lora_" in n}
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name
