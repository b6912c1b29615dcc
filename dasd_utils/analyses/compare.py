"""Paired comparison of the stage-2 variants, the verdict sentence and the comparison figure.

Every variant is evaluated on the same items; the DAS variant is compared with each other one
by McNemar's exact test on the items where exactly one of the two is right, and the p-values
are Holm-adjusted across those comparisons (:mod:`dasd_utils.stats`). The verdict sentence is
chosen from these numbers, never written in advance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..stats import holm_adjust, mcnemar_exact, paired_counts, wilson_interval

SIGNIFICANCE = 0.05
REFERENCE = "das"
#: The control of mixed-policy distillation: as many more epochs from the stage-2 adapter, on the off-policy examples alone.
CONTROL = "control_extra_epoch"

#: Display names (French) of the variants.
LABELS = {"das": "DAS (gardés)", "full": "pool entier", "mixed": "politique mixte",
          "mixed_masked": "politique mixte (préfixe masqué)",
          CONTROL: "témoin : une époque de plus sur DAS seul"}


def label(name: str) -> str:
    if name.startswith("random"):
        return f"aléatoire (graine {name.removeprefix('random_s')})" if "_s" in name else "aléatoire"
    return LABELS.get(name, name)


def _correct_by_item(predictions: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    return {p["question_id"]: bool(p["correct"]) for p in predictions}


def accuracy_row(name: str, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return one variant's accuracy with its Wilson 95% interval."""
    n = len(predictions)
    correct = sum(1 for p in predictions if p["correct"])
    return {"name": name, "label": label(name), "n": n, "correct": correct,
            "accuracy": correct / n if n else None, "ci95": list(wilson_interval(correct, n))}


