"""Build notebooks/NN_*.ipynb from their sources in notebooks/src/ (jupytext percent format).

    python tools/build_notebooks.py               # rebuild every notebook, keeping stored outputs of unchanged cells
    python tools/build_notebooks.py 03            # only notebooks whose name starts with 03
    python tools/build_notebooks.py --check       # exit 1 if a committed notebook differs from its source

Each source ``notebooks/src/NN_name.py`` holds the notebook's cells as real code: ``# %%`` starts
a code cell (``# %% tags=["parameters"]`` adds metadata), ``# %% [markdown]`` a Markdown cell
whose lines are comments. The cell ``# %% dasd_setup="PHASE"`` is replaced by the cells every
notebook starts with (``notebooks/src/_setup.py``: parameters, set-up, configuration), with
``"DASD_PHASE"`` set to that phase. The built notebook starts with a cell saying it is generated
and from which file.

Cell ids are stable: a short hash of the cell's type and text (numbered when two cells are the
same), so editing one cell changes one id, and rebuilding an unchanged source changes nothing.
Rebuilding keeps the stored outputs of every cell whose id did not change; cells that changed
lose theirs until ``python tools/run_notebooks.py --in-place`` executes them again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SRC_DIR = NB_DIR / "src"
SHARED = SRC_DIR / "_setup.py"
PHASE_PLACEHOLDER = '"DASD_PHASE"'
#: Notebooks whose phase runs the student on the colab profile: only they ask Colab / Kaggle for a GPU.
GPU_NOTEBOOKS = ("03", "04", "05", "06", "08")

_HEADER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?P<meta>(?: +[A-Za-z_][A-Za-z0-9_]*=\S.*)?)\s*$")
_META = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|\S+)")


class SourceError(ValueError):
    """A notebook source cannot be read; the message names the file and the line."""


@dataclass
class Cell:
    """One cell of a source: its type, text and metadata."""

    cell_type: str
    source: str
    metadata: dict = field(default_factory=dict)


def parse_source(text: str, name: str = "<source>") -> list[Cell]:
    """Return the cells of a percent-format source (lines before the first ``# %%`` must be comments)."""
    cells: list[Cell] = []
    current: Cell | None = None
    lines: list[str] = []

    def close() -> None:
        if current is None:
            return
        body = lines[:]
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if current.cell_type == "markdown":
            out = []
            for k, line in enumerate(body):
                if line == "#" or line.startswith("# "):
                    out.append(line[2:])
                else:
                    raise SourceError(f"{name}: a Markdown cell's lines must start with '# ' ({line!r})")
            body = out
        current.source = "\n".join(body)
        cells.append(current)

    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            match = _HEADER.match(line)
            if match is None:
                raise SourceError(f"{name}:{lineno}: cannot read the cell header {line!r}")
            close()
            metadata = {}
            for key, value in _META.findall(match.group("meta") or ""):
                try:
                    metadata[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise SourceError(f"{name}:{lineno}: metadata {key}={value} is not JSON") from None
            current = Cell("markdown" if match.group("markdown") else "code", "", metadata)
            lines = []
        elif current is None:
            if line.strip() and not line.startswith("#"):
                raise SourceError(f"{name}:{lineno}: code before the first '# %%' cell")
        else:
            lines.append(line)
    close()
    return cells


def cell_id(cell_type: str, source: str, seen: dict[str, int]) -> str:
    """Return a stable id for a cell: 8 hex digits of its type and text, numbered when repeated in a notebook."""
    base = hashlib.sha1(f"{cell_type}\0{source}".encode("utf-8")).hexdigest()[:8]
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def sources() -> dict[str, Path]:
    """Return ``{notebook file name: source path}`` for every source in notebooks/src/."""
    return {f"{p.stem}.ipynb": p for p in sorted(SRC_DIR.glob("[0-9][0-9]_*.py"))}


def notebook_cells(source: Path) -> list[Cell]:
    """Return the notebook's cells: the 'generated' notice, then the source's cells with the set-up injected."""
    rel = f"notebooks/src/{source.name}"  # where the source lives in the repository
    cells = [Cell("markdown", f"*Notebook généré depuis [`{rel}`](src/{source.name}) par `tools/build_notebooks.py` : "
                              f"modifiez la source, pas ce fichier (voir le README, « Modifier un notebook »).*")]
    shared = parse_source(SHARED.read_text(encoding="utf-8"), SHARED.name)
    injected = 0
    for cell in parse_source(source.read_text(encoding="utf-8"), rel):
        phase = cell.metadata.get("dasd_setup")
        if phase is None:
            cells.append(cell)
            continue
        injected += 1
        for s in shared:
            cells.append(Cell(s.cell_type, s.source.replace(PHASE_PLACEHOLDER, json.dumps(phase)), dict(s.metadata)))
    if injected != 1:
        raise SourceError(f"{rel}: needs exactly one '# %% dasd_setup=\"PHASE\"' cell, found {injected}")
    return cells


def build_notebook(name: str, source: Path):
    """Return the nbformat notebook built from ``source`` (no outputs)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    seen: dict[str, int] = {}
    cells = []
    for cell in notebook_cells(source):
        make = new_markdown_cell if cell.cell_type == "markdown" else new_code_cell
        metadata = {k: v for k, v in cell.metadata.items() if k != "dasd_setup"}
        cells.append(make(cell.source, metadata=metadata, id=cell_id(cell.cell_type, cell.source, seen)))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": []}
    if name[:2] in GPU_NOTEBOOKS:
        # Colab reads "accelerator" + colab.gpuType; Kaggle reads its own "kaggle" block.
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
        nb.metadata["kaggle"] = {"accelerator": "nvidiaTeslaT4", "isGpuEnabled": True, "isInternetEnabled": True,
                                 "language": "python", "sourceType": "notebook"}
    else:
        nb.metadata["kaggle"] = {"accelerator": "none", "isGpuEnabled": False, "isInternetEnabled": True,
                                 "language": "python", "sourceType": "notebook"}
    nbformat.validate(nb)
    return nb


def comparable(nb) -> list[tuple]:
    """Return what the source decides in a notebook: each cell's id, type, text and tags (outputs ignored)."""
    out = []
    for cell in nb.cells:
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        out.append((cell.get("id"), cell.cell_type, source, tuple(cell.metadata.get("tags") or ())))
    return out


def differences(built, committed) -> list[str]:
    """Return, for a built and a committed notebook, one line per cell that differs (empty when they agree)."""
    a, b = comparable(built), comparable(committed)
    lines = []
    for k in range(max(len(a), len(b))):
        x = a[k] if k < len(a) else None
        y = b[k] if k < len(b) else None
        if x != y:
            what = "missing in the notebook" if y is None else "not in the source" if x is None else (
                "text" if x[2] != y[2] else "tags" if x[3] != y[3] else "id")
            shown = (y or x)[2].splitlines()[:1]
            lines.append(f"cell {k} ({what}): {shown[0][:70] if shown else ''!r}")
    return lines


def write(names: list[str] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Build the notebooks (all, or those whose name starts with one of ``names``) into ``out_dir``; return their paths.

    Stored outputs of cells whose id is unchanged are kept (only when writing over notebooks/).
    """
    import nbformat

    out_dir = Path(out_dir) if out_dir is not None else NB_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in sources().items():
        if names and not any(name.startswith(n) for n in names):
            continue
        nb = build_notebook(name, source)
        path = out_dir / name
        if path.is_file():
            old = {c.get("id"): c for c in nbformat.read(path, as_version=4).cells}
            for cell in nb.cells:
                previous = old.get(cell.id)
                if cell.cell_type == "code" and previous is not None and previous.source == cell.source:
                    cell.outputs = previous.get("outputs", [])
                    cell.execution_count = previous.get("execution_count")
        nbformat.write(nb, path)
        written.append(path)
    return written


def check() -> list[str]:
    """Return one problem per committed notebook that differs from its source, or that has no source."""
    import nbformat

    problems = []
    built_names = sources()
    for name, source in built_names.items():
        path = NB_DIR / name
        if not path.is_file():
            problems.append(f"notebooks/{name} is missing: run python tools/build_notebooks.py")
            continue
        diff = differences(build_notebook(name, source), nbformat.read(path, as_version=4))
        if diff:
            problems.append(f"notebooks/{name} differs from {source.relative_to(ROOT)} (an edit made in Jupyter is lost "
                            "at the next build: move it into the source, then python tools/build_notebooks.py):\n  "
                            + "\n  ".join(diff[:5]))
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        if path.name not in built_names:
            problems.append(f"notebooks/{path.name} has no source in notebooks/src/")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (e.g. 03); default: all")
    parser.add_argument("--check", action="store_true", help="compare the committed notebooks with their sources")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) if problems else "every notebook matches its source")
        return 1 if problems else 0
    for path in write(args.names or None):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
