"""Tables for notebook 08: the comparison, the training sets' statistics, provenance, and the extra cost.

The cost table estimates what each analysis adds from *this run's own* measured times (the
stage-2 training in ``sft/stage2/manifest.json`` and the evaluation phase in ``timings.json``),
so on a Colab GPU it gives that GPU's figures, and on the demo the CPU's.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import layout
from ..jsonl import read_json
from . import sampling


def results_table(results: Mapping[str, Any]):
    """Return one row per variant: accuracy, Wilson interval, discordant counts and McNemar's p against DAS (descriptive)."""
    import pandas as pd

    comparisons = {c["b"]: c for c in results.get("comparisons", [])}
    rows = []
    for m in results["models"]:
        c = comparisons.get(m["name"], {})
        rows.append({
            "variante": m["label"], "exactitude": round(m["accuracy"], 3), "bonnes": f"{m['correct']}/{m['n']}",
            "IC95 bas": round(m["ci95"][0], 3), "IC95 haut": round(m["ci95"][1], 3),
            "DAS seul juste": c.get("only_a_correct"), "variante seule juste": c.get("only_b_correct"),
            "p McNemar (descriptif)": c.get("mcnemar_p"),
        })
    return pd.DataFrame(rows).set_index("variante")


#: French names of the planned tests (:func:`dasd_utils.analyses.compare.comparison_table`'s ``families``).
FAMILY_LABELS = {"das_vs_random": "DAS contre les tirages aléatoires réunis (la question)",
                 "mixed_vs_control": "politique mixte contre son témoin"}


def tests_table(results: Mapping[str, Any]):
    """Return one row per planned test (its own family, no correction needed): what is compared, the gap, p, the verdict."""
    import pandas as pd

    rows = []
    for key, test in (results.get("families") or {}).items():
        other = test["b"] if isinstance(test["b"], str) else f"{len(test['b'])} tirage(s) aléatoire(s), moyenne"
        rows.append({
            "test prévu": FAMILY_LABELS.get(key, key),
            "comparaison": f"{test['a']} contre {other}",
            "méthode": "McNemar exact" if test["test"] == "mcnemar_exact" else "exact apparié (contraste, graines réunies)",
            "items": test["n"], "écart (points)": round(100 * test["difference"], 1), "p": test["p"],
            "significatif (5 %)": test["significant"],
        })
    if not rows:
        return None
    return pd.DataFrame(rows).set_index("test prévu")


def statistics_table(results: Mapping[str, Any]):
    """Return the sentence statistics of each training set side by side (counts as integers, the rest to 3 decimals)."""
    import pandas as pd

    rows = {v["label"]: {k: (round(x, 3) if isinstance(x, float) else x) for k, x in v["training_set"].items()}
            for v in results["variants"]}
    # One column per training set mixes counts and means: object Series (DataFrame(dict, dtype=object)
    # still casts them to float) keep n = 6 from showing as 6.000.
    return pd.DataFrame({label: pd.Series(stats, dtype=object) for label, stats in rows.items()})


def training_table(results: Mapping[str, Any]):
    """Return, per variant, whether its training learned: optimizer steps, steps at a non-zero learning rate, adapter change.

    The change is the L2 norm of the difference between the adapter's weights after and before the
    training (its parent: the stage-1 adapter, or the stage-2 one for the mixed-policy variants),
    relative to the parent's norm. A variant equal to its parent is said so in the last row.
    """
    import pandas as pd

    columns = {}
    for v in results["variants"]:
        change = v.get("adapter_change") or {}
        relative = change.get("relative")
        columns[v["label"]] = pd.Series({
            "pas d'optimisation": v.get("steps"),
            "pas à taux d'apprentissage non nul": v.get("learning_steps"),
            "déplacement de l'adaptateur (relatif)": None if relative is None else f"{relative:.2e}".replace(".", ","),
            "identique à son parent": None if not change else ("oui" if change.get("l2") == 0 else "non"),
        }, dtype=object)
    return pd.DataFrame(columns).fillna("—")


