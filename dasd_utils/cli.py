"""Command line: ``python -m dasd_utils PHASE --profile NAME --run-dir DIR [--config FILE] [--set k=v ...]``.

Each phase is the same function the notebooks call: ``dasd_utils.<module>.run_phase(cfg)``.
``all`` runs every phase in order; each phase reuses what a previous run already produced.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from errno import errorcode
import json
import logging
import sys
import time
from typing import Any, Callable

from .config import PROFILES, ConfigError, require_api_endpoint, resolve_run_config
from .secrets import install_log_scrubber, scrub
from .timing import TIMINGS_FILE, format_table

log = logging.getLogger(__name__)

#: Phase name -> module holding its ``run_phase(cfg)``.
PHASES: dict[str, str] = {
    "data": "dasd_utils.data",
    "generate": "dasd_utils.teacher",
    "das": "dasd_utils.das",
    "train": "dasd_utils.sft",
    "evaluate": "dasd_utils.evaluation",
    "analyses": "dasd_utils.analyses",
    "report": "dasd_utils.report",
}


class PhaseUnavailable(RuntimeError):
    """The phase exists in the pipeline but is not implemented in this version of the package."""


def phase_function(name: str) -> Callable[..., Any]:
    """Return the ``run_phase`` function of a phase, or raise PhaseUnavailable."""
    if name not in PHASES:
        raise PhaseUnavailable(f"unknown phase '{name}' (choose one of: {', '.join(PHASES)}, all)")
    try:
        module = importlib.import_module(PHASES[name])
    except ModuleNotFoundError as exc:
        if exc.name == PHASES[name]:
            raise PhaseUnavailable(f"phase '{name}' is not implemented yet ({PHASES[name]} is missing)") from None
        raise
    func = getattr(module, "run_phase", None)
    if func is None:
        raise PhaseUnavailable(f"phase '{name}' is not implemented yet ({PHASES[name]}.run_phase is missing)")
    return func


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dasd_utils",
        description="DASD pipeline: data -> generate -> das -> train -> evaluate -> analyses -> report.",
    )
    parser.add_argument("phase", choices=[*PHASES, "all"], help="phase to run ('all' runs every phase in order)")
    parser.add_argument(
        "--profile", default="demo", choices=list(PROFILES),
        help="settings profile (default: the run's saved profile, demo for a new run)",
    )
    parser.add_argument("--run-dir", default=None, help="run directory (default: runs/<profile>)")
    parser.add_argument("--config", default=None, help="YAML file of overrides (same nesting as the config)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set data.n_train=32 (repeatable)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="recompute the phase even when its outputs exist, and accept settings that differ from the run's config.json",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def error_line(exc: BaseException) -> str:
    """Return one line for a user-facing error: ``Type: message``, secrets scrubbed, OS errors with their file."""
    if isinstance(exc, OSError) and not isinstance(exc, ConfigError):
        errno_name = f" ({errorcode[exc.errno]})" if exc.errno in errorcode else ""
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{type(exc).__name__}: {exc.strerror or exc}{errno_name}{where}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(scrub(text).split())


def _fail(message: str, code: int) -> int:
    print(" ".join(scrub(message).split()), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Return the exit status: 0 done, 2 bad command or settings, 1 a phase failed, 130 interrupted.

    User errors (settings, files, the run directory, the API) print one ``error ...`` line, never a
    traceback; ``--verbose`` adds the traceback to the debug log.
    """
    args = build_parser().parse_args(argv)
    words = sys.argv[1:] if argv is None else argv
    # Without an explicit --profile, a run directory keeps the profile its config.json was made with.
    given = any(len(w) > 3 and "--profile".startswith(w.split("=", 1)[0]) for w in words)  # argparse takes "--prof"
    profile = args.profile if given else None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_scrubber()
    run_dir = args.run_dir or f"runs/{args.profile}"
    phases = list(PHASES) if args.phase == "all" else [args.phase]
    try:
        # One configuration per run: a run directory's config.json holds for its later phases.
        cfg = resolve_run_config(profile, run_dir, args.config, args.overrides, force=args.force)
        if "generate" in phases:
            require_api_endpoint(cfg)
    except ConfigError as exc:
        return _fail(f"error: {exc}", 2)
    try:
        funcs = [(name, phase_function(name)) for name in phases]
    except PhaseUnavailable as exc:
        return _fail(f"error: {exc}", 2)
    try:
        cfg.save()
    except ConfigError as exc:
        return _fail(f"error: {exc}", 2)
    for name, func in funcs:
        start = time.perf_counter()
        print(f"== phase {name} ({cfg.profile} profile, run dir {cfg.run_dir}) ==", flush=True)
        kwargs = {"force": True} if args.force and _accepts_force(func) else {}
        try:
            result = func(cfg, **kwargs)
        except KeyboardInterrupt:
            return _fail(f"interrupted in phase {name}: finished work is kept on disk; run the command again to resume", 130)
        except (ConfigError, OSError, ValueError, RuntimeError) as exc:
            log.debug("phase %s failed", name, exc_info=True)
            return _fail(f"error in phase {name}: {error_line(exc)}", 1)
        elapsed = time.perf_counter() - start
        if isinstance(result, dict):
            print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        print(f"== phase {name} done in {elapsed:.1f} s ==", flush=True)
    if len(funcs) > 1 and (cfg.run_dir / TIMINGS_FILE).is_file():
        print(format_table(cfg.run_dir), flush=True)
    return 0


def _accepts_force(func: Callable[..., Any]) -> bool:
    """Return True when ``func`` takes a ``force`` argument (``inspect`` sees through the timing decorator)."""
    try:
        return "force" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["PHASES", "PhaseUnavailable", "build_parser", "error_line", "main", "phase_function"]
