"""tools/check_demo.py: a demo run passes only when every training learned and stage 1 learned the format."""

from __future__ import annotations

import json

from support.scripts import load_script


def _run(tmp_path, stage2_change=0.5, stage1_steps=24, format_rate=0.6, identical=False):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for stage, steps, change, weights in ((1, stage1_steps, 1.0, b"one"), (2, 9, stage2_change, b"one" if identical else b"two")):
        folder = run / "sft" / f"stage{stage}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(weights)
        (folder / "manifest.json").write_text(json.dumps(
            {"steps": steps, "learning_steps": steps, "adapter_change": {"l2": change}}))
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"models": {"base": {"format_rate": 0.0}, "stage1": {"format_rate": format_rate}}}))
    return run


def test_a_run_that_learned_passes(tmp_path, capsys):
    assert load_script("tools/check_demo.py").main([str(_run(tmp_path))]) == 0
    assert "5/5 checks passed" in capsys.readouterr().out


def test_each_failure_is_named(tmp_path, capsys):
    check = load_script("tools/check_demo.py")
    assert check.main([str(_run(tmp_path / "a", stage2_change=0.0, identical=True))]) == 1
    out = capsys.readouterr().out
    assert "FAIL stage 2: adapter moved from its parent by 0.0" in out and "byte-identical to stage 1's" in out
    assert check.main([str(_run(tmp_path / "b", stage1_steps=2, format_rate=0.02))]) == 1
    out = capsys.readouterr().out
    assert "FAIL stage 1: 2 of 2 optimizer steps" in out and "FAIL stage 1 answers in the course's format: 0.02" in out
