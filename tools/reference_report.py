"""The reference report in report/: written from a demo run, or checked against what the current code builds.

    python tools/reference_report.py                     # write report/rapport.md, rapport.html, figures/ from runs/demo
    python tools/reference_report.py --check             # exit 1 when report/ differs from what runs/demo builds now
    python tools/reference_report.py --run-dir DIR --out FOLDER

``make reference-report`` runs the demo pipeline (everything cached is reused) and then this
script; ``make check-reference-report`` runs ``--check``, which CI does after ``make test`` (whose
notebooks have just produced runs/demo). The check compares the Markdown, where figures are
linked by name, with the values that differ between machines masked (training durations and
tokens per second, the run's folder name, absolute paths), and the list of figures; the HTML is
rendered from that Markdown by the same code, so it is not compared byte for byte.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Said first in the reference report: it is the demo's stand-in output, not a result.
BANNER = (
    "> 📄 **Rapport de référence, sortie de substitution.** Ce fichier est construit par "
    "`make reference-report` à partir d'un run du profil `demo`, où SmolLM2-135M-Instruct joue à la fois le "
    "professeur et l'élève, sur CPU. Il montre la forme du rapport que produit la chaîne ; ses chiffres ne sont "
    "**pas** les résultats du cours et ne disent rien de la méthode DASD. Le rapport de votre run est dans "
    "`runs/<run>/report/` (notebook 07), votre discussion dans `report/notes_etudiant.md`."
)
#: What differs between two machines building the same demo run (masked before comparing).
_DURATION = re.compile(r"\b\d+(?:,\d+)? (?:s|min)\b")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:tmp|home|work|root|content|kaggle|Users|private|var)/\S*")
_RUN_NAME = re.compile(r"^\| Run \| .* \|$", re.MULTILINE)
_MACHINE_COLUMNS = ("Tokens/s", "Durée")


def _mask_table_columns(text: str, headers: tuple[str, ...] = _MACHINE_COLUMNS) -> str:
    """Return ``text`` with the cells of the named columns blanked in every Markdown table that has them."""
    out, columns = [], None
    for line in text.split("\n"):
        if line.startswith("|"):
            cells = line.split("|")
            if columns is None:
                columns = [i for i, cell in enumerate(cells) if cell.strip() in headers]
            elif not set(line) <= set("|:- "):
                cells = [" ⟨machine⟩ " if i in columns else cell for i, cell in enumerate(cells)]
                line = "|".join(cells)
        else:
            columns = None
        out.append(line)
    return "\n".join(out)


def mask(markdown_text: str) -> str:
    """Return the report's Markdown with machine-dependent values replaced by placeholders."""
    text = _mask_table_columns(markdown_text)
    text = _RUN_NAME.sub("| Run | ⟨run⟩ |", text)
    text = _ABSOLUTE_PATH.sub("⟨chemin⟩", text)
    return _DURATION.sub("⟨durée⟩", text)


def differences(expected_dir: Path, built_dir: Path) -> list[str]:
    """Return the differences between two exported reports (masked Markdown, figure names); empty when they match."""
    problems: list[str] = []
    expected_md, built_md = expected_dir / "rapport.md", built_dir / "rapport.md"
    if not expected_md.is_file():
        return [f"{expected_md} is missing"]
    old, new = mask(expected_md.read_text(encoding="utf-8")), mask(built_md.read_text(encoding="utf-8"))
    if old != new:
        diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "report/rapport.md (committed)",
                                    "rapport.md (built now)", lineterm="", n=1)
        problems.append("\n".join(list(diff)[:80]))
    names = {p.name for p in (expected_dir / "figures").glob("*.png")}
    built = {p.name for p in (built_dir / "figures").glob("*.png")}
    if names != built:
        problems.append(f"figures differ: committed only {sorted(names - built)}, built only {sorted(built - names)}")
    if not (expected_dir / "rapport.html").is_file():
        problems.append(f"{expected_dir / 'rapport.html'} is missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "demo"), help="a complete demo run (default: runs/demo)")
    parser.add_argument("--out", default=str(ROOT / "report"), help="the reference report's folder (default: report/)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)

    from dasd_utils.report.export import export_report

    run_dir, out_dir = Path(args.run_dir), Path(args.out)
    if not (run_dir / "eval" / "metrics.json").is_file():
        print(f"{run_dir} is not a complete run: run `make demo` (or `make reference-report`) first", file=sys.stderr)
        return 2
    if not args.check:
        written = export_report(run_dir, out_dir, banner=BANNER)
        print(f"{written['markdown']}, {written['html']} and {len(written['figures'])} figures written from {run_dir}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        export_report(run_dir, tmp, banner=BANNER)
        problems = differences(out_dir, Path(tmp))
    if problems:
        print("The reference report in report/ is not what the current code builds from "
              f"{run_dir}:\n\n" + "\n\n".join(problems) + "\n\nRegenerate it with `make reference-report`.", file=sys.stderr)
        return 1
    print(f"report/ matches the report built from {run_dir} (durations, speeds and paths masked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
