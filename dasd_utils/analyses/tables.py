"""Tables for notebook 08: the comparison, the training sets' statistics, provenance, and the extra cost.

The cost table estimates what each analysis adds from *this run's own* measured times (the
stage-2 training in ``sft/stage2/manifest.json`` and the evaluation phase in ``timings.json``),
so on a Colab GPU it gives that GPU's figures, and on the demo the CPU's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import layout
from ..config import replace
from ..frenchcells import french
from ..jsonl import read_json
from . import compare, sampling

#: French names of the provenance labels (DASD paper, section 4), as the report and notebook 08 show them.
PROVENANCE_FR = {"teacher": "professeur", "boosted": "renforcée", "shared": "partagée", "student": "élève",
                 "other": "autre"}
#: French names of the training-set statistics (:func:`sampling.set_statistics`).
STATISTICS_FR = {
    "n": "exemples",
    "n_scored": "exemples notés par DAS",
    "das_kept": "exemples que DAS garde",
    "teacher_sentence_ratio": "taux de phrases professeur",
    "teacher_sentence_ratio_without_final": "taux de phrases professeur sans la ligne finale",
    "mean_sentences": "phrases par exemple (moyenne)",
    "mean_chars": "caractères par exemple (moyenne)",
    "mean_words": "mots par exemple (moyenne)",
    "mixed_policy_examples": "exemples à politique mixte",
}
#: French names of the quality filter's reasons (:mod:`dasd_utils.quality`) and of a student answer's divergence.
REASONS_FR = {
    "empty": "vide", "too_short": "trop courte", "no_final_answer": "sans réponse finale", "wrong_answer": "réponse fausse",
    "repetitive": "répétitive", "too_long": "trop longue", "inconsistent_answer": "conclusion différente de la réponse finale",
    "mentions_hint": "cite l'indice", "cut_off": "coupée par la limite de longueur", "no_answer": "sans réponse",
}


def _table(rows: Mapping[str, Mapping[str, Any]], digits: int = 3):
    """Return a DataFrame of French-formatted cells, one row per key of ``rows`` (columns in first-seen order)."""
    import pandas as pd

    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    return pd.DataFrame({c: [french(row.get(c), digits) for row in rows.values()] for c in columns}, index=list(rows))

#: The paper's larger plan (Table 3: several random draws, and the whole pool): an explicit opt-in on one T4.
LARGER_PLAN_SEEDS = 3


def results_table(results: Mapping[str, Any]):
    """Return one row per variant: accuracy, Wilson interval, discordant counts and McNemar's p against DAS (descriptive; French cells)."""
    comparisons = {c["b"]: c for c in results.get("comparisons", [])}
    rows = {}
    for m in results["models"]:
        c = comparisons.get(m["name"], {})
        rows[compare.label(m["name"]) if "name" in m else m["label"]] = {  # this version's words, as the verdict
            "exactitude": m["accuracy"], "bonnes": f"{m['correct']}/{m['n']}",
            "IC 95 %": f"[{french(m['ci95'][0])} ; {french(m['ci95'][1])}]",
            "DAS seul juste": c.get("only_a_correct"), "variante seule juste": c.get("only_b_correct"),
            "p McNemar (descriptif)": c.get("mcnemar_p"),
        }
    table = _table(rows)
    table.index.name = "variante"
    return table


#: French names of the planned tests (:func:`dasd_utils.analyses.compare.comparison_table`'s ``families``).
FAMILY_LABELS = {"das_vs_random": "DAS contre les tirages aléatoires réunis (la question)",
                 "mixed_vs_control": "politique mixte contre son témoin"}