def provenance_table(results: Mapping[str, Any]):
    """Return, per provenance label, its sentences, share and area differences Δ (correct minus incorrect answers):
    by relative position and by rank, each with and without the final-answer sentence (None when not made)."""
    import pandas as pd

    prov = results.get("provenance") or {}
    if not prov.get("available"):
        return None
    columns = {"phrases": prov["counts"], "part": prov["shares"], "Δ (positions relatives)": prov["delta"]}
    # The same Δ without the final-answer line, and by absolute rank (the paper's sentence index); absent
    # from results stored by an older version.
    for key, name in (("delta_without_final", "Δ sans la phrase finale"), ("delta_by_index", "Δ par rang"),
                      ("delta_by_index_without_final", "Δ par rang, sans la phrase finale")):
        if key in prov:
            columns[name] = prov[key]
    return pd.DataFrame(columns)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def cost_estimate(cfg) -> list[dict[str, Any]]:
    """Return the estimated extra seconds of each analysis, scaled from this run's stage-2 training and evaluation."""
    manifest = read_json(layout.sft_manifest(cfg.run_dir, 2)) or {}
    timings = (read_json(layout.timings_file(cfg.run_dir)) or {}).get("phases", {})
    train_s = _number(manifest.get("wall_time_s"))
    n_kept = _number((manifest.get("dataset") or {}).get("n_examples"))
    eval_s = _number(((timings.get("evaluate") or {}).get("computed") or {}).get("wall_s"))
    per_model = eval_s / max(1, len(cfg.eval.models)) if eval_s is not None else None
    try:
        n_pool = len(sampling.pool_records(cfg.run_dir))
    except FileNotFoundError:
        n_pool = None

    def total(*parts):
        return round(sum(parts)) if all(p is not None for p in parts) else None

    rows = [{"analyse": "(a) DAS : le stage 2 du run", "entraînements": 0, "évaluations": 0, "secondes (estimation)": 0}]
    for seed in cfg.analyses.random_seeds:
        rows.append({"analyse": f"(b) tirage aléatoire, graine {seed}", "entraînements": 1, "évaluations": 1,
                     "secondes (estimation)": total(train_s, per_model)})
    if cfg.analyses.full_pool:
        scale = n_pool / n_kept if n_pool and n_kept else None
        rows.append({"analyse": "(c) pool entier", "entraînements": 1, "évaluations": 1,
                     "secondes (estimation)": total(train_s * scale if train_s and scale else None, per_model)})
    if cfg.analyses.mixed_policy:
        n_eval = _number(len(_eval_items(cfg)))
        regenerate = per_model * n_pool / n_eval if per_model and n_pool and n_eval else None
        epochs = cfg.analyses.mixed_epochs / cfg.sft.epochs if cfg.sft.epochs else None
        for masked in (False, True) if cfg.analyses.mixed_masked else (False,):  # the control costs the same
            rows.append({"analyse": "politique mixte" + (" (préfixe masqué)" if masked else "")
                         + ("" if masked else " : l'élève répond, le professeur continue, 1 entraînement"),
                         "entraînements": 1, "évaluations": 1,
                         "secondes (estimation)": total(train_s * epochs if train_s and epochs else None, per_model,
                                                        0 if masked else regenerate)})
        if cfg.analyses.mixed_control:
            rows.append({"analyse": "témoin de la politique mixte (la même époque, hors politique seul)",
                         "entraînements": 1, "évaluations": 1,
                         "secondes (estimation)": total(train_s * epochs if train_s and epochs else None, per_model)})
    if cfg.analyses.provenance:
        rows.append({"analyse": "provenance (3 passes de notation, sans génération)", "entraînements": 0,
                     "évaluations": 0, "secondes (estimation)": round(per_model / 4) if per_model else None})
    return rows


def _eval_items(cfg) -> list:
    """Return the run's evaluation questions (empty before the data phase)."""
    from ..data import load_run_questions

    try:
        return load_run_questions(cfg, "eval")
    except FileNotFoundError:
        return []


