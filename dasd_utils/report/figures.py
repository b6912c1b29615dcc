"""The run's figures in the report: which PNGs are taken (image files inside the run only), in
which section, with which caption; and the loss curves drawn from the training logs when the run
has no loss figure."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import layout
from ..plots import stand_in_note
from .files import read_jsonl
from .format import md_code, number

log = logging.getLogger("dasd_utils.report")

# Figure names come from the phases (teacher_quality.png, das_stage1.png, sft_loss.png, ...);
# unknown names still appear, in the section their name suggests or in "Autres figures".
FIGURE_SECTIONS = (
    ("sft", ("loss", "sft", "train")),
    ("das", ("das", "ratio", "sentence", "divergence", "scatter", "provenance")),
    ("eval", ("eval", "accuracy", "format", "confusion", "metric", "mcnemar", "answer")),
    ("teacher", ("teacher", "quality", "confidence", "generation")),
)
FIGURE_CAPTIONS = (
    ("teacher_quality", "Filtre de qualité : réponses du professeur gardées et rejetées (par raison) pour chaque stage, "
                        "et distribution de sa confiance (probabilité moyenne des tokens)."),
    ("das_stage1", "Distribution du taux de phrases professeur, stage 1 : réponses gardées et rejetées, avec le seuil."),
    ("das_stage2", "Distribution du taux de phrases professeur, stage 2 : réponses gardées et rejetées, avec le seuil."),
    ("scatter", "P_T contre P_S pour chaque phrase ; zones ombrées : phrases professeur (orange) et élève (vert), les autres sont partagées."),
    ("profile", "Profil d'un exemple phrase par phrase : P_T et P_S le long de la réponse, fond coloré par type de phrase."),
    ("loss", "Courbes de perte d'entraînement des deux stages."),
    ("confusion", "Matrice de confusion : lettre prédite contre lettre correcte."),
    ("format", "Taux de réponses au format demandé, par modèle."),
    ("accuracy", "Exactitude par modèle, avec son intervalle de confiance."),
)
#: Order of figures inside a section: the order of FIGURE_CAPTIONS, then by name.
_FIGURE_ORDER = ("teacher_quality", "das_stage1", "das_stage2", "scatter", "profile", "loss", "accuracy", "format", "confusion")

#: First bytes of the image formats the report embeds (PNG, JPEG, GIF, WebP); nothing else is inlined.
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                    b"GIF89a": "image/gif"}


def image_mime(path: Path) -> str | None:
    """Return the MIME type of a PNG, JPEG, GIF or WebP file from its first bytes, else None."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_SIGNATURES.items() if head.startswith(magic)), None)


def inside(path: Path, root: Path) -> Path | None:
    """Return ``path`` fully resolved (symlinks followed) when it is a regular file inside ``root``, else None."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(root.resolve()):
        return None
    return resolved


def run_figures(run_dir: Path, problems: list[str] | None = None) -> list[Path]:
    """Return the run's ``figures/*.png`` that are image files inside the run (a symlink leading out is left out)."""
    out = []
    for path in sorted(layout.figures_dir(run_dir).glob("*.png")):
        if inside(path, run_dir) is None or image_mime(path) is None:
            log.warning("report: %s is left out (not an image file inside the run directory)", path)
            if problems is not None:
                problems.append(f"figure {path.name} ignorée (pas une image à l'intérieur du run)")
            continue
        out.append(path)
    return out


def classify_figures(paths: list[Path]) -> dict[str, list[Path]]:
    """Return the figures grouped by report section (teacher, das, sft, eval, other), each in display order."""
    groups: dict[str, list[Path]] = {"teacher": [], "das": [], "sft": [], "eval": [], "other": []}

    def order(path: Path) -> tuple[int, str]:
        stem = path.stem.lower()
        return next((i for i, key in enumerate(_FIGURE_ORDER) if key in stem), len(_FIGURE_ORDER)), path.name

    for path in sorted(paths, key=order):
        stem = path.stem.lower()
        section = next((name for name, words in FIGURE_SECTIONS if any(w in stem for w in words)), "other")
        groups[section].append(path)
    return groups


def caption(path: Path, profile: str | None) -> str:
    stem = path.stem.lower()
    text = next((text for key, text in FIGURE_CAPTIONS if key in stem), f"Figure {md_code(path.name)}.")
    note = stand_in_note(profile or "")
    return f"{text} ({note})" if note else text


def loss_curves_fallback(run_dir: Path, out_dir: Path) -> Path | None:
    """Return a loss-curve PNG drawn from sft/stage*/train_log.jsonl when no loss figure exists."""
    logs = {}
    for stage in layout.STAGES:
        rows = read_jsonl(layout.sft_train_log(run_dir, stage)) or []
        points = [(r["step"], r["loss"]) for r in rows if number(r.get("step")) is not None and number(r.get("loss")) is not None]
        if points:
            logs[stage] = points
    if not logs:
        return None
    import matplotlib.pyplot as plt

    from ..plots import MODEL_COLOURS, save

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for stage, points in logs.items():
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker=".", color=MODEL_COLOURS.get(f"stage{stage}"), label=f"stage {stage}")
    ax.set_xlabel("pas d'optimisation")
    ax.set_ylabel("perte (entropie croisée)")
    ax.set_title("Courbes de perte (tracées depuis train_log.jsonl)")
    ax.legend()
    return save(fig, out_dir / "courbes_de_perte.png")
