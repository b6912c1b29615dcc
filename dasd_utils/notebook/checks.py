"""What a notebook checks before the costly work that needs it: the teacher's endpoint, in notebook 01.

:func:`check_teacher` runs the teacher phase's own check (:func:`dasd_utils.teacher.check_endpoint`:
the run's first stage-1 request, sent alone, judged by the preflight) and prints the verdict in
French; a verdict that stops the run becomes a :class:`~dasd_utils.notebook.setup.NotebookStop`
whose message says what to fix (:mod:`~dasd_utils.notebook.stops`).
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from .setup import NotebookStop

_WARNINGS = {
    "max_tokens": "la réponse a été coupée par teacher.max_tokens : augmentez-le (OVERRIDES, notebook 01) pour des raisonnements complets",
}


def teacher_verdict_lines(result: dict[str, Any], cfg: Config) -> list[str]:
    """Return the French lines describing a teacher check's result (see :func:`dasd_utils.teacher.check_endpoint`)."""
    if result.get("reason") == "local":
        return [f"Professeur local ({cfg.teacher.model}) : rien à joindre, rien à vérifier."]
    if result.get("reason") == "no_question":
        return ["Aucune question d'entraînement dans ce run : rien à demander au professeur."]
    if result.get("reason") == "answered_before":
        return ["Le professeur a déjà répondu à la première requête de ce run (teacher/stage1.jsonl) : "
                "rien n'est renvoyé."]
    verdict = result.get("preflight") or {}
    record = result.get("record") or {}
    tokens = len(record.get("tokens") or [])
    lines = [f"Professeur joignable : {verdict.get('host', '?')}, modèle {cfg.teacher.model} ; clé acceptée, réponse "
             f"de {len(record.get('content') or '')} caractères avec les log-probabilités de ses {tokens} tokens. "
             "Cette réponse est gardée : le notebook 02 ne la redemandera pas."]
    for check in verdict.get("checks", []):
        if check.get("level") == "warn":
            lines.append("⚠ " + _WARNINGS.get(check.get("code"), f"avertissement : {check.get('text')}"))
    return lines


def check_teacher(cfg: Config) -> None:
    """Return None after printing the teacher check's verdict in French; raise NotebookStop with what to fix when it fails.

    Nothing is returned so that the notebook cell shows the verdict only, not the stored record
    (:func:`dasd_utils.teacher.check_endpoint` returns it).
    """
    from .. import teacher
    from .stops import expected_errors, notebook_message

    try:
        result = teacher.check_endpoint(cfg)
    except tuple(expected_errors()) as exc:
        raise NotebookStop(notebook_message(exc, "generate")) from None
    for line in teacher_verdict_lines(result, cfg):
        print(line)


__all__ = ["check_teacher", "teacher_verdict_lines"]
