"""Paired comparison of the stage-2 variants, the verdict sentences and the comparison figure.

Every variant is evaluated on the same items. The questions are kept apart, each with its own
statistical family, so that one verdict never depends on how many other variants happened to run:

* **DAS vs random sampling** (the analyses' question; paper, Table 3): one planned test, DAS
  against the random subsets *pooled over their seeds* (:func:`dasd_utils.stats.exact_contrast_test`:
  the accuracy gap between DAS and the seeds' mean, exact, McNemar's test when there is one seed).
  No correction: it is the only test of its family. A single seed that happens to do worse never
  decides it.
* **Mixed policy vs its control** (the same extra epoch without the mixed-policy answers): one
  planned McNemar test, in its own family.
* Everything else is **descriptive**: DAS against each seed, the whole pool, the mixed variants;
  their McNemar p-values are shown unadjusted and labelled as such, and no verdict reads them.

The verdict sentences are chosen from these numbers, never written in advance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..stats import exact_contrast_test, mcnemar_exact, paired_counts, wilson_interval

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


def das_vs_random(predictions: Mapping[str, Sequence[Mapping[str, Any]]], reference: str = REFERENCE,
                  significance: float = SIGNIFICANCE) -> dict[str, Any] | None:
    """Return the planned test of DAS against the random subsets pooled over their seeds (None without a random subset)."""
    seeds = sorted(name for name in predictions if name.startswith("random"))
    if not seeds:
        return None
    ref = _correct_by_item(predictions[reference])
    others = [_correct_by_item(predictions[name]) for name in seeds]
    if any(set(o) != set(ref) for o in others):
        raise ValueError("DAS and the random subsets were not evaluated on the same items: paired test impossible")
    ids = sorted(ref)
    test = exact_contrast_test([ref[q] for q in ids], [[o[q] for q in ids] for o in others])
    return {
        "family": "das_vs_random", "planned": True, "a": reference, "b": seeds,
        "test": "exact_contrast" if len(seeds) > 1 else "mcnemar_exact",
        "n": test["n"], "seeds": len(seeds), "informative": test["informative"],
        # Positive: DAS better than the seeds' mean accuracy.
        "difference": test["difference"], "p": test["p"], "significant": test["p"] < significance,
    }


def comparison_table(predictions: Mapping[str, Sequence[Mapping[str, Any]]], reference: str = REFERENCE,
                     significance: float = SIGNIFICANCE) -> dict[str, Any]:
    """Return accuracies, the descriptive reference-vs-other comparisons and the planned tests (``families``).

    ``comparisons``: DAS against every other variant, McNemar's p unadjusted (``role``
    ``descriptive``). ``families``: ``das_vs_random`` (:func:`das_vs_random`) and, when both were
    trained, ``mixed_vs_control`` (mixed policy against its control), each a single planned test.
    """
    if reference not in predictions:
        raise ValueError(f"no predictions for the reference variant {reference!r}")
    comparisons = [dict(paired_comparison(reference, predictions[reference], name, preds), role="descriptive")
                   for name, preds in predictions.items() if name != reference]
    families: dict[str, Any] = {}
    pooled = das_vs_random(predictions, reference, significance)
    if pooled is not None:
        families["das_vs_random"] = pooled
    if "mixed" in predictions and CONTROL in predictions:
        # The extra epoch with the mixed-policy answers against the same epoch without them.
        control = paired_comparison("mixed", predictions["mixed"], CONTROL, predictions[CONTROL])
        families["mixed_vs_control"] = dict(control, family="mixed_vs_control", planned=True, test="mcnemar_exact",
                                            p=control["mcnemar_p"], significant=control["mcnemar_p"] < significance)
    return {"models": [accuracy_row(n, p) for n, p in predictions.items()], "comparisons": comparisons,
            "families": families, "significance": significance}


def _fr(value: float, spec: str = ".3g") -> str:
    """Return ``value`` formatted with ``spec`` and a decimal comma (French text)."""
    return format(value, spec).replace(".", ",")


def _points(difference: float) -> str:
    return f"{_fr(abs(difference) * 100, '.1f')} points"


def verdict(table: Mapping[str, Any], profile: str = "") -> str:
    """Return the French verdict sentence for DAS vs random sampling, chosen from the planned test's result."""
    families = table.get("families")
    if families is None and table.get("comparisons"):
        return ("Résultats d'une version antérieure du projet (un test par graine, corrigé de Holm) : relancez la phase "
                "analyses pour le test prévu unique, DAS contre les tirages aléatoires réunis.")
    test = (families or {}).get("das_vs_random")
    if not test:
        return "Aucun sous-ensemble aléatoire n'a été évalué : la question reste ouverte."
    level = _fr(table.get("significance", SIGNIFICANCE))
    draws = f"{test['seeds']} tirage{'s' if test['seeds'] > 1 else ''} aléatoire{'s' if test['seeds'] > 1 else ''}"
    how = (f"test exact apparié, DAS contre la moyenne des {draws}" if test["seeds"] > 1
           else "test exact de McNemar")
    p = _fr(test["p"])
    if test["significant"] and test["difference"] > 0:
        text = (f"Oui, sur ces items : le filtrage DAS fait significativement mieux qu'un tirage aléatoire de même taille "
                f"(écart {_points(test['difference'])} contre {draws}, {how}, p = {p} < {level}).")
    elif test["significant"] and test["difference"] < 0:
        text = (f"Non, sur ces items : un tirage aléatoire de même taille fait significativement mieux que le filtrage DAS "
                f"(écart {_points(test['difference'])} contre {draws}, {how}, p = {p} < {level}).")
    else:
        direction = ("en faveur de DAS" if test["difference"] > 0 else "en faveur du tirage aléatoire"
                     if test["difference"] < 0 else "nul")
        text = (f"On ne peut pas conclure : l'écart ({_points(test['difference'])}, {direction}, contre {draws}) n'est "
                f"pas significatif ({how}, p = {p} ≥ {level}) ; avec {test['n']} items, seul un écart bien plus "
                "grand serait détectable.")
    if test["seeds"] > 1:
        text += " Les comparaisons graine par graine du tableau sont descriptives."
    if profile == "demo":
        text = ("Profil demo : de petits modèles de substitution (élève et professeur) ne peuvent pas "
                "trancher la question. " + text)
    return text


