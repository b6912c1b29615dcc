"""Phase timings: wall and CPU seconds of each phase, in ``<run_dir>/timings.json`` and in the phase's summary.

One mechanism for every phase: :func:`run_timed` calls a phase's ``run_phase`` and records

* ``timings.json`` at the run's root: per phase, ``last`` (the latest call, possibly a reuse of
  cached results that takes seconds) and ``computed`` (the latest call that did the work);
* an ``elapsed`` block in the phase's summary file (:data:`SUMMARY_FILES`), holding the
  ``computed`` timing, so that a second run that only reuses results leaves the summary as it was;
* ``parts``: the calls of one part of a phase made on their own after its latest whole call
  (:func:`timed_part`: the notebooks' ``sft.train_stage``, stage by stage).

CPU seconds are the process's user + system time (every thread: torch's intra-op threads count)
plus that of finished child processes; on a machine with N free cores a phase can use up to N CPU
seconds per wall second. Wall time depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import functools
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from .jsonl import write_json_atomic

#: Phase -> its summary file (relative to the run directory) that receives the ``elapsed`` block.
#: ``train`` has no summary of its own (each stage's manifest records its ``wall_time_s``), so
#: the phase's returned per-stage summary is written to ``sft/summary.json`` with its timing.
#: ``data`` (under a second, and its summary is returned and compared as written) is timed in
#: ``timings.json`` only.
SUMMARY_FILES: dict[str, str] = {
    "generate": "teacher/summary.json",
    "das": "das/summary.json",
    "train": "sft/summary.json",
    "evaluate": "eval/metrics.json",
    "report": "report/manifest.json",
}

TIMINGS_FILE = "timings.json"

#: The phases in pipeline order, as the timing table lists them (``analyses`` has no summary file).
PHASE_ORDER = ("data", "generate", "das", "train", "evaluate", "analyses", "report")


def _cpu_seconds() -> float:
    """Return the CPU seconds used so far by this process (all threads) and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def did_work(phase: str, result: Any) -> bool:
    """Return False when a phase's result says it only reused cached outputs, else True.

    Each phase reports reuse its own way: the teacher counts the requests it sent, SFT and the
    report flag ``reused``, the evaluation counts generated predictions per model.
    """
    if not isinstance(result, Mapping):
        return True
    if phase == "generate":
        return bool(result.get("sent_this_run", 1))
    if phase == "train":
        stages = [v for v in result.values() if isinstance(v, Mapping)]
        return not stages or any(not s.get("reused") for s in stages)
    if phase == "evaluate" and isinstance(result.get("generated"), Mapping):
        return any(result["generated"].values())
    reused = result.get("reused")
    return not reused if isinstance(reused, bool) else True


def read_timings(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Return ``<run_dir>/timings.json`` (``{"phases": {...}, "notebooks": {...}}``), empty when absent or unreadable."""
    path = Path(run_dir) / TIMINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"phases": {}, "notebooks": {}}
    if not isinstance(data, dict):
        return {"phases": {}, "notebooks": {}}
    data.setdefault("phases", {})
    data.setdefault("notebooks", {})
    return data


def _entry(wall_s: float, cpu_s: float, worked: bool) -> dict[str, Any]:
    return {
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "reused": not worked,
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def record(run_dir: str | os.PathLike, phase: str, wall_s: float, cpu_s: float, worked: bool,
           result: Any = None) -> dict[str, Any]:
    """Return the phase's timing entry after writing it to ``timings.json`` and its summary's ``elapsed`` block.

    A whole call of the phase drops the ``parts`` recorded before it (:func:`record_part`).
    """
    run_dir = Path(run_dir)
    entry = _entry(wall_s, cpu_s, worked)
    timings = read_timings(run_dir)
    phases = timings["phases"]
    previous = phases.get(phase) or {}
    computed = entry if worked else previous.get("computed")
    phases[phase] = {"last": entry, "computed": computed}
    write_json_atomic(run_dir / TIMINGS_FILE, timings)
    _write_elapsed(run_dir, phase, computed or entry, result, worked)
    return phases[phase]


def _write_elapsed(run_dir: Path, phase: str, timing: Mapping[str, Any], result: Any, worked: bool) -> None:
    name = SUMMARY_FILES.get(phase)
    if name is None:
        return
    path = run_dir / name
    elapsed = {k: timing[k] for k in ("wall_s", "cpu_s", "finished_at")}
    # The train phase's summary is its returned value, written here when it trained (or has none yet).
    if phase == "train" and isinstance(result, Mapping) and (worked or not path.is_file()):
        summary = {k: v for k, v in result.items() if k != "elapsed"}
    else:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return  # the phase wrote no summary (e.g. a non-main process): nothing to annotate
        if not isinstance(summary, dict):
            return
    if summary.get("elapsed") == elapsed:
        return  # unchanged: leave the file (and its modification time) alone
    summary["elapsed"] = elapsed
    write_json_atomic(path, summary)


def timed_phase(phase: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return a decorator for a phase's ``run_phase(cfg, ...)`` that records its timing (see :func:`run_timed`).

    Applied to each phase's ``run_phase`` so that the command line and the notebooks (which call
    the phases directly) both record it; ``inspect.signature`` still shows the phase's arguments.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(cfg, *args: Any, **kwargs: Any) -> Any:
            return run_timed(cfg, phase, func, *args, **kwargs)[0]

        wrapper.phase_name = phase  # type: ignore[attr-defined]
        return wrapper

    return decorate


def record_part(run_dir: str | os.PathLike, phase: str, part: str, wall_s: float, cpu_s: float, worked: bool) -> None:
    """Write the timing of one part of a phase called on its own to ``timings.json`` (``phases.<phase>.parts.<part>``).

    The notebooks train stage by stage (``sft.train_stage``), not through the phase's
    ``run_phase``: their calls are the phase's latest ones, shown "per stage" by
    :func:`format_table`, until the next whole call of the phase drops them. ``last``,
    ``computed`` and the summary's ``elapsed`` stay those of the latest whole call.
    """
    timings = read_timings(run_dir)
    entry = timings["phases"].setdefault(phase, {})
    entry.setdefault("parts", {})[part] = _entry(wall_s, cpu_s, worked)
    write_json_atomic(Path(run_dir) / TIMINGS_FILE, timings)


def timed_part(phase: str, part: Callable[..., str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return a decorator for a function doing one part of ``phase`` (``part(*args, **kwargs)`` names it) that records its timing.

    Calls made by the phase's own ``run_phase`` are recorded too, then dropped when it finishes.
    The function's result says whether it worked by its ``reused`` flag.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(cfg, *args: Any, **kwargs: Any) -> Any:
            result, wall, cpu = _measured(func, cfg, *args, **kwargs)
            if _is_main_process(result):
                reused = isinstance(result, Mapping) and result.get("reused") is True
                record_part(cfg.run_dir, phase, part(*args, **kwargs), wall, cpu, not reused)
            return result

        return wrapper

    return decorate


def _measured(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - wall0, _cpu_seconds() - cpu0


def run_timed(cfg, phase: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Return (``func(cfg, *args, **kwargs)``, this call's timing) and record the timing for the run.

    The timing is recorded only when the call returns (a failed phase records nothing).
    """
    result, wall, cpu = _measured(func, cfg, *args, **kwargs)
    worked = did_work(phase, result)
    if _is_main_process(result):
        record(cfg.run_dir, phase, wall, cpu, worked, result)
    return result, {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "reused": not worked}


def _is_main_process(result: Any) -> bool:
    # Under `accelerate launch` only the main process writes (rank 0; DAS's other processes
    # return their process index only).
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return False
    return not (isinstance(result, Mapping) and result.get("process_index", 0) not in (0, None))


def record_notebook(run_dir: str | os.PathLike, name: str, wall_s: float) -> None:
    """Write one notebook's execution wall time to ``timings.json`` (under ``notebooks``)."""
    timings = read_timings(run_dir)
    timings["notebooks"][name] = {"wall_s": round(wall_s, 2)}
    write_json_atomic(Path(run_dir) / TIMINGS_FILE, timings)


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)} min {secs:04.1f} s" if minutes else f"{secs:.1f} s"


