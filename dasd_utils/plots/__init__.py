"""Figures saved under ``runs/<run>/figures/``; one submodule per phase (teacher, das, sft, evaluation).

Every figure function takes the phase's records or summary, writes a PNG and returns its path.
Matplotlib runs headless (Agg) so that figures build in CI and on servers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

#: Colours used for the three sentence types and the three evaluated models, everywhere.
TYPE_COLOURS = {"teacher": "#d95f02", "shared": "#7570b3", "student": "#1b9e77"}
MODEL_COLOURS = {"base": "#999999", "stage1": "#377eb8", "stage2": "#e41a1c"}


def figures_dir(run_dir: str | Path) -> Path:
    """Return ``<run_dir>/figures``, created if needed."""
    path = Path(run_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, path: str | Path) -> Path:
    """Save a figure as PNG (fixed DPI, no timestamp metadata) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def stand_in_note(profile: str) -> str:
    """Return the caption suffix that marks demo-profile figures as coming from stand-in models."""
    if profile == "demo":
        return "profil demo : petits modèles de substitution, pas les résultats du cours"
    return ""
