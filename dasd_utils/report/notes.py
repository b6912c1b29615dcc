"""The student's own discussion in the report: a Markdown file, ``notes_etudiant.md``.

Where the report finds it, first match wins:

1. ``<run_dir>/notes_etudiant.md`` (:func:`dasd_utils.layout.student_notes`): the student's notes
   for this run. On Colab the run lives on Drive while the repository is cloned afresh in every
   session, so notebook 07 copies the skeleton there (:func:`ensure_run_notes`) and the student
   edits that copy;
2. ``report/notes_etudiant.md`` of the repository, when the package runs from a checkout: the
   skeleton with its guiding questions, or the student's discussion written in place;
3. nothing (an installed wheel): the report says where to write the file.

HTML comments (``<!-- ... -->``) are notes to the writer and are left out of the report. The
skeleton carries the line :data:`SKELETON_MARK`; while it is there the report says that the
discussion is still the skeleton. Headings are lowered to level 3 or below, so that the notes sit
inside the report's own section.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .. import layout
from ..hashing import file_sha256

NOTES_NAME = "notes_etudiant.md"
#: The line that marks the unfilled skeleton (delete it once the discussion is written).
SKELETON_MARK = "<!-- squelette -->"
#: The repository's root when the package runs from a checkout (not from an installed wheel).
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def repository_notes() -> Path | None:
    """Return ``report/notes_etudiant.md`` of the checkout the package runs from, or None (installed package, no file)."""
    path = CHECKOUT_ROOT / "report" / NOTES_NAME
    return path if (CHECKOUT_ROOT / "pyproject.toml").is_file() and path.is_file() else None


def find_notes(run_dir) -> tuple[Path, str] | None:
    """Return ``(path, origin)`` of the notes the report includes (origin ``run`` or ``repository``), or None."""
    own = layout.student_notes(run_dir)
    if own.is_file():
        return own, "run"
    repo = repository_notes()
    return (repo, "repository") if repo else None


def notes_fingerprint(run_dir) -> dict[str, str] | None:
    """Return the origin and SHA-256 of the notes the report would include (part of the report's inputs)."""
    found = find_notes(run_dir)
    return {"origin": found[1], "sha256": file_sha256(found[0])} if found else None


_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def lower_headings(text: str, top: int = 3) -> str:
    """Return ``text`` with every Markdown heading above level ``top`` lowered to ``top`` (fenced code left alone)."""
    out, fence = [], None
    for line in text.split("\n"):
        opening = _FENCE.match(line)
        if opening and (fence is None or opening.group(1).startswith(fence)):
            fence = None if fence else opening.group(1)[:3]
        elif fence is None:
            heading = re.match(r"^(#{1,6})(\s)", line)
            if heading and len(heading.group(1)) < top:
                line = "#" * top + line[len(heading.group(1)):]
        out.append(line)
    return "\n".join(out)


def notes_context(run_dir) -> dict[str, Any]:
    """Return the report's ``notes`` values: the Markdown to include, where it comes from, whether it is the skeleton."""
    found = find_notes(run_dir)
    if found is None:
        return {"available": False, "text": "", "origin": None, "skeleton": False, "name": NOTES_NAME}
    path, origin = found
    raw = path.read_text(encoding="utf-8")
    text = lower_headings(_COMMENT.sub("", raw)).strip()
    return {"available": bool(text), "text": text, "origin": origin, "skeleton": SKELETON_MARK in raw,
            "name": NOTES_NAME}


def ensure_run_notes(run_dir) -> Path | None:
    """Copy the repository's skeleton next to the run when the run has no notes yet; return the run's notes path.

    Returns None when there is nothing to copy (installed package) and the run has no notes.
    """
    own = layout.student_notes(run_dir)
    if own.is_file():
        return own
    repo = repository_notes()
    if repo is None:
        return None
    own.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo, own)
    return own


__all__ = ["CHECKOUT_ROOT", "NOTES_NAME", "SKELETON_MARK", "ensure_run_notes", "find_notes", "lower_headings",
           "notes_context", "notes_fingerprint", "repository_notes"]
