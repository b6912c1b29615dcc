"""A non-editable install builds the report: the template and the package data ship in the wheel.

The wheel is built offline from a copy of the sources (no network, no build isolation, nothing
written into the repository), installed with ``pip install --target`` into a temporary folder,
and ``python -m dasd_utils report`` runs from there (PYTHONPATH = that folder only) on a fake run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.fake_run import make_fake_run

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_installed_wheel_builds_the_report(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "dasd_utils", src / "dasd_utils", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    offline = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
         cwd=src, env=offline)
    wheel = next((tmp_path / "dist").glob("dasd_utils-*.whl"))
    target = tmp_path / "target"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)], cwd=tmp_path, env=offline)
    assert (target / "dasd_utils" / "templates" / "rapport.md.j2").is_file()
    assert (target / "dasd_utils" / "resources" / "commonsense_qa_validation.jsonl").is_file()

    run_dir = make_fake_run(tmp_path / "runs", "demo")
    env = dict(offline, PYTHONPATH=str(target), MPLBACKEND="Agg")
    where = _run([sys.executable, "-c", "import dasd_utils.report as r; print(r.__file__); print(r.TEMPLATE_DIR)"],
                 cwd=tmp_path, env=env).stdout.split()
    assert all(Path(p).is_relative_to(target) for p in where), where  # the installed copy, not the repository
    _run([sys.executable, "-m", "dasd_utils", "report", "--profile", "demo", "--run-dir", str(run_dir)], cwd=tmp_path, env=env)
    markdown = (run_dir / "report" / "rapport.md").read_text(encoding="utf-8")
    assert "36,0 %" in markdown and (run_dir / "report" / "rapport.html").is_file()