def paired_comparison(a: str, predictions_a: Sequence[Mapping[str, Any]], b: str,
                      predictions_b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the 2x2 table of ``a`` and ``b`` on the same items, ``difference`` (a minus b) and McNemar's exact p."""
    first, other = _correct_by_item(predictions_a), _correct_by_item(predictions_b)
    if set(other) != set(first):
        raise ValueError(f"{a} and {b} were not evaluated on the same items: paired test impossible")
    ids = sorted(first)
    table = paired_counts([first[q] for q in ids], [other[q] for q in ids])
    n = len(ids)
    return {
        "a": a, "b": b, "label_b": label(b), "n": n, **table,
        # Positive: a better than b.
        "difference": (table["only_a_correct"] - table["only_b_correct"]) / n if n else None,
        "mcnemar_p": mcnemar_exact(table["only_a_correct"], table["only_b_correct"]),
    }


def comparison_table(predictions: Mapping[str, Sequence[Mapping[str, Any]]], reference: str = REFERENCE,
                     significance: float = SIGNIFICANCE) -> dict[str, Any]:
    """Return ``{"models": [...], "comparisons": [...]}``: accuracies and reference-vs-other paired tests (Holm)."""
    if reference not in predictions:
        raise ValueError(f"no predictions for the reference variant {reference!r}")
    comparisons = [paired_comparison(reference, predictions[reference], name, preds)
                   for name, preds in predictions.items() if name != reference]
    for c, p in zip(comparisons, holm_adjust([c["mcnemar_p"] for c in comparisons])):
        c["mcnemar_p_holm"] = p
        c["significant"] = p < significance
    return {"models": [accuracy_row(n, p) for n, p in predictions.items()], "comparisons": comparisons,
            "significance": significance}


def _fr(value: float, spec: str = ".3g") -> str:
    """Return ``value`` formatted with ``spec`` and a decimal comma (French text)."""
    return format(value, spec).replace(".", ",")


def verdict(table: Mapping[str, Any], profile: str = "") -> str:
    """Return the French verdict sentence for DAS vs random sampling, chosen from the tests' results."""
    randoms = [c for c in table.get("comparisons", []) if str(c["b"]).startswith("random")]
    if not randoms:
        return "Aucun sous-ensemble aléatoire n'a été évalué : la question reste ouverte."
    level = _fr(table.get("significance", SIGNIFICANCE))
    better = [c for c in randoms if c["significant"] and c["difference"] > 0]
    worse = [c for c in randoms if c["significant"] and c["difference"] < 0]
    mean_diff = sum(c["difference"] for c in randoms) / len(randoms)
    p_min = _fr(min(c["mcnemar_p_holm"] for c in randoms))
    points = f"{_fr(abs(mean_diff) * 100, '.1f')} points"
    if better and not worse:
        text = (f"Oui, sur ces items : le filtrage DAS fait significativement mieux qu'un tirage aléatoire de même taille "
                f"(écart moyen {points}, p de Holm minimal {p_min} < {level}).")
    elif worse and not better:
        text = (f"Non, sur ces items : un tirage aléatoire de même taille fait significativement mieux que le filtrage DAS "
                f"(écart moyen {points}, p de Holm minimal {p_min} < {level}).")
    elif better and worse:
        text = "Résultat contradictoire : selon la graine, le tirage aléatoire fait significativement mieux ou moins bien que DAS."
    else:
        direction = "en faveur de DAS" if mean_diff > 0 else "en faveur du tirage aléatoire" if mean_diff < 0 else "nul"
        text = (f"On ne peut pas conclure : l'écart ({points}, {direction}) n'est pas significatif "
                f"(p de Holm minimal {p_min} ≥ {level}) ; avec {randoms[0]['n']} items, seul un écart bien plus "
                "grand serait détectable.")
    if profile == "demo":
        text = ("Profil demo : de petits modèles de substitution (élève et professeur) ne peuvent pas "
                "trancher la question. " + text)
    return text


def mixed_verdict(table: Mapping[str, Any], profile: str = "") -> str | None:
    """Return the French sentence on mixed-policy distillation vs DAS alone, chosen from the tests; None without it."""
    mixed = [c for c in table.get("comparisons", []) if str(c["b"]).startswith("mixed")]
    if not mixed:
        return None
    level = _fr(table.get("significance", SIGNIFICANCE))
    parts = []
    for c in mixed:
        # c["difference"] > 0: DAS alone better than the mixed variant.
        points = f"{_fr(abs(c['difference']) * 100, '.1f')} points"
        p = _fr(c["mcnemar_p_holm"])
        name = label(c["b"])
        if c["significant"]:
            side = "mieux" if c["difference"] < 0 else "moins bien"
            parts.append(f"la variante « {name} » fait significativement {side} que DAS seul ({points}, p de Holm {p} < {level})")
        else:
            direction = "en sa faveur" if c["difference"] < 0 else "en faveur de DAS seul" if c["difference"] > 0 else "nul"
            parts.append(f"pour la variante « {name} », l'écart ({points}, {direction}) n'est pas significatif "
                         f"(p de Holm {p} ≥ {level})")
    text = "Politique mixte : " + " ; ".join(parts) + "."
    control = table.get("mixed_vs_control")
    if control:
        points = f"{_fr(abs(control['difference']) * 100, '.1f')} points"
        side = ("en faveur de la politique mixte" if control["difference"] > 0 else "en faveur du témoin"
                if control["difference"] < 0 else "nul")
        outcome = ("est significatif" if control["mcnemar_p"] < table.get("significance", SIGNIFICANCE)
                   else "n'est pas significatif")
        text += (f" Contre le témoin entraîné autant sur les seules données hors politique, l'écart ({points}, {side}) "
                 f"{outcome} (p de McNemar {_fr(control['mcnemar_p'])}, comparaison prévue unique).")
    else:
        text += (" Elle a eu une époque d'entraînement de plus que DAS seul : un gain éventuel ne lui est donc pas "
                 "attribuable sans le témoin entraîné autant sur les seules données hors politique "
                 "(analyses.mixed_control).")
    if profile == "demo":
        text = "Profil demo : de petits modèles de substitution ne peuvent pas trancher. " + text
    return text


def plot_comparison(table: Mapping[str, Any], path: str | Path, profile: str = "") -> Path:
    """Write the accuracies with their Wilson 95% intervals (one row per variant) and return the path."""
    from ..plots import plt, save, stand_in_note

    models = table["models"]
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.55 * len(models)))
    for i, m in enumerate(models):
        low, high = m["ci95"]
        colour = "#e41a1c" if m["name"] == REFERENCE else "#377eb8" if m["name"].startswith("random") else "#4daf4a"
        ax.errorbar(m["accuracy"], i, xerr=[[m["accuracy"] - low], [high - m["accuracy"]]], fmt="o",
                    color=colour, capsize=4)
        ax.text(high + 0.01, i, f"{m['accuracy'] * 100:.0f} % ({m['correct']}/{m['n']})", va="center", fontsize=8)
    ax.set_yticks(range(len(models)), [m["label"] for m in models])
    ax.set_xlim(0, 1.15)
    ax.set_ylim(len(models) - 0.5, -0.5)
    ax.set_xlabel("exactitude (génération), IC de Wilson à 95 %" + (f"\n({stand_in_note(profile)})" if stand_in_note(profile) else ""))
    mixed = any(m["name"].startswith("mixed") for m in models)
    ax.set_title("Stage 2 : DAS, tirage aléatoire à budget égal" + (" et politique mixte" if mixed else ""))
    return save(fig, path)


__all__ = ["CONTROL", "LABELS", "REFERENCE", "SIGNIFICANCE", "accuracy_row", "comparison_table", "label", "mixed_verdict",
           "paired_comparison", "plot_comparison", "verdict"]
