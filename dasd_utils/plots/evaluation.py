"""Evaluation figures: accuracy with Wilson intervals, format compliance, predicted-vs-gold confusion.

Labels are in French (the report's language). Demo-profile figures carry
:func:`dasd_utils.plots.stand_in_note` so that nobody mistakes them for the course's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..prompts import LETTERS
from . import MODEL_COLOURS, figures_dir, save, stand_in_note

_FALLBACK_COLOURS = ["#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf"]


def _colour(name: str, i: int) -> str:
    return MODEL_COLOURS.get(name, _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)])


def _order(metrics: dict[str, Any]) -> list[str]:
    return list(metrics.get("model_order") or metrics["models"])


def _caption(fig, profile: str) -> None:
    note = stand_in_note(profile)
    if note:
        fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, style="italic", color="#b2182b")


def accuracy_figure(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write bars of accuracy per model with Wilson 95% intervals (and the log-likelihood accuracy); return the path."""
    names = _order(metrics)
    models = metrics["models"]
    x = np.arange(len(names))
    has_ll = any(models[n].get("loglik_accuracy") is not None for n in names)
    width = 0.38 if has_ll else 0.6
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 2.5, 4.2))
    for i, name in enumerate(names):
        m = models[name]
        acc = m["accuracy"] or 0.0
        low, high = m["ci95"]
        pos = x[i] - (width / 2 if has_ll else 0)
        ax.bar(pos, acc, width, color=_colour(name, i), edgecolor="black", linewidth=0.6,
               label="génération (réponse extraite)" if i == 0 else None)
        ax.errorbar(pos, acc, yerr=[[acc - low], [high - acc]], fmt="none", ecolor="black", capsize=5, linewidth=1.2)
        ax.text(pos, high + 0.02, f"{100 * acc:.0f} %\n[{100 * low:.0f} ; {100 * high:.0f}]", ha="center", va="bottom", fontsize=8)
        if has_ll and m.get("loglik_accuracy") is not None:
            ll = m["loglik_accuracy"]
            ll_low, ll_high = m["loglik_ci95"]
            pos2 = x[i] + width / 2
            ax.bar(pos2, ll, width, color=_colour(name, i), alpha=0.35, hatch="//", edgecolor="black", linewidth=0.6,
                   label="log-vraisemblance QCM (lm-eval)" if i == 0 else None)
            ax.errorbar(pos2, ll, yerr=[[ll - ll_low], [ll_high - ll]], fmt="none", ecolor="black", capsize=5, linewidth=1.0)
            ax.text(pos2, ll_high + 0.02, f"{100 * ll:.0f} %", ha="center", va="bottom", fontsize=8)
    ax.axhline(0.2, color="#666666", linestyle=":", linewidth=1, label="hasard (1 chance sur 5)")
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("exactitude")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{100 * v:.0f} %"))
    n = metrics.get("n_items")
    ax.set_title(f"Exactitude sur CommonsenseQA (n = {n}, barres : IC 95 % de Wilson)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    _caption(fig, metrics.get("profile", ""))
    return save(fig, path)


def format_figure(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write bars of format compliance, extractable answers and truncated responses per model; return the path."""
    names = _order(metrics)
    models = metrics["models"]
    series = [
        ("format « Final Answer: X » respecté", lambda m: m["format_rate"], "#1b9e77"),
        ("une lettre extraite (mode tolérant)", lambda m: m["extracted_rate"], "#7570b3"),
        ("tronquée (max_new_tokens atteint)", lambda m: (m["truncated"] / m["n"]) if m["n"] else 0.0, "#d95f02"),
    ]
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 2.5, 4.0))
    for k, (label, get, colour) in enumerate(series):
        values = [get(models[n]) or 0.0 for n in names]
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, values, width, color=colour, label=label, edgecolor="black", linewidth=0.5)
        for p, v in zip(pos, values):
            ax.text(p, v + 0.015, f"{100 * v:.0f} %", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{100 * v:.0f} %"))
    ax.set_ylabel("part des réponses")
    ax.set_title(f"Respect du format de réponse (n = {metrics.get('n_items')})")
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncol=1)
    _caption(fig, metrics.get("profile", ""))
    return save(fig, path)


def confusion_counts(predictions: Sequence[dict[str, Any]]) -> np.ndarray:
    """Return a 5 x 6 array: rows gold A-E, columns predicted A-E then 'none' (no letter extracted)."""
    counts = np.zeros((len(LETTERS), len(LETTERS) + 1), dtype=int)
    for p in predictions:
        row = LETTERS.index(p["gold"])
        col = LETTERS.index(p["extracted"]) if p["extracted"] in LETTERS else len(LETTERS)
        counts[row, col] += 1
    return counts


def confusion_figure(
    predictions: dict[str, Sequence[dict[str, Any]]], path: str | Path, profile: str = "", order: Sequence[str] | None = None
) -> Path:
    """Write one predicted-vs-gold letter matrix per model (with a column for 'no answer'); return the path."""
    names = list(order or predictions)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        counts = confusion_counts(predictions[name])
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, counts.max()))
        for (r, c), v in np.ndenumerate(counts):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > counts.max() / 2 else "black")
        ax.set_xticks(range(len(LETTERS) + 1))
        ax.set_xticklabels([*LETTERS, "aucune"], fontsize=8)
        ax.set_yticks(range(len(LETTERS)))
        ax.set_yticklabels(LETTERS, fontsize=8)
        ax.set_xlabel("lettre prédite")
        ax.set_ylabel("bonne réponse")
        correct = int(np.trace(counts[:, : len(LETTERS)]))
        ax.set_title(f"{name} ({correct}/{counts.sum()} correctes)", fontsize=10)
    fig.suptitle("Matrice de confusion : lettre prédite / bonne réponse", fontsize=11)
    fig.tight_layout()
    _caption(fig, profile)
    return save(fig, path)


def make_figures(cfg, metrics: dict[str, Any], predictions: dict[str, Sequence[dict[str, Any]]]) -> list[Path]:
    """Write eval_accuracy.png, eval_format.png and eval_confusion.png under ``<run_dir>/figures``; return their paths."""
    folder = figures_dir(cfg.run_dir)
    return [
        accuracy_figure(metrics, folder / "eval_accuracy.png"),
        format_figure(metrics, folder / "eval_format.png"),
        confusion_figure(predictions, folder / "eval_confusion.png", profile=cfg.profile, order=_order(metrics)),
    ]


__all__ = ["accuracy_figure", "confusion_counts", "confusion_figure", "format_figure", "make_figures"]
