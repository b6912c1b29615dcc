"""Phase timings: timings.json, the ``elapsed`` block of each summary, reuse keeps the computing run's time, CLI table."""

from __future__ import annotations

import inspect
import json
import sys
import types

import pytest

from dasd_utils import cli, data, timing


def _fake_phase(summary_name: str, reused: bool):
    def run_phase(cfg, force: bool = False):
        path = cfg.run_dir / summary_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"value": 1}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        sum(i * i for i in range(200_000))  # some CPU time
        return {"value": 1, "reused": reused and not force}

    return run_phase


@pytest.mark.parametrize(
    ("phase", "result", "worked"),
    [
        ("generate", {"sent_this_run": 0}, False),
        ("generate", {"sent_this_run": 3}, True),
        ("das", {"reused": True}, False),
        ("das", {"reused": False}, True),
        ("train", {"stage1": {"reused": True}, "stage2": {"reused": True}, "figure": "x.png"}, False),
        ("train", {"stage1": {"reused": True}, "stage2": {"reused": False}, "figure": "x.png"}, True),
        ("evaluate", {"generated": {"base": 0, "stage1": 0}}, False),
        ("evaluate", {"generated": {"base": 0, "stage1": 2}}, True),
        ("report", {"reused": True}, False),
        ("data", {"n_train": 4}, True),
        ("data", None, True),
    ],
)
def test_did_work_reads_each_phase_reuse_flag(phase, result, worked):
    assert timing.did_work(phase, result) is worked