_MIXED_LABELS = {
    "questions": "questions du pool (réponse du professeur à T = 0,9 retenue)",
    "complete_and_correct": "réponses de l'élève complètes et justes",
    "cut_off": "réponses coupées par la limite de longueur",
    "wrong_or_no_answer": "réponses fausses ou sans réponse",
    "no_cut_point": "divergentes sans point de coupe",
    "continued": "continuées par le professeur",
    "not_continuing": "dont pas une suite (refus, nouveau tour, texte répété...)",
    "new_turn": "dont nouveau tour (jamais entraîné)",
    "used": "retenues par le filtre de qualité",
    "teacher_correct": "dont bonne réponse finale",
    "off_policy": "exemples hors politique (conservés par DAS)",
    "training_examples": "exemples de l'entraînement supplémentaire",
}


def mixed_policy_table(results: Mapping[str, Any]):
    """Return the mixed-policy counts, step by step (None when the analysis was not made)."""
    import pandas as pd

    mp = results.get("mixed_policy") or {}
    if not mp.get("available"):
        return None
    rows = {label: mp.get(key) for key, label in _MIXED_LABELS.items()}
    for reason, n in (mp.get("quality_rejected") or {}).items():
        rows[f"rejetées par le filtre : {reason}"] = n
    paper = mp.get("paper_subset") or {}
    if paper:  # divergence by truncation only, as in the paper: counted on its own
        rows["fidèle au papier (coupées par la limite seulement) : divergentes"] = paper.get("diverging")
        rows["fidèle au papier : continuées"] = paper.get("continued")
        rows["fidèle au papier : retenues"] = paper.get("used")
    if mp.get("student_share_chars") is not None:
        rows["part de l'élève dans les réponses retenues (caractères)"] = f"{mp['student_share_chars']:.0%}"
    return pd.DataFrame({"nombre": rows})


def mixed_example(cfg) -> dict[str, Any] | None:
    """Return one continued item of this run (a kept one first): the student's prefix, the teacher's continuation, the checks."""
    from ..data import read_jsonl

    path = layout.mixed_items(cfg.run_dir)
    items = [i for i in (read_jsonl(path) if path.is_file() else []) if i.get("joined") is not None]
    if not items:
        return None
    item = next((i for i in items if i.get("used")), items[0])
    return {
        "question_id": item["question_id"], "divergence": item["divergence"],
        "student_tokens": f"{item['student_tokens']} / {item['cap_tokens']} (limite)",
        "student_text": item["student_text"], "prefix": item["prefix"], "continuation": item["continuation"],
        "joined_exactly": item["joined"] == item["prefix"] + item["continuation"],
        "quality": item["quality"], "used": bool(item.get("used")),
    }


def show_mixed_example(cfg) -> None:
    """Print :func:`mixed_example`: the student's answer, the cut (⟦student⟧ then the teacher), the verdict."""
    example = mixed_example(cfg)
    if example is None:
        print("Aucune réponse continuée par le professeur dans ce run.")
        return
    print(f"question {example['question_id']} : réponse de l'élève divergente ({example['divergence']}), "
          f"{example['student_tokens']} jetons")
    print("\n--- réponse de l'élève distillé ---\n" + example["student_text"])
    print("\n--- exemple d'entraînement : ⟦part de l'élève⟧ puis la suite du professeur ---\n"
          f"⟦{example['prefix']}⟧{example['continuation']}")
    print(f"\npréfixe + suite == exemple d'entraînement : {example['joined_exactly']}")
    quality = example["quality"]
    print(f"filtre de qualité : {'retenu' if quality['ok'] else 'rejeté (' + str(quality['reason']) + ')'}, "
          f"réponse finale {quality.get('answer')}")


def cost_table(cfg):
    """Return :func:`cost_estimate` as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(cost_estimate(cfg)).set_index("analyse")


__all__ = ["FAMILY_LABELS", "tests_table", "cost_estimate", "cost_table", "mixed_example", "mixed_policy_table", "provenance_table", "results_table", "training_table",
           "show_mixed_example", "statistics_table"]
