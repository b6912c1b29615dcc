"""Figures of phase 4 (Divergence-Aware Sampling), from the DAS records of ``das/stage{1,2}.jsonl``.

* ``das_stage1.png`` / ``das_stage2.png``: distribution of ``teacher_sentence_ratio`` per example,
  kept vs rejected, with the keep threshold (as in the course report's Figures 1 and 2);
* ``das_scatter.png``: ``P_T`` against ``P_S`` for every sentence, the teacher-sentence region
  (``P_T > 0.6`` and ``P_T - P_S > 0.2``) shaded;
* ``das_profile.png``: one response sentence by sentence, ``P_T`` and ``P_S`` (and ``P_D`` when a
  distilled student was scored) along the response, the background coloured by sentence type
  (like Figure 5 of the DASD paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import TYPE_COLOURS, figures_dir, save, stand_in_note

TYPE_LABELS = {"teacher": "phrase professeur", "shared": "phrase partagée", "student": "phrase élève",
               "boosted": "phrase renforcée", "other": "autre"}
PROVENANCE_COLOURS = {**TYPE_COLOURS, "boosted": "#e7298a", "other": "#999999"}
STAGE_TITLES = {
    1: "Stage 1 (température basse)",
    2: "Stage 2 (température haute)",
}
KEPT_COLOUR = "#1b9e77"
REJECTED_COLOUR = "#bbbbbb"


def _note(fig, profile: str) -> None:
    """Write the demo's stand-in caption under everything already drawn (rotated tick labels included)."""
    note = stand_in_note(profile)
    if not note:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bottom = min(ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()).y0 for ax in fig.axes)
    fig.text(0.5, bottom - 0.02, note, ha="center", va="top", fontsize=8, style="italic", color="#444444")


def _fr(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}".replace(".", ",")


def plot_ratio_histogram(
    records: Sequence[Mapping[str, Any]], stage: int, threshold: float, path: str | Path, profile: str = "",
    filter_applied: bool = True,
) -> Path:
    """Return ``path`` after drawing the teacher-sentence-ratio histogram, kept vs rejected, with the threshold.

    ``filter_applied`` False (stage 1 without ``das.filter_stage1``) says in the title that the
    SFT data of that stage is every quality-kept response, whatever its ratio.
    """
    import matplotlib.pyplot as plt

    scored = [r for r in records if r.get("scorable")]
    kept = [r["teacher_sentence_ratio"] for r in scored if r["keep"]]
    rejected = [r["teacher_sentence_ratio"] for r in scored if not r["keep"]]
    n_unscorable = sum(1 for r in records if not r.get("scorable"))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bins = np.linspace(0.0, 1.0, 21)
    if filter_applied:
        low_label, high_label = f"rejetés ({len(rejected)})", f"gardés ({len(kept)})"
    else:
        low_label, high_label = f"au seuil ou en dessous ({len(rejected)})", f"au-dessus du seuil ({len(kept)})"
    if scored:
        ax.hist([rejected, kept], bins=bins, stacked=True, color=[REJECTED_COLOUR, KEPT_COLOUR],
                edgecolor="white", label=[low_label, high_label])
    else:
        ax.text(0.5, 0.5, "aucune réponse notée", transform=ax.transAxes, ha="center", va="center")
    ax.axvline(threshold, color="#d95f02", linestyle="--", linewidth=1.5,
               label=f"seuil de DAS ({_fr(threshold)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Taux de phrases professeur dans la réponse (teacher_sentence_ratio)")
    ax.set_ylabel("Nombre d'exemples")
    verb = "gardées" if filter_applied else "au-dessus du seuil"
    title = f"DAS, {STAGE_TITLES.get(stage, f'stage {stage}')} : {len(kept)} {verb} sur {len(scored)} notées"
    if n_unscorable:
        title += f"\n({n_unscorable} non notables, exclues)" if filter_applied else f"\n({n_unscorable} non notables)"
    if not filter_applied:
        title += "\nfiltre non appliqué à ce stage : le SFT utilise toutes les réponses gardées par le filtre de qualité"
    ax.set_title(title, fontsize=10 if not filter_applied else None)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper right")
    _note(fig, profile)
    return save(fig, path)


def _teacher_region(ax, p_threshold: float, divergence: float) -> None:
    """Shade the region P_T > p_threshold and P_S < P_T - divergence (P_T on x, P_S on y)."""
    x0 = p_threshold
    poly = [(x0, 0.0), (1.0, 0.0), (1.0, 1.0 - divergence), (x0, max(x0 - divergence, 0.0))]
    ax.add_patch(plt_polygon(poly, TYPE_COLOURS["teacher"]))
    ax.text(0.98, 0.03, "région « professeur »", ha="right", va="bottom", fontsize=8, color=TYPE_COLOURS["teacher"])
    # The mirror rule (P_S > p_threshold and P_S - P_T > divergence): the « élève » sentences.
    ax.add_patch(plt_polygon([(y, x) for x, y in poly], TYPE_COLOURS["student"]))
    ax.text(0.03, 0.98, "région « élève »", ha="left", va="top", fontsize=8, color=TYPE_COLOURS["student"])


def plt_polygon(points, colour):
    from matplotlib.patches import Polygon

    return Polygon(points, closed=True, facecolor=colour, alpha=0.12, edgecolor=colour, linewidth=1)


