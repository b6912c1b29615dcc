"""Execute the numbered notebooks headless with papermill, on one run directory.

    python tools/run_notebooks.py                       # executed copies in runs/demo/notebooks/
    python tools/run_notebooks.py --in-place            # refresh the outputs stored in notebooks/ (for nbval)
    python tools/run_notebooks.py --profile colab --run-dir runs/colab
    python tools/run_notebooks.py --lab                 # open JupyterLab on notebooks/ (make lab)

The notebooks always run in this project's environment: the ``python3`` kernel they name is
redefined (through ``JUPYTER_PATH``, which Jupyter reads before the user's own kernels) as the
Python running this script, so a ``python3`` kernel the user installed elsewhere is not used.

Every notebook reuses what the previous phases already produced in the run directory, so after
``python -m dasd_utils all`` this only replays cached results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A stored output larger than this is dropped (re-running the cell shows it).
MAX_STORED_OUTPUT_BYTES = 300_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--run-dir", default=None, help="default: runs/<profile>")
    parser.add_argument("--out", default=None, help="folder for executed copies (default: <run-dir>/notebooks)")
    parser.add_argument("--in-place", action="store_true", help="overwrite notebooks/*.ipynb with their outputs")
    parser.add_argument("--only", nargs="*", default=None, help="notebook names or prefixes to run, e.g. 03 (default: all)")
    parser.add_argument("--lab", action="store_true", help="open JupyterLab on notebooks/ with the project's kernel instead")
    args = parser.parse_args(argv)
    use_project_kernel()
    if args.lab:
        command = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={ROOT / 'notebooks'}"]
        os.execv(sys.executable, command)

    import papermill as pm

    from dasd_utils.timing import TIMINGS_FILE, format_table, record_notebook

    run_dir = Path(args.run_dir or ROOT / "runs" / args.profile).resolve()
    out_dir = ROOT / "notebooks" if args.in_place else Path(args.out or run_dir / "notebooks").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if any(p.name.startswith(name) for name in args.only)]
    # The stored notebooks keep RUN_DIR=None (project default) so that they run anywhere.
    params = {"PROFILE": args.profile}
    if not args.in_place or args.run_dir:
        params["RUN_DIR"] = str(run_dir)
    for path in notebooks:
        start = time.perf_counter()
        target = out_dir / path.name
        pm.execute_notebook(
            str(path), str(target), parameters=params, cwd=str(ROOT / "notebooks"),
            kernel_name="python3", progress_bar=False, log_output=False,
        )
        if args.in_place:
            _strip_papermill(target)
        wall = time.perf_counter() - start
        if run_dir.is_dir():
            record_notebook(run_dir, path.name, wall)
        print(f"{path.name}: {wall:.1f} s -> {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    if (run_dir / TIMINGS_FILE).is_file():
        print(format_table(run_dir))
    return 0


def use_project_kernel() -> Path:
    """Make the ``python3`` kernel this interpreter (with the checkout on its path) for Jupyter started from here; return its folder."""
    folder = Path(sys.prefix) / "share" / "dasd-jupyter"
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (dasd_utils)",
        "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("JUPYTER_PATH", "")) if p)
    return folder


def _strip_papermill(path: Path) -> None:
    """Remove papermill's injected cell and metadata, and stderr outputs, so the stored notebook stays clean."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            # stderr holds progress bars and library warnings with machine paths: not worth storing.
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            # The inline HTML report (notebook 07) embeds every figure: it lives in the run directory,
            # so git keeps no copy of outputs that large.
            cell.outputs = [o for o in cell.outputs if len(json.dumps(o)) <= MAX_STORED_OUTPUT_BYTES]
    nbformat.write(nb, path)


if __name__ == "__main__":
    sys.exit(main())
