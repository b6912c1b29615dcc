"""Figure of phase 3: what the teacher produced per stage, and how confident it was.

``teacher_quality.png`` has two panels:

* left: per stage, the requests split into kept, rejected per reason, and failed;
* right: the distribution of each response's mean token probability (teacher confidence) per
  stage; responses without logprobs cannot appear there and are counted in the legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt

from . import figures_dir, save, stand_in_note

#: French labels for the bars (the figure goes into the French report).
REASON_LABELS = {
    "kept": "gardées",
    "quality_ok_not_kept": "valides (doublon best-of-n)",
    "empty": "vide",
    "too_short": "trop courte",
    "no_final_answer": "sans « Final Answer »",
    "wrong_answer": "mauvaise réponse",
    "repetitive": "répétitive",
    "too_long": "trop longue (contexte élève)",
    "format_talk": "parle du format",
    "too_long_to_generate": "plus longue que la génération de l'élève",
    "mentions_hint": "cite l'indice",
    "inconsistent_answer": "conclusion ≠ réponse finale",
    "request_failed": "requête échouée",
}
REASON_COLOURS = {
    "kept": "#1b9e77",
    "quality_ok_not_kept": "#a6dba0",
    "empty": "#bdbdbd",
    "too_short": "#969696",
    "no_final_answer": "#fdae61",
    "wrong_answer": "#d7191c",
    "repetitive": "#7570b3",
    "too_long": "#e7298a",
    "format_talk": "#8c6bb1",
    "too_long_to_generate": "#c51b7d",
    "mentions_hint": "#66a61e",
    "inconsistent_answer": "#e6ab02",
    "request_failed": "#252525",
}
STAGE_COLOURS = {1: "#377eb8", 2: "#e41a1c"}


def _category(record: Mapping[str, Any]) -> str:
    if record.get("kept"):
        return "kept"
    quality = record.get("quality") or {}
    if quality.get("ok"):
        return "quality_ok_not_kept"
    return quality.get("reason") or "request_failed"


def plot_teacher_quality(cfg: Any, summary: Mapping[str, Any], records: Mapping[int, Sequence[Mapping[str, Any]]],
                         path: str | Path | None = None) -> Path:
    """Return the path of ``figures/teacher_quality.png`` drawn from the stage records and summary."""
    path = Path(path) if path is not None else figures_dir(cfg.run_dir) / "teacher_quality.png"
    stages = sorted(records)
    fig, (ax_bar, ax_hist) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.1, 1]})

    categories = [c for c in REASON_LABELS if any(_category(r) == c for s in stages for r in records[s])]
    lefts = [0] * len(stages)
    for category in categories:
        counts = [sum(1 for r in records[s] if _category(r) == category) for s in stages]
        ax_bar.barh([f"stage {s}" for s in stages], counts, left=lefts, color=REASON_COLOURS[category],
                    label=REASON_LABELS[category], edgecolor="white")
        for i, count in enumerate(counts):
            if count:
                ax_bar.text(lefts[i] + count / 2, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if category in ("kept", "wrong_answer", "request_failed") else "black")
        lefts = [a + b for a, b in zip(lefts, counts)]
    labels = []
    for s in stages:
        st = summary.get("stages", {}).get(f"stage{s}", {})
        acc = st.get("accuracy")
        labels.append(f"stage {s}\nT={st.get('temperature', '?')}" + (f"\nexactitude {acc:.0%}" if acc is not None else ""))
    ax_bar.set_yticks(range(len(stages)), labels)
    ax_bar.invert_yaxis()
    ax_bar.set_xlabel("requêtes au professeur")
    ax_bar.set_title("Filtre de qualité par stage")
    ax_bar.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)

    bins = [i / 20 for i in range(21)]
    for s in stages:
        values = [r["mean_token_prob"] for r in records[s] if r.get("mean_token_prob") is not None]
        missing = sum(1 for r in records[s] if r.get("error") is None and r.get("mean_token_prob") is None)
        label = f"stage {s} (n={len(values)}" + (f", {missing} sans logprobs" if missing else "") + ")"
        if values:
            ax_hist.hist(values, bins=bins, alpha=0.55, color=STAGE_COLOURS.get(s, "#666666"), label=label)
            mean = sum(values) / len(values)
            ax_hist.axvline(mean, color=STAGE_COLOURS.get(s, "#666666"), linestyle="--", linewidth=1)
        else:
            ax_hist.plot([], [], color=STAGE_COLOURS.get(s, "#666666"), label=label)
    ax_hist.set_xlim(0, 1)
    ax_hist.set_xlabel("probabilité moyenne des tokens de la réponse")
    ax_hist.set_ylabel("réponses")
    ax_hist.set_title("Confiance du professeur (tirets : moyenne)")
    ax_hist.legend(fontsize=8)

    model = summary.get("model", getattr(getattr(cfg, "teacher", None), "model", "?"))
    if summary.get("stand_in"):
        model = f"{model.replace(' (stand-in teacher)', '')} — professeur de substitution"
    title = f"Génération du professeur : {model}"
    note = stand_in_note(getattr(cfg, "profile", ""))
    if summary.get("stand_in") and not note:
        note = "professeur de substitution : pas le professeur du cours"
    if note:
        title += f"\n({note})"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


__all__ = ["plot_teacher_quality"]
