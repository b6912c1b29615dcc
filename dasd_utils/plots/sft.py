"""Figure of phases 5-6: the training loss of both SFT stages (``figures/sft_loss.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from . import MODEL_COLOURS, save, stand_in_note

STAGE_LABELS = {
    "stage1": "Stage 1 : réponses à basse température",
    "stage2": "Stage 2 : réponses à haute température gardées par DAS",
}


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    """Return the trailing moving average of ``values`` (shorter windows at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_sft_loss(logs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, profile: str = "") -> Path:
    """Return ``path`` after drawing the loss per optimisation step of stage 1 then stage 2 on one axis.

    ``logs`` maps ``stage1`` / ``stage2`` to ``train_log.jsonl`` records (``step``, ``loss``).
    Stage 2's steps are drawn after stage 1's, a dashed line marks where stage 2 starts from
    the stage-1 adapter. With many steps a moving average is drawn over the raw points.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    offset = 0
    for name in ("stage1", "stage2"):
        records = [r for r in logs.get(name, []) if r.get("loss") is not None]
        if not records:
            continue
        steps = [offset + int(r["step"]) for r in records]
        losses = [float(r["loss"]) for r in records]
        colour = MODEL_COLOURS.get(name, None)
        many = len(losses) > 30
        ax.plot(steps, losses, marker="" if many else "o", markersize=3, linewidth=1,
                alpha=0.35 if many else 0.9, color=colour, label=STAGE_LABELS.get(name, name))
        if many:
            window = max(5, len(losses) // 20)
            ax.plot(steps, _moving_average(losses, window), linewidth=2, color=colour,
                    label=f"{STAGE_LABELS.get(name, name)} (moyenne glissante sur {window} pas)")
        if name == "stage1":
            offset = steps[-1]
        elif offset:
            ax.axvline(offset + 0.5, color="#555555", linestyle="--", linewidth=1,
                       label="Début du stage 2 (repart de l'adaptateur du stage 1)")
    ax.set_xlabel("Pas d'optimisation (stage 2 à la suite du stage 1)")
    ax.set_ylabel("Perte (entropie croisée sur la réponse)")
    ax.set_title("Perte d'entraînement du SFT LoRA en deux stages")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    note = stand_in_note(profile)
    if note:
        fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, style="italic", color="#444444")
    return save(fig, path)


__all__ = ["plot_sft_loss", "STAGE_LABELS"]
