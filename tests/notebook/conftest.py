"""Fixtures of the notebook tests: Colab's stand-in (tests/support/colab_stub) and a fake Kaggle machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

STUB = Path(__file__).resolve().parents[1] / "support" / "colab_stub"


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """The google.colab stand-in imported, Drive mounted under tmp_path/drive."""
    monkeypatch.syspath_prepend(str(STUB))
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("DASD_DRIVE_MOUNT", str(tmp_path / "drive"))
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    yield tmp_path / "drive"
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]  # the stand-in must not leak into later tests (monkeypatch restores the real ones)


@pytest.fixture
def fake_kaggle(monkeypatch, tmp_path):
    """A Kaggle machine: its working folder and its (read-only on Kaggle) input folder under tmp_path."""
    for name in ("COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("DASD_KAGGLE_WORKING", str(tmp_path / "kaggle" / "working"))
    monkeypatch.setenv("DASD_KAGGLE_INPUT", str(tmp_path / "kaggle" / "input"))
    (tmp_path / "kaggle" / "working").mkdir(parents=True)
    (tmp_path / "kaggle" / "input").mkdir(parents=True)
    return tmp_path / "kaggle"