def tests_table(results: Mapping[str, Any]):
    """Return one row per planned test (its own family, no correction needed): what is compared, the gap, p, the verdict."""
    rows = {}
    for key, test in (results.get("families") or {}).items():
        other = test["b"] if isinstance(test["b"], str) else f"{len(test['b'])} tirage(s) aléatoire(s), moyenne"
        rows[FAMILY_LABELS.get(key, key)] = {
            "comparaison": f"{test['a']} contre {other}",
            "méthode": "McNemar exact" if test["test"] == "mcnemar_exact" else "exact apparié (contraste, graines réunies)",
            "items": test["n"], "écart (points)": round(100 * test["difference"], 1), "p": test["p"],
            "significatif (5 %)": test["significant"],
        }
    if not rows:
        return None
    table = _table(rows)
    table.index.name = "test prévu"
    return table


def statistics_table(results: Mapping[str, Any]):
    """Return the sentence statistics of each training set side by side, French row names and cells."""
    columns = {compare.label(v["name"]) if "name" in v else v["label"]: v["training_set"] for v in results["variants"]}
    keys = list(dict.fromkeys(k for stats in columns.values() for k in stats))
    rows = {STATISTICS_FR.get(k, k): {label: stats.get(k) for label, stats in columns.items()} for k in keys}
    return _table(rows)


def training_table(results: Mapping[str, Any]):
    """Return, per variant, whether its training learned: optimizer steps, steps at a non-zero learning rate, adapter change.

    The change is the L2 norm of the difference between the adapter's weights after and before the
    training (its parent: the stage-1 adapter, or the stage-2 one for the mixed-policy variants),
    relative to the parent's norm. A variant equal to its parent is said so in the last row.
    """
    rows: dict[str, dict[str, Any]] = {}
    for v in results["variants"]:
        label = compare.label(v["name"]) if "name" in v else v["label"]
        change = v.get("adapter_change") or {}
        relative = change.get("relative")
        for name, value in (("pas d'optimisation", v.get("steps")),
                            ("pas à taux d'apprentissage non nul", v.get("learning_steps")),
                            ("déplacement de l'adaptateur (relatif)",
                             None if relative is None else f"{relative:.2e}".replace(".", ",")),
                            ("identique à son parent", None if not change else change.get("l2") == 0)):
            rows.setdefault(name, {})[label] = value
    return _table(rows)


def provenance_table(results: Mapping[str, Any]):
    """Return, per provenance label (French names), its sentences, share and area differences Δ (correct minus
    incorrect answers): by relative position and by rank, each with and without the final-answer sentence (None when not made)."""
    prov = results.get("provenance") or {}
    if not prov.get("available"):
        return None
    columns = {"phrases": prov.get("counts") or {}, "part": prov.get("shares") or {},
               "Δ (positions relatives)": prov.get("delta") or {}}
    # The same Δ without the final-answer line, and by absolute rank (the article's sentence index); absent
    # from results stored by an older version.
    for key, name in (("delta_without_final", "Δ sans la phrase finale"), ("delta_by_index", "Δ par rang"),
                      ("delta_by_index_without_final", "Δ par rang, sans la phrase finale")):
        if key in prov:
            columns[name] = prov[key]
    labels = list(dict.fromkeys([*columns["phrases"], *columns["part"]]))
    table = _table({PROVENANCE_FR.get(t, t): {name: values.get(t) for name, values in columns.items()} for t in labels})
    table.index.name = "provenance"
    return table


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
    "questions": "questions du pool (réponse du professeur à T = 0,9 gardée)",
    "complete_and_correct": "réponses de l'élève complètes et justes",
    "cut_off": "réponses coupées par la limite de longueur",
    "wrong_or_no_answer": "réponses fausses ou sans réponse",
    "no_cut_point": "divergentes sans point de coupe",
    "continued": "continuées par le professeur",
    "not_continuing": "dont pas une suite (refus, nouveau tour, texte répété...)",
    "new_turn": "dont nouveau tour (jamais entraîné)",
    "used": "gardées par le filtre de qualité",
    "teacher_correct": "dont bonne réponse finale",
    "off_policy": "exemples hors politique (gardés par DAS)",
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
        rows[f"rejetées par le filtre : {REASONS_FR.get(reason, reason)}"] = n
    paper = mp.get("paper_subset") or {}
    if paper:  # divergence by truncation only, as in the article: counted on its own
        rows["fidèle à l'article (coupées par la limite seulement) : divergentes"] = paper.get("diverging")
        rows["fidèle à l'article : continuées"] = paper.get("continued")
        rows["fidèle à l'article : gardées"] = paper.get("used")
    if mp.get("student_share_chars") is not None:
        rows["part de l'élève dans les réponses gardées (caractères)"] = f"{french(100 * mp['student_share_chars'], 0)} %"
    return pd.DataFrame({"nombre": [french(v) for v in rows.values()]}, index=list(rows))


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
    print(f"question {example['question_id']} : réponse de l'élève divergente "
          f"({REASONS_FR.get(example['divergence'], example['divergence'])}), {example['student_tokens']} tokens")
    print("\n--- réponse de l'élève distillé ---\n" + example["student_text"])
    print("\n--- exemple d'entraînement : ⟦part de l'élève⟧ puis la suite du professeur ---\n"
          f"⟦{example['prefix']}⟧{example['continuation']}")
    print(f"\npréfixe + suite == exemple d'entraînement : {french(example['joined_exactly'])}")
    quality = example["quality"]
    verdict = "gardé" if quality["ok"] else f"rejeté ({REASONS_FR.get(quality['reason'], quality['reason'])})"
    print(f"filtre de qualité : {verdict}, réponse finale {quality.get('answer') or 'aucune'}")


