"""What the set-up carries from one notebook to the next on Colab and Kaggle, where each notebook is a new machine.

* **Notebook 01's settings** (:func:`read_settings`, :func:`write_settings`): the repository URL,
  the profile and the run directory notebook 01 used (relative to the settings' folder when it lies
  inside it, so that on Kaggle an attached output's ``runs/colab`` means this notebook's own copy),
  in ``notebook_settings.json`` next to the runs (``MyDrive/dasd/`` on Colab, ``/kaggle/working/``
  on Kaggle). The next notebooks' set-up
  cell reads it in plain Python before the repository is cloned (their ``REPO_URL``), and
  :func:`~dasd_utils.notebook.setup.setup_notebook` takes the run from it when ``PROFILE`` and
  ``RUN_DIR`` are left at None. The teacher's URL and model of notebook 01's form go into the run's
  ``config.json`` like any setting (:func:`form_overrides`); the key is never stored.
* **Kaggle's chaining** (:func:`attached_runs`, :func:`copy_missing`): a Kaggle notebook only sees
  another notebook's output when it is attached as input, read-only, under ``/kaggle/input/``; the
  set-up copies the files of the attached ``runs/<profile>`` folders that ``/kaggle/working`` lacks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..jsonl import write_json_atomic
from ..layout import NOTEBOOK_SETTINGS_FILE

#: Notebook 01's form fields (Colab ``# @param``), read by the shared set-up cell from the notebook's globals.
FORM_FIELDS = ("REPO_URL", "TEACHER_URL", "TEACHER_MODEL")
#: How deep under /kaggle/input an attached output's ``runs/`` folder may be (``<input>/runs``, ``<a>/<b>/runs``...).
KAGGLE_INPUT_DEPTH = 3


def settings_file(folder: str | Path) -> Path:
    """Return the path of ``notebook_settings.json`` in ``folder``."""
    return Path(folder) / NOTEBOOK_SETTINGS_FILE


def read_settings(folders: Iterable[str | Path]) -> dict[str, Any]:
    """Return the first readable ``notebook_settings.json`` object among ``folders`` (empty when there is none)."""
    for folder in folders:
        try:
            data = json.loads(settings_file(folder).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def write_settings(folder: str | Path, settings: Mapping[str, Any]) -> Path:
    """Return the path of ``notebook_settings.json`` in ``folder`` after writing ``settings`` there (None values dropped)."""
    return write_json_atomic(settings_file(folder), {k: v for k, v in settings.items() if v is not None})


def form_overrides(form: Mapping[str, Any], overrides: Mapping[str, Any] | None, teacher_backend: str) -> dict[str, Any]:
    """Return ``overrides`` completed with notebook 01's teacher fields (``OVERRIDES`` keys win, empty fields ignored).

    Only for a teacher reached through an API (``teacher.backend=openai``): the demo's local
    stand-in teacher has no URL, and its model is not gpt-oss.
    """
    out = dict(overrides or {})
    if teacher_backend != "openai":
        return out
    for field, key in (("TEACHER_URL", "teacher.base_url"), ("TEACHER_MODEL", "teacher.model")):
        value = str(form.get(field) or "").strip()
        if value and key not in out:
            out[key] = value
    return out


def attached_runs(input_root: str | Path, profile: str) -> list[Path]:
    """Return the ``runs/<profile>`` folders of the outputs attached under ``input_root``, the fullest first."""
    root = Path(input_root)
    found: list[Path] = []
    for depth in range(1, KAGGLE_INPUT_DEPTH + 1):
        found += [p for p in root.glob("/".join(["*"] * depth) + f"/runs/{profile}") if p.is_dir()]
    return sorted(set(found), key=lambda p: (-sum(1 for f in p.rglob("*") if f.is_file()), str(p)))


def attached_settings_folders(input_root: str | Path) -> list[Path]:
    """Return the folders under ``input_root`` (Kaggle's attached outputs) that hold a ``notebook_settings.json``."""
    root = Path(input_root)
    found: list[Path] = []
    for depth in range(1, KAGGLE_INPUT_DEPTH + 1):
        found += [p.parent for p in root.glob("/".join(["*"] * depth) + f"/{NOTEBOOK_SETTINGS_FILE}")]
    return sorted(set(found))


def copy_missing(sources: Sequence[Path], target: str | Path) -> tuple[int, int]:
    """Return (files, bytes) copied from ``sources`` into ``target``: only files ``target`` does not have yet.

    A file already in ``target`` is this session's (or an earlier source's) and is never
    overwritten; sources come fullest first, so the most complete attached run wins.
    """
    target = Path(target)
    files = size = 0
    for source in sources:
        for path in sorted(source.rglob("*")):
            dest = target / path.relative_to(source)
            if path.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
                files += 1
                size += dest.stat().st_size
    return files, size


def chaining_message(sources: Sequence[Path], target: Path, copied: tuple[int, int]) -> str:
    """Return the French line saying which attached runs were copied into ``/kaggle/working`` (or that none is attached)."""
    if not sources:
        return ("Kaggle : aucun run attaché en entrée (/kaggle/input/*/runs/…). Pour continuer un run, ajoutez la "
                "sortie du notebook précédent : Add Input → Your Work → Notebook Output Files → ce notebook.")
    files, size = copied
    where = ", ".join(str(s) for s in sources)
    if not files:
        return f"Kaggle : run attaché ({where}) déjà présent dans {target}."
    return f"Kaggle : {files} fichier(s) ({size / 2**20:.1f} Mo) copiés de {where} vers {target} (l'entrée est en lecture seule)."


__all__ = ["FORM_FIELDS", "KAGGLE_INPUT_DEPTH", "attached_runs", "attached_settings_folders", "chaining_message", "copy_missing", "form_overrides",
           "read_settings", "settings_file", "write_settings"]
