"""The project's scripts (tools/, bench/) loaded as modules by their path, without touching sys.path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(relative_path: str) -> ModuleType:
    """Return the module of a script of the repository (e.g. ``tools/build_notebooks.py``), loaded once."""
    path = REPO / relative_path
    name = "dasd_script_" + "_".join(Path(relative_path).with_suffix("").parts)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build_notebooks() -> ModuleType:
    """Return tools/build_notebooks.py, the notebooks' builder."""
    return load_script("tools/build_notebooks.py")


def setup_cell(phase: str) -> str:
    """Return the code of the set-up cell a built notebook runs for ``phase`` (the bootstrap that clones the repo)."""
    builder = build_notebooks()
    source = next(iter(builder.sources().values()))
    for cell in builder.notebook_cells(source):
        if cell.source.startswith("PHASE = "):
            return cell.source.replace(cell.source.split("\n", 1)[0], f"PHASE = {phase!r}", 1)
    raise AssertionError("no set-up cell in the built notebooks")
