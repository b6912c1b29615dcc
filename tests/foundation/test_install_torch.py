"""tools/install_torch.sh: which index each machine gets torch from (a fake python records the pip calls)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "install_torch.sh"

FAKE_PYTHON = """#!/bin/sh
# Fake venv python: "import torch" fails unless HAS_TORCH; "-m pip ..." appends its arguments to
# $PIP_LOG and fails when they name an index listed in $FAIL_INDEX.
if [ "$1" = "-c" ]; then
    [ -n "${HAS_TORCH:-}" ] && { echo 9.9; exit 0; }
    exit 1
fi
shift 2
echo "$*" >> "$PIP_LOG"
case "$*" in *"${FAIL_INDEX:-no index fails}"*) exit 1 ;; esac
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "pip.log"
    gpu_proc = tmp_path / "nvidia"

    def run(gpu: bool = False, **env_extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        if gpu:
            gpu_proc.mkdir(exist_ok=True)
        env = {"PATH": os.environ["PATH"], "PIP_LOG": str(log), "NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"),
               "NVIDIA_PROC": str(gpu_proc), **env_extra}
        result = subprocess.run(["sh", str(SCRIPT), str(python)], env=env, capture_output=True, text=True, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    return run


def test_cpu_machine_uses_the_cpu_index_fast(fake):
    result, calls = fake()
    assert result.returncode == 0, result.stderr
    assert calls == ["install -q --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu torch==2.13.0"]
    assert "no NVIDIA GPU" in result.stdout


def test_unreachable_cpu_index_falls_back_to_the_default_index(fake):
    result, calls = fake(FAIL_INDEX="download.pytorch.org")
    assert result.returncode == 0
    assert calls == [
        "install -q --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu torch==2.13.0",
        "install -q torch==2.13.0",
    ]
    assert "CUDA build" in result.stderr


def test_failure_of_both_indexes_fails_the_install(fake):
    result, calls = fake(FAIL_INDEX="torch==2.13.0")
    assert result.returncode != 0 and len(calls) == 2


def test_gpu_machine_uses_the_default_index(fake):
    result, calls = fake(gpu=True, TORCH_VERSION="2.12.1")
    assert result.returncode == 0
    assert calls == ["install -q torch==2.12.1"] and "NVIDIA GPU found" in result.stdout


def test_torch_spec_overrides_and_installed_torch_is_kept(fake):
    result, calls = fake(TORCH_SPEC="torch==2.13.0 --index-url https://example.invalid/cu128")
    assert calls == ["install -q torch==2.13.0 --index-url https://example.invalid/cu128"]
    result, calls_after = fake(HAS_TORCH="1")
    assert calls_after == calls and "already installed" in result.stdout


def test_makefile_uses_the_script():
    makefile = (REPO / "Makefile").read_text()
    assert "tools/install_torch.sh $(PY)" in makefile and "TORCH_VERSION ?= 2.13.0" in makefile
