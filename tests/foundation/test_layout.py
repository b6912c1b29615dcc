"""Every run-directory path that docs/artifacts.md lists comes from dasd_utils.layout."""

from __future__ import annotations

import inspect
import itertools
import re
from pathlib import Path

from dasd_utils import layout

DOC = Path(__file__).resolve().parents[2] / "docs" / "artifacts.md"
#: Values tried for each parameter of a layout function, and for each placeholder of the docs.
CANDIDATES = {
    "stage": [1, 2],
    "which": ["train", "eval"],
    "name": ["base", "stage1", "stage2", "das", "random_s1", "mixed", "x.png"],
}
PLACEHOLDERS = {"<model>": "base", "<variant>": "das"}


def layout_paths(run: Path) -> set[str]:
    """Return every path (relative to ``run``, folders with a trailing '/') the layout functions give, and their folders."""
    paths = set()
    for name, function in inspect.getmembers(layout, inspect.isfunction):
        if function.__module__ != layout.__name__ or name.startswith("_"):
            continue
        params = list(inspect.signature(function).parameters)
        if not params or params[0] != "run_dir":
            continue
        params = params[1:]
        if not all(p in CANDIDATES for p in params):
            continue
        for values in itertools.product(*(CANDIDATES[p] for p in params)):
            try:
                path = Path(function(run, *values))
            except ValueError:
                continue
            if not path.is_relative_to(run):
                continue
            rel = path.relative_to(run)
            paths.add(rel.as_posix() + "/" if name.endswith("_dir") or not path.suffix else rel.as_posix())
            paths.update(parent.as_posix() + "/" for parent in rel.parents if parent != Path("."))
    return paths


def documented_paths() -> list[str]:
    """Return the run-relative paths of artifacts.md's file list, placeholders filled in."""
    block = DOC.read_text(encoding="utf-8").split("```", 2)[1]
    out = []
    for line in block.splitlines():
        match = re.match(r"runs/<run>/(\S+?)(,|\s|$)", line)
        if not match:
            continue
        path = match.group(1)
        for placeholder, value in PLACEHOLDERS.items():
            path = path.replace(placeholder, value)
        out.append("figures/" if path == "figures/*.png" else path.replace("rapport.md", "") if path.startswith("report/") else path)
    return out


def test_every_documented_path_comes_from_the_layout(tmp_path):
    documented = documented_paths()
    assert len(documented) > 20
    known = layout_paths(tmp_path)
    missing = [path for path in documented if path not in known]
    assert missing == [], f"paths in docs/artifacts.md that no dasd_utils.layout function gives: {missing}"


def test_the_check_fails_for_a_path_the_layout_does_not_know(tmp_path):
    assert "teacher/stage3.jsonl" not in layout_paths(tmp_path)
    assert "data/train.jsonl" in layout_paths(tmp_path) and "analyses/das/" in layout_paths(tmp_path)