def test_timed_phase_records_and_reuse_keeps_the_computing_run(demo_cfg, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    run = demo_cfg.run_dir
    computing = timing.timed_phase("das")(_fake_phase("das/summary.json", reused=False))
    reusing = timing.timed_phase("das")(_fake_phase("das/summary.json", reused=True))

    first = computing(demo_cfg)
    assert "elapsed" not in first  # the returned summary is the phase's own
    saved = json.loads((run / "das" / "summary.json").read_text(encoding="utf-8"))
    assert set(saved["elapsed"]) == {"wall_s", "cpu_s", "finished_at"}
    assert saved["elapsed"]["wall_s"] > 0 and saved["elapsed"]["cpu_s"] > 0
    entry = timing.read_timings(run)["phases"]["das"]
    assert entry["last"] == entry["computed"] and entry["last"]["reused"] is False

    before = (run / "das" / "summary.json").read_bytes()
    reusing(demo_cfg)
    entry2 = timing.read_timings(run)["phases"]["das"]
    assert entry2["last"]["reused"] is True and entry2["computed"] == entry["computed"]
    # The summary is rewritten by the phase, then annotated with the same computing run: same bytes.
    assert (run / "das" / "summary.json").read_bytes() == before

    reusing(demo_cfg, force=True)  # force: the phase works again, the summary gets the new time
    entry3 = timing.read_timings(run)["phases"]["das"]
    assert entry3["computed"] == entry3["last"] and entry3["computed"]["finished_at"] >= entry["computed"]["finished_at"]


def test_train_summary_is_written_from_the_returned_stages(demo_cfg):
    result = {"stage1": {"steps": 3, "reused": False}, "stage2": {"steps": 2, "reused": False}, "figure": None}
    timing.record(demo_cfg.run_dir, "train", 12.5, 20.25, True, result)
    path = demo_cfg.run_dir / "sft" / "summary.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["stage1"] == {"steps": 3, "reused": False}
    assert saved["elapsed"]["wall_s"] == 12.5 and saved["elapsed"]["cpu_s"] == 20.25
    # A reuse call leaves the summary of the training call as it was.
    before = path.read_bytes()
    reused = {"stage1": {"steps": 3, "reused": True}, "stage2": {"steps": 2, "reused": True}, "figure": None}
    timing.record(demo_cfg.run_dir, "train", 0.5, 0.4, False, reused)
    assert path.read_bytes() == before


def test_failed_phase_records_nothing(demo_cfg):
    @timing.timed_phase("das")
    def broken(cfg):
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        broken(demo_cfg)
    assert not (demo_cfg.run_dir / timing.TIMINGS_FILE).exists()


def test_non_main_process_records_nothing(demo_cfg, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    timing.timed_phase("das")(_fake_phase("das/summary.json", reused=False))(demo_cfg)
    assert not (demo_cfg.run_dir / timing.TIMINGS_FILE).exists()


def test_real_phases_are_timed_and_keep_their_signature(demo_cfg, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    for name in cli.PHASES:
        func = cli.phase_function(name)
        assert getattr(func, "phase_name", None) == name, name
        assert "force" in inspect.signature(func).parameters
    summary = data.run_phase(demo_cfg)
    # The data summary stays exactly what the phase returned; its time is in timings.json.
    assert json.loads((demo_cfg.run_dir / "data" / "summary.json").read_text(encoding="utf-8")) == summary
    assert timing.read_timings(demo_cfg.run_dir)["phases"]["data"]["last"]["wall_s"] >= 0


def test_cli_passes_force_through_the_decorator_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    calls = []
    module = types.ModuleType("dasd_fake_phase")

    @timing.timed_phase("das")
    def run_phase(cfg, force: bool = False):
        calls.append(force)
        return {"reused": False}

    module.run_phase = run_phase
    monkeypatch.setitem(sys.modules, "dasd_fake_phase", module)
    monkeypatch.setattr(cli, "PHASES", {"das": "dasd_fake_phase", "report": "dasd_fake_phase"})
    run_dir = tmp_path / "run"
    assert cli.main(["all", "--run-dir", str(run_dir), "--force"]) == 0
    assert calls == [True, True]
    out = capsys.readouterr().out
    assert "Time per phase" in out and "das" in out


def test_format_table_lists_phases_notebooks_and_reuse(tmp_path):
    timing.record(tmp_path, "generate", 130.0, 250.0, True, None)
    timing.record(tmp_path, "generate", 2.0, 1.5, False, None)
    timing.record_notebook(tmp_path, "02_generation_professeur.ipynb", 4.25)
    table = timing.format_table(tmp_path)
    assert "2.0 s / 1.5 s (reused)" in table and "2 min 10.0 s / 4 min 10.0 s" in table
    assert "02_generation_professeur.ipynb" in table and "4.2 s" in table


def test_format_table_lists_the_analyses_phase_before_the_report(tmp_path):
    for phase in ("report", "analyses", "evaluate"):
        timing.record(tmp_path, phase, 10.0, 20.0, True, None)
    names = [line.split()[0] for line in timing.format_table(tmp_path).splitlines()[2:5]]
    assert names == ["evaluate", "analyses", "report"]


def test_train_stage_calls_after_the_phase_are_its_latest_calls_per_stage(demo_cfg, monkeypatch):
    from dasd_utils.sft import phase as sft_phase

    monkeypatch.delenv("RANK", raising=False)
    run = demo_cfg.run_dir
    timing.record(run, "train", 130.0, 250.0, True, {"stage1": {"reused": False}, "stage2": {"reused": False}})
    # A notebook trains stage by stage: here both stages are reused (same inputs).
    monkeypatch.setattr(sft_phase, "stage_inputs", lambda cfg, stage: {})
    monkeypatch.setattr(sft_phase, "reusable_manifest", lambda cfg, stage, inputs=None: {"stage": stage})
    from dasd_utils import sft

    for stage in (1, 2):
        assert sft.train_stage(demo_cfg, stage)["reused"] is True
    entry = timing.read_timings(run)["phases"]["train"]
    assert set(entry["parts"]) == {"stage1", "stage2"} and entry["last"]["wall_s"] == 130.0
    row = next(line for line in timing.format_table(run).splitlines() if line.strip().startswith("train"))
    assert "(per stage, reused)" in row and "2 min 10.0 s / 4 min 10.0 s" in row  # computed by the whole call
    # The next whole call of the phase is its latest call again.
    timing.record(run, "train", 1.0, 1.0, False, {"stage1": {"reused": True}, "stage2": {"reused": True}})
    assert "parts" not in timing.read_timings(run)["phases"]["train"]
    assert "per stage" not in timing.format_table(run)


def test_timing_command_line(tmp_path, capsys):
    assert timing.main([str(tmp_path)]) == 1
    assert "timings.json not found" in capsys.readouterr().err
    timing.record(tmp_path, "das", 1.0, 1.0, True, None)
    assert timing.main([str(tmp_path)]) == 0
    assert "das" in capsys.readouterr().out


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    from dasd_utils.jsonl import write_json_atomic

    path = write_json_atomic(tmp_path / "sub" / "x.json", {"é": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"é": 1} and "é" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