def mixed_verdict(table: Mapping[str, Any], profile: str = "") -> str | None:
    """Return the French sentence on mixed-policy distillation, from its planned test against the control; None without it.

    The comparisons with DAS alone are described, never tested: the mixed variants had one more
    epoch, so only the control (that epoch without the mixed-policy answers) isolates their effect.
    """
    mixed = [c for c in table.get("comparisons", []) if str(c["b"]).startswith("mixed")]
    if not mixed:
        return None
    level = _fr(table.get("significance", SIGNIFICANCE))
    control = (table.get("families") or {}).get("mixed_vs_control") or table.get("mixed_vs_control")
    parts = []
    if control:
        side = ("en faveur de la politique mixte" if control["difference"] > 0 else "en faveur du témoin"
                if control["difference"] < 0 else "nul")
        outcome = "est significatif" if control["mcnemar_p"] < table.get("significance", SIGNIFICANCE) else "n'est pas significatif"
        parts.append(f"Contre le témoin entraîné autant sur les seules données hors politique, l'écart "
                     f"({_points(control['difference'])}, {side}) {outcome} (p de McNemar {_fr(control['mcnemar_p'])}, "
                     f"seuil {level}, comparaison prévue unique).")
    else:
        parts.append("Sans le témoin entraîné autant sur les seules données hors politique (analyses.mixed_control), "
                     "aucun test ne porte sur la politique mixte : elle a eu une époque d'entraînement de plus que DAS seul, "
                     "et un écart éventuel ne lui est pas attribuable.")
    described = []
    for c in mixed:
        # c["difference"] > 0: DAS alone better than the mixed variant.
        direction = "en sa faveur" if c["difference"] < 0 else "en faveur de DAS seul" if c["difference"] > 0 else "nul"
        described.append(f"« {label(c['b'])} » {_points(c['difference'])} ({direction}, p de McNemar non corrigé "
                         f"{_fr(c['mcnemar_p'])})")
    parts.append("À titre descriptif, contre DAS seul : " + " ; ".join(described) + ".")
    text = "Politique mixte : " + " ".join(parts)
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


__all__ = ["CONTROL", "LABELS", "REFERENCE", "SIGNIFICANCE", "accuracy_row", "comparison_table", "das_vs_random", "label",
           "mixed_verdict",
           "paired_comparison", "plot_comparison", "verdict"]
