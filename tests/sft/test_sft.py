"""Phases 5-6: label masking, LoRA training with TRL, stage 2 from stage 1, reuse, hardware choices."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dasd_utils import sft
from dasd_utils.config import SMOLLM2_PYPI, load_config
from dasd_utils.data import load_split, write_jsonl
from dasd_utils.prompts import build_sft_example
from support.sft_runs import RESPONSE, adapter_tensors, sft_rows, tiny_sft_cfg, write_sft_file

@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from dasd_utils.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


# --------------------------------------------------------------------------- masking
def test_label_mask_covers_exactly_the_response_and_end_of_turn(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.pad_token_id != tok.eos_token_id, "a pad token equal to EOS would mask <|im_end|>"
    row = sft_rows(1)[0]
    messages = build_sft_example(row, RESPONSE)
    out = sft.tokenize_sft_example(tok, messages)
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == len(labels)

    supervised = [i for i, label in enumerate(labels) if label != -100]
    # One contiguous span, starting right after the generation prompt.
    assert supervised == list(range(supervised[0], supervised[-1] + 1))
    assert all(labels[i] == ids[i] for i in supervised)
    generation_prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(generation_prompt, add_special_tokens=False)["input_ids"]
    assert supervised[0] == len(prompt_ids) == out["prompt_len"]
    assert ids[: len(prompt_ids)] == prompt_ids
    assert tok.decode(ids[: supervised[0]]).endswith("<|im_start|>assistant\n")

    # The span is the response text followed by exactly one end-of-turn token.
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids[supervised[-1]] == im_end
    assert tok.decode([ids[i] for i in supervised[:-1]]) == RESPONSE
    assert im_end not in [ids[i] for i in supervised[:-1]]
    # What the template writes after <|im_end|> (a newline) is not trained on.
    assert supervised[-1] + 1 == out["response_end"]
    tail = ids[out["response_end"] :]
    assert tok.decode(tail) == "\n" and all(labels[i] == -100 for i in range(out["response_end"], len(ids)))
    assert not out["truncated"] and not out["prompt_mismatch"]


def test_build_dataset_truncates_and_drops_with_counts(tiny_tokenizer, caplog):
    row = sft_rows(1)[0]
    long_resp = "<reasoning>\n" + "word " * 300 + "\n</reasoning>\nFinal Answer: C"
    records = [{"messages": build_sft_example(row, RESPONSE)}, {"messages": build_sft_example(row, long_resp)}]
    full = sft.tokenize_sft_example(tiny_tokenizer, records[0]["messages"])
    cutoff = len(full["input_ids"]) + 5
    with caplog.at_level(logging.WARNING, logger="dasd_utils.sft"):
        dataset, stats = sft.build_sft_dataset(records, tiny_tokenizer, cutoff)
    assert stats.n_examples == 2 and stats.n_truncated == 1
    assert max(len(x) for x in dataset["input_ids"]) == cutoff
    assert "truncated" in caplog.text

    # A cutoff shorter than the prompt leaves no supervised token: dropped, counted, and an error if nothing is left.
    with pytest.raises(ValueError, match="no SFT example left"):
        sft.build_sft_dataset(records, tiny_tokenizer, full["prompt_len"] - 1)


def test_load_sft_examples_rejects_bad_records(tmp_path):
    path = tmp_path / "x.jsonl"
    with pytest.raises(FileNotFoundError, match="das"):
        sft.load_sft_examples(path)
    row = sft_rows(1)[0]
    good = {"messages": build_sft_example(row, RESPONSE)}
    write_jsonl(path, [good, {"messages": good["messages"][1:]}])
    with pytest.raises(ValueError, match="record 2"):
        sft.load_sft_examples(path)
    write_jsonl(path, [good])
    assert len(sft.load_sft_examples(path, good["messages"][0]["content"])) == 1
    with pytest.raises(ValueError, match="system prompt"):
        sft.load_sft_examples(path, "another system prompt")


# --------------------------------------------------------------------------- training
@pytest.mark.trains
def test_loss_decreases_on_a_fixed_batch(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = load_config("demo", overrides={"sft.lora_dropout": 0.0})
    row = sft_rows(1)[0]
    messages = build_sft_example(row, RESPONSE, system_prompt="Answer.")
    dataset, _ = sft.build_sft_dataset([{"messages": messages}] * 2, tiny_tokenizer, 512)
    model = sft.add_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    settings = sft.TrainingRun(
        sft.FineTuneConfig(epochs=1, per_device_batch_size=2, grad_accum=1, gradient_checkpointing=False, max_steps=8,
                           lr_scheduler="constant", warmup_ratio=0.0, oom_backoff=False),
        output_dir=str(tmp_path / "out"), learning_rate=5e-3, precision="fp32", use_cpu=True, max_length=512,
    )
    result = sft.fit(model, tiny_tokenizer, dataset, settings)
    losses = [r["loss"] for r in sft.train_log_records(result.log_history)]
    assert len(losses) == 8 and result.global_step == 8
    assert losses[-1] < losses[0] - 0.3, losses
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    """Run both stages once on the tiny model, recording the model seen by ``fit`` at each stage."""
    mp = pytest.MonkeyPatch()
    records = []
    real_fit = sft.fit

    def spy(model, tokenizer, dataset, settings, callbacks=()):
        entry = {
            "model": model,
            "lr": settings.learning_rate,
            "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
            "lora_before": {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n},
            "base_before": {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n},
        }
        result = real_fit(model, tokenizer, dataset, settings, callbacks)
        entry["lora_after"] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
        entry["base_after"] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
        records.append(entry)
        return result

    mp.setattr(sft.phase, "fit", spy)
    cfg = tiny_sft_cfg(tmp_path_factory.mktemp("sft") / "run", tiny_model_dir)
    write_sft_file(cfg, 1, 4)
    write_sft_file(cfg, 2, 4, offset=60)
    summary = sft.run_phase(cfg)
    mp.undo()
    return cfg, summary, records


def _param_name(saved_key: str) -> str:
    # PEFT saves "...q_proj.lora_A.weight" for the parameter "...q_proj.lora_A.default.weight".
    return saved_key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")


@pytest.mark.trains
def test_run_phase_writes_adapters_logs_manifests_and_figure(trained_run):
    cfg, summary, records = trained_run
    assert len(records) == 2
    for stage in (1, 2):
        folder = sft.stage_dir(cfg, stage)
        for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json",
                     "train_log.jsonl", "manifest.json"):
            assert (folder / name).is_file(), f"stage {stage}: {name} missing"
        log = sft.read_train_log(cfg, stage)
        assert [r["step"] for r in log] == [1, 2]
        assert all({"step", "loss", "learning_rate", "epoch"} <= set(r) for r in log)
        manifest = sft.read_manifest(cfg, stage)
        assert manifest["base_model"] == cfg.student.model
        assert manifest["data_sha256"] == sft.file_sha256(sft.sft_data_path(cfg, stage))
        assert manifest["steps"] == 2 and manifest["final_loss"] == log[-1]["loss"]
        assert manifest["tokens_per_s"] > 0 and manifest["wall_time_s"] > 0
        assert manifest["config"]["lora_r"] == cfg.sft.lora_r
        assert summary[f"stage{stage}"]["final_loss"] == manifest["final_loss"]
        assert summary[f"stage{stage}"]["reused"] is False
        tokenizer_cfg = json.loads((folder / "tokenizer_config.json").read_text())
        assert tokenizer_cfg.get("pad_token") != tokenizer_cfg.get("eos_token")
    assert sft.read_manifest(cfg, 2)["parent_adapter"]["sha256"] == sft.adapter_sha256(sft.stage_dir(cfg, 1))
    figure = Path(summary["figure"])
    assert figure == sft.figure_path(cfg) and figure.stat().st_size > 5000
    assert (records[0]["lr"], records[1]["lr"]) == (cfg.sft.lr_stage1, cfg.sft.lr_stage2)


@pytest.mark.trains
def test_stage2_starts_from_stage1_adapter_and_base_stays_untouched(trained_run, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    cfg, _, records = trained_run
    stage1, stage2 = records
    saved1 = adapter_tensors(sft.stage_dir(cfg, 1))
    assert saved1, "stage-1 adapter is empty"
    # Stage 2's LoRA weights before its first step are exactly the saved stage-1 adapter ...
    assert {_param_name(k) for k in saved1} == set(stage2["lora_before"])
    for key, tensor in saved1.items():
        assert torch.equal(stage2["lora_before"][_param_name(key)], tensor), key
    # ... and equal stage 1's weights at the end of its training (and differ from its start).
    for name, tensor in stage1["lora_after"].items():
        assert torch.equal(stage2["lora_before"][name], tensor)
    assert any(not torch.equal(stage1["lora_before"][n], stage1["lora_after"][n]) for n in stage1["lora_after"])
    # They are trainable (and only they) and stage 2 moved them.
    assert stage2["trainable"] == set(stage2["lora_before"])
    assert any(not torch.equal(stage2["lora_before"][n], stage2["lora_after"][n]) for n in stage2["lora_after"])
    saved2 = adapter_tensors(sft.stage_dir(cfg, 2))
    assert any(not torch.equal(saved1[k], saved2[k]) for k in saved1)
    # The base weights never change, in either stage, and match the checkpoint on disk.
    original = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    for entry in records:
        for name, tensor in entry["base_before"].items():
            assert torch.equal(tensor, entry["base_after"][name]), name
        matched = 0
        for name, tensor in entry["base_after"].items():
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            if key in original:
                assert torch.equal(tensor, original[key]), key
                matched += 1
        assert matched >= len(original) - 1  # lm_head is tied to the embeddings


@pytest.mark.trains
def test_saved_adapter_reloads_with_identical_logits(trained_run, tiny_tokenizer):
    import torch

    cfg, _, records = trained_run
    trained = records[1]["model"]
    trained.eval()
    reloaded, _ = sft.load_adapter_model(cfg, 2, device="cpu", dtype="fp32")
    row = sft_rows(1, offset=200)[0]
    text = tiny_tokenizer.apply_chat_template(build_sft_example(row, RESPONSE), tokenize=False)
    ids = torch.tensor([tiny_tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        a = trained(input_ids=ids).logits
        b = reloaded(input_ids=ids).logits
    assert torch.equal(a, b)
    # The adapter changes the output (the comparison is not trivially between two base models).
    with torch.no_grad(), reloaded.disable_adapter():
        base = reloaded(input_ids=ids).logits
    assert not torch.allclose(a, base)


@pytest.mark.trains
def test_same_inputs_reuse_the_adapters_and_changed_inputs_retrain(trained_run, monkeypatch):
    cfg, _, _ = trained_run
    calls = []

    def no_training(*args, **kwargs):
        calls.append(args)
        raise AssertionError("fit must not run when the adapters can be reused")

    monkeypatch.setattr(sft.phase, "fit", no_training)
    summary = sft.run_phase(cfg)
    assert summary["stage1"]["reused"] and summary["stage2"]["reused"] and not calls
    assert Path(summary["figure"]).is_file()

    # A different learning rate for stage 2 invalidates stage 2 only; different data invalidates stage 1.
    from dasd_utils.config import replace

    assert sft.reusable_manifest(replace(cfg, **{"sft.lr_stage2": 5e-5}), 1) is not None
    assert sft.reusable_manifest(replace(cfg, **{"sft.lr_stage2": 5e-5}), 2) is None
    assert sft.reusable_manifest(replace(cfg, **{"sft.lora_r": 8}), 1) is None
    assert sft.reusable_manifest(replace(cfg, **{"student.model": "other/model"}), 1) is None
    # Speed-only settings do not invalidate.
    assert sft.reusable_manifest(replace(cfg, **{"sft.gradient_checkpointing": True, "sft.logging_steps": 5}), 1)

    data = sft.sft_data_path(cfg, 1)
    original = data.read_bytes()
    try:
        data.write_bytes(original.replace(b"fits the question best", b"fits the question well"))
        assert sft.reusable_manifest(cfg, 1) is None
    finally:
        data.write_bytes(original)
    assert sft.reusable_manifest(cfg, 1) is not None
    # Stage 2 is tied to the exact stage-1 adapter it started from.
    inputs = sft.stage_inputs(cfg, 2)
    inputs["parent_adapter"]["sha256"] = "0" * 64
    assert sft.reusable_manifest(cfg, 2, inputs) is None


@pytest.mark.trains
def test_retrained_stage1_retrains_stage2(tmp_path, tiny_model_dir):
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{"sft.max_steps": 1})
    write_sft_file(cfg, 1, 2)
    write_sft_file(cfg, 2, 2, offset=60)
    sft.run_phase(cfg)
    # A different seed gives a different stage-1 adapter (a changed learning rate alone may not:
    # with warmup the single step runs at lr 0, and the seeded initialisation is then identical).
    changed = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{"sft.max_steps": 1, "sft.seed": 7})
    summary = sft.run_phase(changed)
    assert summary["stage1"]["reused"] is False
    assert summary["stage2"]["reused"] is False  # its parent adapter changed


def test_missing_inputs_give_clear_errors(tmp_path, tiny_model_dir):
    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="das"):
        sft.run_phase(cfg)
    write_sft_file(cfg, 2, 2)
    with pytest.raises(FileNotFoundError, match="stage 1"):
        sft.train_stage(cfg, 2)
    write_jsonl(sft.sft_data_path(cfg, 1), [])
    with pytest.raises(ValueError, match="no example"):
        sft.train_stage(cfg, 1)
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        sft.stage_dir(cfg, 3)


@pytest.mark.trains
def test_oom_backoff_halves_batch_doubles_accumulation_and_restarts_adapter(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch, caplog):
    import torch
    import trl
    from transformers import AutoModelForCausalLM

    cfg = load_config("demo", overrides={"sft.lora_dropout": 0.0})
    row = sft_rows(1)[0]
    dataset, _ = sft.build_sft_dataset([{"messages": build_sft_example(row, RESPONSE, "Answer.")}] * 4, tiny_tokenizer, 256)
    model = sft.add_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    real_train = trl.SFTTrainer.train
    seen = []

    def flaky_train(self, *args, **kwargs):
        seen.append((self.args.per_device_train_batch_size, self.args.gradient_accumulation_steps,
                     {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}))
        if len(seen) == 1:
            with torch.no_grad():  # a failed attempt may have updated the adapter before running out of memory
                for p in self.model.parameters():
                    if p.requires_grad:
                        p.add_(1.0)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "train", flaky_train)
    settings = sft.TrainingRun(
        sft.FineTuneConfig(per_device_batch_size=2, grad_accum=4, gradient_checkpointing=False, max_steps=1,
                           oom_backoff=True),
        output_dir=str(tmp_path / "out"), learning_rate=1e-3, precision="fp32", use_cpu=True, max_length=256,
    )
    with caplog.at_level(logging.WARNING, logger="dasd_utils.sft"):
        result = sft.fit(model, tiny_tokenizer, dataset, settings)
    assert [(b, a) for b, a, _ in seen] == [(2, 4), (1, 8)]
    assert (result.per_device_batch_size, result.grad_accum) == (1, 8)
    assert result.oom_backoffs == [{"per_device_batch_size": 1, "grad_accum": 8}]
    assert "out of memory" in caplog.text and "accumulation 8" in caplog.text
    for name, tensor in seen[1][2].items():
        assert torch.equal(tensor, lora[name]), name  # the retry started from the initial adapter
    assert result.global_step == 1

    # Other errors are not retried.
    def broken_train(self, *args, **kwargs):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(trl.SFTTrainer, "train", broken_train)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        sft.fit(model, tiny_tokenizer, dataset, settings)


# --------------------------------------------------------------------------- hardware choices
def test_precision_follows_the_hardware(monkeypatch):
    import torch

    assert sft.resolve_precision("auto", "cpu") == "fp32"
    assert sft.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(sft.SFTSetupError, match="fp16"):
        sft.resolve_precision("fp16", "cpu")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert sft.resolve_precision("auto", "cuda") == "fp16"
    with pytest.raises(sft.SFTSetupError, match="no native bf16"):
        sft.resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert sft.resolve_precision("auto", "cuda") == "bf16"
    assert sft.resolve_precision("fp16", "cuda") == "fp16"


def test_training_arguments_match_the_precision(tmp_path):
    settings = sft.TrainingRun(sft.FineTuneConfig(), output_dir=str(tmp_path), learning_rate=2e-4, precision="fp32",
                               use_cpu=True)
    args = sft.sft_arguments(settings, 2, 4, 16)
    assert (args.bf16, args.fp16, args.use_cpu) == (False, False, True)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)
    assert args.gradient_checkpointing and args.learning_rate == 2e-4 and args.save_strategy == "no"


def test_qlora_needs_a_gpu_and_bitsandbytes(tmp_path, tiny_model_dir, monkeypatch):
    import builtins

    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{"sft.load_in_4bit": True})
    with pytest.raises(sft.SFTSetupError, match="CUDA GPU"):
        sft.load_base_model(cfg, "fp32", "cpu")
    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(sft.SFTSetupError, match="pip install bitsandbytes"):
        sft.load_base_model(cfg, "fp16", "cuda")


def test_lora_config_from_settings():
    cfg = load_config("colab")
    lora = sft.lora_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (16, 32, "all-linear")
    cfg = load_config("colab", overrides=["sft.target_modules=q_proj,v_proj"])
    assert set(sft.lora_config(cfg).target_modules) == {"q_proj", "v_proj"}


def test_plot_sft_loss_draws_both_stages(tmp_path):
    from dasd_utils.plots.sft import plot_sft_loss

    logs = {
        "stage1": [{"step": i, "loss": 2.0 - 0.01 * i} for i in range(1, 60)],
        "stage2": [{"step": i, "loss": 1.5 - 0.01 * i} for i in range(1, 10)],
    }
    path = plot_sft_loss(logs, tmp_path / "sft_loss.png", profile="demo")
    assert path.is_file() and path.stat().st_size > 5000


# --------------------------------------------------------------------------- real model
@pytest.mark.trains
def test_demo_stage1_trains_smollm2_on_cpu(tmp_path, smollm2_dir):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"sft.max_steps": 2, "sft.grad_accum": 1,
                                                                    "sft.min_learning_steps": 1})
    assert cfg.student.model == SMOLLM2_PYPI
    write_sft_file(cfg, 1, 4)
    manifest = sft.train_stage(cfg, 1)
    assert manifest["steps"] == 2 and manifest["base_model"] == SMOLLM2_PYPI
    assert manifest["hardware"]["device"] == "cpu" and manifest["hardware"]["precision"] == "fp32"
    assert 0 < manifest["final_loss"] < 10 and manifest["tokens_per_s"] > 0
    assert manifest["trainable_parameters"] > 0
    adapter = json.loads((sft.stage_dir(cfg, 1) / "adapter_config.json").read_text())
    assert adapter["r"] == cfg.sft.lora_r and adapter["lora_alpha"] == cfg.sft.lora_alpha


def test_templates_that_render_the_prompt_differently_or_never_close_the_turn(tiny_tokenizer):
    import copy

    row = sft_rows(1)[0]
    messages = build_sft_example(row, RESPONSE)
    # Like Qwen3's hybrid template: the assistant turn starts with an empty think block, written
    # after the generation prompt. Issue 10 item 4: it is part of the prompt (as in scoring and
    # evaluation), never supervised: the model is not trained to write text it is given.
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
        "{% if m['role'] == 'assistant' %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
        "{{ m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    out = sft.tokenize_sft_example(tok, messages)
    assert not out["prompt_mismatch"]
    supervised = [t for t, label in zip(out["input_ids"], out["labels"]) if label != -100]
    assert tok.decode(supervised) == RESPONSE + "<|im_end|>"
    assert tok.decode(out["input_ids"][: out["prompt_len"]]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert out["assistant_prefix"] == "<think>\n\n</think>\n\n"

    # A generation prompt that is not a prefix of the full rendering: the mask starts where the
    # two tokenizations diverge, and the example is flagged.
    tok.chat_template = tok.chat_template.replace("<think>\\n\\n</think>\\n\\n", "").replace(
        "'<|im_start|>assistant\\n' }}{% endif %}", "'<|im_start|>assistant\\n\\n' }}{% endif %}"
    )
    out = sft.tokenize_sft_example(tok, messages)
    assert out["prompt_mismatch"]
    supervised = [t for t, label in zip(out["input_ids"], out["labels"]) if label != -100]
    assert tok.decode(supervised).endswith(RESPONSE + "<|im_end|>")
    assert len(tok.decode(supervised)) <= len(RESPONSE + "<|im_end|>") + 1

    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    with pytest.raises(ValueError, match="end-of-turn"):
        sft.tokenize_sft_example(tok, messages)


@pytest.mark.trains
def test_two_processes_under_torchrun_train_once_and_write_once(tmp_path, tiny_model_dir):
    """The CLI entry point under a distributed launcher (gloo on the CPU): DDP training, rank-0 writes."""
    import os
    import subprocess
    import sys

    cfg = tiny_sft_cfg(tmp_path / "run", tiny_model_dir)
    write_sft_file(cfg, 1, 4)
    write_sft_file(cfg, 2, 4, offset=60)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "dasd_utils", "train", "--profile", "demo", "--run-dir", str(cfg.run_dir),
        "--set", f"student.model={tiny_model_dir}", "--set", "sft.max_steps=2", "--set", "sft.grad_accum=1",
        "--set", "sft.per_device_batch_size=2", "--set", "sft.min_learning_steps=1", "--set", "sft.lora_dropout=0.0",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("[SFT] stage 1 : 4 exemples") == 1  # announced by the main process only
    mtimes = {}
    for stage in (1, 2):
        manifest = sft.read_manifest(cfg, stage)
        assert manifest["hardware"]["world_size"] == 2 and manifest["hardware"]["effective_batch"] == 2 * 1 * 2
        assert manifest["examples_seen"] == 8 and manifest["steps"] == 2
        mtimes[stage] = (sft.stage_dir(cfg, stage) / "manifest.json").stat().st_mtime_ns
    assert sft.figure_path(cfg).is_file()
    again = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[SFT] stage" not in again.stdout  # both stages reused
    for stage in (1, 2):
        assert (sft.stage_dir(cfg, stage) / "manifest.json").stat().st_mtime_ns == mtimes[stage]


@pytest.mark.trains
def test_retraining_from_scratch_gives_the_same_adapter(tmp_path, tiny_model_dir):
    """A grader re-running training (other run dir, other RNG history) must get the same adapter."""
    import torch

    first = tiny_sft_cfg(tmp_path / "a", tiny_model_dir, **{"sft.max_steps": 2})
    write_sft_file(first, 1, 4)
    sft.train_stage(first, 1)
    torch.manual_seed(1234)  # disturb the global RNG between the two trainings
    torch.rand(1000)
    second = tiny_sft_cfg(tmp_path / "b", tiny_model_dir, **{"sft.max_steps": 2})
    write_sft_file(second, 1, 4)
    sft.train_stage(second, 1)
    a, b = adapter_tensors(sft.stage_dir(first, 1)), adapter_tensors(sft.stage_dir(second, 1))
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.trains
def test_reuse_does_not_depend_on_how_the_run_dir_is_spelled(tmp_path, tiny_model_dir, monkeypatch):
    """The CLI passes runs/x, the notebooks an absolute path: both must reuse the same adapter."""
    monkeypatch.chdir(tmp_path)
    relative = tiny_sft_cfg("run", tiny_model_dir, **{"sft.max_steps": 1})
    write_sft_file(relative, 1, 2)
    assert sft.train_stage(relative, 1)["reused"] is False
    absolute = tiny_sft_cfg(tmp_path / "run", tiny_model_dir, **{"sft.max_steps": 1})
    assert sft.train_stage(absolute, 1)["reused"] is True


def test_trainable_weights_go_back_to_fp32_for_the_fp16_gradient_scaler():
    # TRL casts a quantized model's LoRA weights to bf16; fp16's GradScaler cannot unscale bf16
    # gradients (seen on a GPU), so fit() puts the trainable weights back in fp32 under fp16.
    import torch

    from dasd_utils.sft.train import trainable_in_fp32

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    assert trainable_in_fp32(model) == 3  # bias of layer 0, weight and bias of layer 1
    assert model[0].weight.dtype == torch.bfloat16  # frozen weights keep their dtype
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert trainable_in_fp32(model) == 0