def plot_scatter(
    records_by_stage: Mapping[int, Sequence[Mapping[str, Any]]],
    path: str | Path,
    p_threshold: float = 0.6,
    divergence: float = 0.2,
    profile: str = "",
    max_points: int = 20000,
) -> Path:
    """Return ``path`` after drawing P_T against P_S for every sentence, one panel per stage."""
    import matplotlib.pyplot as plt

    stages = sorted(records_by_stage)
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 5), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, stage in zip(axes[0], stages):
        sentences = [s for r in records_by_stage[stage] if r.get("scorable") for s in r["sentences"]]
        if len(sentences) > max_points:  # keep the figure readable and light; the sample is seeded
            sentences = [sentences[i] for i in sorted(rng.choice(len(sentences), max_points, replace=False))]
        _teacher_region(ax, p_threshold, divergence)
        ax.plot([0, 1], [0, 1], color="#888888", linewidth=0.8, linestyle=":")
        for kind in ("shared", "student", "teacher"):
            pts = [(s["p_teacher"], s["p_student"]) for s in sentences if s["type"] == kind]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=10, alpha=0.6, color=TYPE_COLOURS[kind], label=f"{TYPE_LABELS[kind]} ({len(pts)})")
        if not sentences:
            ax.text(0.5, 0.5, "aucune phrase évaluée", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("P_T : probabilité de la phrase pour le professeur")
        ax.set_ylabel("P_S : probabilité de la phrase pour l'élève")
        ax.set_title(STAGE_TITLES.get(stage, f"Stage {stage}"))
        ax.grid(alpha=0.3)
        if sentences:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    fig.suptitle(
        f"Probabilités par phrase : professeur contre élève (orange : P_T > {_fr(p_threshold, 1)} et "
        f"P_T − P_S > {_fr(divergence, 1)} ; vert : l'inverse ; ailleurs : phrases partagées)",
        fontsize=11,
    )
    _note(fig, profile)
    return save(fig, path)


def pick_profile_example(records: Sequence[Mapping[str, Any]], max_sentences: int = 24) -> Mapping[str, Any] | None:
    """Return a scored record that shows the sentence types well (most distinct types, then most sentences)."""
    candidates = [r for r in records if r.get("scorable") and 3 <= len(r["sentences"]) <= max_sentences]
    if not candidates:
        candidates = [r for r in records if r.get("scorable")]
    if not candidates:
        return None

    def score(r):
        types = {s["type"] for s in r["sentences"]}
        return (len(types), bool(r["keep"]), min(len(r["sentences"]), max_sentences))

    return max(candidates, key=score)


def plot_profile(record: Mapping[str, Any] | None, path: str | Path, profile: str = "", p_threshold: float = 0.6) -> Path:
    """Return ``path`` after drawing one response's per-sentence P_T and P_S, background coloured by type."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(10, 4.6))
    if record is None or not record.get("sentences"):
        ax.text(0.5, 0.5, "aucun exemple évalué", transform=ax.transAxes, ha="center", va="center")
        ax.set_axis_off()
        _note(fig, profile)
        return save(fig, path)
    sentences = record["sentences"]
    x = np.arange(1, len(sentences) + 1)
    use_provenance = all("provenance" in s for s in sentences)
    key = "provenance" if use_provenance else "type"
    colours = PROVENANCE_COLOURS if use_provenance else TYPE_COLOURS
    for xi, s in zip(x, sentences):
        ax.axvspan(xi - 0.5, xi + 0.5, color=colours[s[key]], alpha=0.18, linewidth=0)
    ax.plot(x, [s["p_teacher"] for s in sentences], marker="o", color="#333333", label="P_T (professeur)")
    ax.plot(x, [s["p_student"] for s in sentences], marker="s", color="#377eb8", label="P_S (élève)")
    if all("p_distilled" in s for s in sentences):
        ax.plot(x, [s["p_distilled"] for s in sentences], marker="^", color="#e41a1c", label="P_D (élève distillé)")
    ax.axhline(p_threshold, color="#888888", linestyle=":", linewidth=1)
    ax.set_xlim(0.5, len(sentences) + 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(x)
    labels = [s["text"] if len(s["text"]) <= 28 else s["text"][:26] + "…" for s in sentences]
    ax.set_xticklabels([f"{i}. {t}" for i, t in zip(x, labels)], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Probabilité de la phrase (moyenne géométrique)")
    ratio = record.get("teacher_sentence_ratio")
    verdict = "gardée" if record.get("keep") else "rejetée"
    ax.set_title(
        f"Profil phrase par phrase d'une réponse (stage {record.get('stage')}, question {record.get('question_id', '')[:8]}) : "
        f"taux de phrases professeur {_fr(ratio or 0.0)}, {verdict}",
        fontsize=10,
    )
    present = [k for k in colours if any(s[key] == k for s in sentences)]
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(facecolor=colours[k], alpha=0.3, label=TYPE_LABELS[k]) for k in present]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3, axis="y")
    _note(fig, profile)
    return save(fig, path)


def all_figures(records_by_stage: Mapping[int, Sequence[Mapping[str, Any]]], cfg) -> list[Path]:
    """Return the paths of the four DAS figures written for a run (see the module docstring)."""
    out_dir = figures_dir(cfg.run_dir)
    d = cfg.das
    paths = []
    for stage in sorted(records_by_stage):
        paths.append(plot_ratio_histogram(records_by_stage[stage], stage, d.keep_ratio_threshold,
                                          out_dir / f"das_stage{stage}.png", cfg.profile,
                                          filter_applied=stage != 1 or d.filter_stage1))
    paths.append(plot_scatter(records_by_stage, out_dir / "das_scatter.png", d.teacher_prob_threshold,
                              d.divergence_threshold, cfg.profile))
    example = pick_profile_example(records_by_stage.get(2, [])) or pick_profile_example(records_by_stage.get(1, []))
    paths.append(plot_profile(example, out_dir / "das_profile.png", cfg.profile, d.teacher_prob_threshold))
    return paths


__all__ = [
    "all_figures",
    "pick_profile_example",
    "plot_profile",
    "plot_ratio_histogram",
    "plot_scatter",
]