def format_table(run_dir: str | os.PathLike) -> str:
    """Return a plain-text table of each phase's time (its latest call, and the call that computed it) and each notebook's."""
    timings = read_timings(run_dir)
    lines = [f"Time per phase ({Path(run_dir)}), wall / CPU:",
             f"  {'phase':<10} {'latest call':<36} {'computed in':<26}"]
    totals = {"last": [0.0, 0.0], "computed": [0.0, 0.0]}
    for phase in PHASE_ORDER:
        entry = timings["phases"].get(phase)
        if not entry:
            continue
        last, computed = entry.get("last") or {}, entry.get("computed") or {}
        note = " (reused)" if last.get("reused") else ""
        parts = list((entry.get("parts") or {}).values())
        if parts:  # parts called on their own after the latest whole call (a notebook, stage by stage)
            last = {k: sum(p.get(k) or 0.0 for p in parts) for k in ("wall_s", "cpu_s")}
            note = " (per stage" + (", reused)" if all(p.get("reused") for p in parts) else ")")
        for key, timing in (("last", last), ("computed", computed)):
            totals[key][0] += timing.get("wall_s") or 0.0
            totals[key][1] += timing.get("cpu_s") or 0.0
        latest = f"{_fmt(last.get('wall_s'))} / {_fmt(last.get('cpu_s'))}" + note
        done = f"{_fmt(computed.get('wall_s'))} / {_fmt(computed.get('cpu_s'))}" if computed else "not computed here"
        lines.append(f"  {phase:<10} {latest:<36} {done:<26}")
    lines.append(f"  {'total':<10} {_fmt(totals['last'][0]) + ' / ' + _fmt(totals['last'][1]):<36} "
                 f"{_fmt(totals['computed'][0])} / {_fmt(totals['computed'][1])}")
    if timings["notebooks"]:
        width = max(len(name) for name in timings["notebooks"])
        lines.append("Notebooks (latest execution, wall):")
        for name, entry in sorted(timings["notebooks"].items()):
            lines.append(f"  {name:<{width}} {_fmt(entry.get('wall_s')):>14}")
        total = sum(entry.get("wall_s") or 0.0 for entry in timings["notebooks"].values())
        lines.append(f"  {'total':<{width}} {_fmt(total):>14}")
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    """Print the time table of a run directory: ``python -m dasd_utils.timing RUN_DIR``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dasd_utils.timing RUN_DIR", file=sys.stderr)
        return 2
    if not (Path(args[0]) / TIMINGS_FILE).is_file():
        print(f"error: {Path(args[0]) / TIMINGS_FILE} not found: run a phase with python -m dasd_utils first",
              file=sys.stderr)
        return 1
    print(format_table(args[0]))
    return 0


__all__ = ["SUMMARY_FILES", "TIMINGS_FILE", "did_work", "format_table", "read_timings", "record",
           "record_notebook", "record_part", "run_timed", "timed_part", "timed_phase"]

if __name__ == "__main__":
    raise SystemExit(main())
