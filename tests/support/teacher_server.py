"""Teacher tests against the fake OpenAI-compatible server: a fake key, a colab config, the server.

The key is distinctive so that tests can search every file, log and message for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dasd_utils import data
from dasd_utils.config import load_config
from support.fake_openai_server import FakeOpenAIServer, answers_from_rows

KEY = "sk-TEST-DistinctiveFakeKey-7f3a9c2e51b8d4"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def make_cfg(run_dir: Path, student_dir: Path, n_train: int = 6, **overrides):
    base = {
        "data.source": "bundled",
        "data.train_split": "validation",
        "data.train_offset": 50,
        "data.n_train": n_train,
        "data.n_eval": 4,
        "student.model": str(student_dir),
        "teacher.concurrency": 4,
        "teacher.max_retries": 3,
        "teacher.timeout_s": 2.0,
        "teacher.backoff_base_s": 0.01,
        "teacher.backoff_max_s": 0.05,
        "teacher.base_url": "http://127.0.0.1:9/v1",
    }
    base.update(overrides)
    cfg = load_config("colab", run_dir=run_dir, overrides=base)
    data.run_phase(cfg)
    return cfg


@pytest.fixture
def cfg(tmp_path, tiny_model_dir, api_key):
    return make_cfg(tmp_path / "run", tiny_model_dir)


def questions(cfg):
    return data.load_run_questions(cfg, "train")


def serve(cfg, **kwargs) -> FakeOpenAIServer:
    server = FakeOpenAIServer(answers=answers_from_rows(questions(cfg)), **kwargs).start()
    cfg.teacher.base_url = server.base_url
    return server