def cost_table(cfg):
    """Return :func:`cost_estimate` as a table (French cells, « — » where this run has no time to scale from)."""
    table = _table({row["analyse"]: {k: v for k, v in row.items() if k != "analyse"} for row in cost_estimate(cfg)})
    table.index.name = "analyse"
    return table


def larger_plan(cfg):
    """Return ``cfg`` with the paper's larger plan: three random seeds (the run's own first) and the whole pool."""
    seeds = list(dict.fromkeys([*cfg.analyses.random_seeds, *range(1, LARGER_PLAN_SEEDS + 1)]))
    return replace(cfg, **{"analyses.random_seeds": seeds[:max(LARGER_PLAN_SEEDS, len(cfg.analyses.random_seeds))],
                           "analyses.full_pool": True})


def plan_costs(cfg):
    """Return the estimated time of the run's plan and of the larger one, from this run's own measured times (a DataFrame).

    On a T4 these are T4 hours (the run's stage-2 training and evaluation ran there); a cell is
    empty until those phases have run.
    """
    import pandas as pd

    plans = [("plan de ce run", cfg)]
    larger = larger_plan(cfg)
    if (larger.analyses.random_seeds, larger.analyses.full_pool) != (cfg.analyses.random_seeds, cfg.analyses.full_pool):
        plans.append((f"plan étendu ({len(larger.analyses.random_seeds)} graines aléatoires, pool entier)", larger))
    rows = []
    for label, plan in plans:
        estimate = cost_estimate(plan)
        seconds = [r["secondes (estimation)"] for r in estimate]
        total = sum(seconds) if all(s is not None for s in seconds) else None
        rows.append({"plan": label, "graines": ", ".join(map(str, plan.analyses.random_seeds)),
                     "pool entier": plan.analyses.full_pool, "entraînements": sum(r["entraînements"] for r in estimate),
                     "évaluations": sum(r["évaluations"] for r in estimate),
                     "minutes (estimation)": round(total / 60) if total is not None else None,
                     "heures (estimation)": round(total / 3600, 1) if total is not None else None})
    return pd.DataFrame(rows).set_index("plan")


__all__ = ["FAMILY_LABELS", "LARGER_PLAN_SEEDS", "PROVENANCE_FR", "REASONS_FR", "STATISTICS_FR", "cost_estimate",
           "cost_table", "french", "larger_plan", "mixed_example", "mixed_policy_table", "plan_costs", "provenance_table",
           "results_table", "show_mixed_example", "statistics_table", "tests_table", "training_table"]
