"""From prediction records to numbers: accuracy with Wilson intervals, paired McNemar tests, ``metrics.json``, tables, qualitative examples."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import layout
from ..config import Config
from ..jsonl import read_json
from ..prompts import LETTERS, extract_answer, has_final_answer_format
from ..stats import holm_adjust, mcnemar_exact, paired_counts, wilson_interval
from .loglik import LOGLIK_METHOD


def prediction_record(row: dict[str, Any], response: str | None, **extra: Any) -> dict[str, Any]:
    """Return the prediction record of one response: extracted letter, correctness, format compliance."""
    extracted = extract_answer(response)
    gold = row["answerKey"]
    record = {
        "question_id": row["id"],
        "index": row.get("index"),
        "response": response,
        "extracted": extracted,
        "gold": gold,
        "correct": extracted == gold,
        "format_ok": has_final_answer_format(response),
    }
    record.update(extra)
    return record


def model_metrics(predictions: Sequence[dict[str, Any]], loglik: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return one model's metrics: accuracy with its Wilson 95% interval, format rate, answer distribution, log-likelihood accuracy."""
    n = len(predictions)
    correct = sum(1 for p in predictions if p["correct"])
    format_ok = sum(1 for p in predictions if p["format_ok"])
    extracted = sum(1 for p in predictions if p["extracted"] is not None)
    distribution = {letter: 0 for letter in LETTERS}
    distribution["none"] = 0
    for p in predictions:
        distribution[p["extracted"] if p["extracted"] in LETTERS else "none"] += 1
    truncated = sum(1 for p in predictions if p.get("finish_reason") == "length")
    lengths = [p["n_new_tokens"] for p in predictions if isinstance(p.get("n_new_tokens"), int)]
    low, high = wilson_interval(correct, n)
    metrics: dict[str, Any] = {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [low, high],
        "format_ok": format_ok,
        "format_rate": format_ok / n if n else None,
        "extracted_rate": extracted / n if n else None,
        "answer_distribution": distribution,
        "truncated": truncated,
        "mean_new_tokens": sum(lengths) / len(lengths) if lengths else None,
        "loglik_accuracy": None,
        "loglik_ci95": None,
        "loglik_correct": None,
        "loglik_distribution": None,
    }
    if loglik:
        ll_correct = sum(1 for r in loglik if r["correct"])
        metrics["loglik_correct"] = ll_correct
        metrics["loglik_accuracy"] = ll_correct / len(loglik)
        metrics["loglik_ci95"] = list(wilson_interval(ll_correct, len(loglik)))
        # A small model may score one letter highest whatever the question (position bias):
        # the distribution shows it, where the accuracy alone would only equal that letter's share.
        metrics["loglik_distribution"] = {letter: sum(1 for r in loglik if r["predicted"] == letter) for letter in LETTERS}
    return metrics


def compare_models(
    predictions: dict[str, Sequence[dict[str, Any]]], significance: float = 0.05
) -> list[dict[str, Any]]:
    """Return the paired comparison of every pair of models on their common items (McNemar exact, Holm-adjusted)."""
    names = list(predictions)
    comparisons = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            by_a = {p["question_id"]: p["correct"] for p in predictions[a]}
            by_b = {p["question_id"]: p["correct"] for p in predictions[b]}
            if set(by_a) != set(by_b):
                raise ValueError(f"models {a} and {b} were not evaluated on the same items: paired test impossible")
            ids = sorted(by_a)
            table = paired_counts([by_a[q] for q in ids], [by_b[q] for q in ids])
            n = len(ids)
            acc_a = (table["both_correct"] + table["only_a_correct"]) / n if n else None
            acc_b = (table["both_correct"] + table["only_b_correct"]) / n if n else None
            comparisons.append({
                "a": a,
                "b": b,
                "n": n,
                **table,
                "accuracy_a": acc_a,
                "accuracy_b": acc_b,
                "difference": (acc_b - acc_a) if n else None,
                "mcnemar_p": mcnemar_exact(table["only_a_correct"], table["only_b_correct"]),
            })
    adjusted = holm_adjust([c["mcnemar_p"] for c in comparisons])
    for c, p in zip(comparisons, adjusted):
        c["mcnemar_p_holm"] = p
        c["significant"] = p < significance
    return comparisons


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def compute_metrics(cfg: Config, results: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the content of ``metrics.json`` from each model's :func:`evaluate_model` result."""
    from ..plots import stand_in_note

    models = {}
    for name, res in results.items():
        metrics = model_metrics(res["predictions"], res.get("loglik"))
        if res.get("loglik_error"):
            metrics["loglik_error"] = res["loglik_error"]
        metrics["adapter"] = res.get("adapter")
        metrics["adapter_fingerprint"] = res.get("adapter_fingerprint")
        models[name] = metrics
    comparisons = compare_models({name: res["predictions"] for name, res in results.items()})
    indices = [row.get("index") for row in rows]
    data_summary = read_json(layout.data_summary(cfg.run_dir), default={})
    stand_in = cfg.profile == "demo"
    return {
        "profile": cfg.profile,
        "stand_in": stand_in,
        "note": (
            f"demo profile: the student {cfg.student.model} and its adapters are small stand-in models "
            "fine-tuned on a stand-in teacher's answers; these numbers are NOT the course's results"
            if stand_in else ""
        ),
        "note_fr": stand_in_note(cfg.profile),
        "student": cfg.student.model,
        "models": models,
        "model_order": list(results),
        "n_items": len(rows),
        "eval_split": cfg.data.eval_split,
        "eval_indices": [min(indices), max(indices)] if indices and None not in indices else None,
        "data": {
            "n_eval": len(rows),
            "n_train": data_summary.get("n_train", cfg.data.n_train),
            "sft_examples": {
                f"stage{k}": _count_lines(layout.sft_examples(cfg.run_dir, k)) for k in layout.STAGES
            },
        },
        "generation": {
            "backend": cfg.eval.backend,
            "decoding": "greedy",
            "max_new_tokens": cfg.eval.max_new_tokens,
            "batch_size": cfg.eval.batch_size,
            "dtype": cfg.student.dtype,
            "system_prompt_sha256": hashlib.sha256(cfg.system_prompt.encode("utf-8")).hexdigest(),
        },
        "methods": {
            "ci95": "Wilson score interval, 95%",
            "paired_test": "McNemar exact test (two-sided binomial on discordant items, p=1/2), "
            "Holm-adjusted across all pairs",
            "loglik": LOGLIK_METHOD,
        },
        "comparisons": comparisons,
    }


def metrics_table(metrics: dict[str, Any], digits: int = 3):
    """Return a rounded pandas DataFrame, one row per model, for display in the notebook (French headers)."""
    import pandas as pd

    rows = []
    for name in metrics.get("model_order", list(metrics["models"])):
        m = metrics["models"][name]
        ll_ci = m.get("loglik_ci95") or [None, None]
        rows.append({
            "modèle": name,
            "n": m["n"],
            "correctes": m["correct"],
            "exactitude": m["accuracy"],
            "IC 95 % bas": m["ci95"][0],
            "IC 95 % haut": m["ci95"][1],
            "format respecté": m["format_rate"],
            "sans réponse": (m["answer_distribution"]["none"] / m["n"]) if m["n"] else None,
            "tronquées": m.get("truncated"),
            "exactitude log-vraisemblance": m.get("loglik_accuracy"),
            "IC 95 % bas (log-v.)": ll_ci[0],
            "IC 95 % haut (log-v.)": ll_ci[1],
        })
    return pd.DataFrame(rows).set_index("modèle").round(digits)


def comparisons_table(metrics: dict[str, Any], digits: int = 4):
    """Return a pandas DataFrame of the paired comparisons (flips each way, McNemar p-values), French headers."""
    import pandas as pd

    rows = [
        {
            "A": c["a"],
            "B": c["b"],
            "n": c["n"],
            "seul A correct": c["only_a_correct"],
            "seul B correct": c["only_b_correct"],
            "écart B - A": c["difference"],
            "p McNemar exact": c["mcnemar_p"],
            "p ajusté (Holm)": c["mcnemar_p_holm"],
        }
        for c in metrics["comparisons"]
    ]
    return pd.DataFrame(rows).round(digits)


def qualitative_examples(cfg: Config, rows: Sequence[dict[str, Any]], predictions: dict[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Return the crab question (``eval.qualitative_index``) and ``eval.n_random_examples`` random items, answered by each model."""
    by_model = {name: {p["question_id"]: p for p in preds} for name, preds in predictions.items()}

    def item(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "question_id": row["id"],
            "index": row.get("index"),
            "question": row["question"],
            "choices": {letter: text for letter, text in zip(row["choices"]["label"], row["choices"]["text"])},
            "gold": row["answerKey"],
            "answers": {
                name: {
                    key: preds[row["id"]][key]
                    for key in ("response", "extracted", "correct", "format_ok")
                }
                for name, preds in by_model.items()
                if row["id"] in preds
            },
        }

    highlight_row = next((r for r in rows if r.get("index") == cfg.eval.qualitative_index), None)
    rest = [r for r in rows if r is not highlight_row]
    rng = random.Random(cfg.eval.seed)
    picked = rng.sample(rest, min(cfg.eval.n_random_examples, len(rest)))
    picked.sort(key=lambda r: (r.get("index") is None, r.get("index")))
    out: dict[str, Any] = {
        "profile": cfg.profile,
        "stand_in": cfg.profile == "demo",
        "models": list(predictions),
        "qualitative_index": cfg.eval.qualitative_index,
        "highlight": item(highlight_row) if highlight_row is not None else None,
        "random_seed": cfg.eval.seed,
        "random": [item(r) for r in picked],
    }
    if highlight_row is None:
        out["highlight_missing"] = (
            f"{cfg.data.eval_split} index {cfg.eval.qualitative_index} is not among the evaluated items"
        )
    return out


def constant_letter(distribution: Mapping[str, int] | None) -> str | None:
    """Return the letter a model always picked (every answer the same letter), else None."""
    if not distribution:
        return None
    used = {k: v for k, v in distribution.items() if v and k != "none"}
    return next(iter(used)) if len(used) == 1 and sum(used.values()) == sum(distribution.values()) else None


def always_same_letter(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Return ``{model: letter}`` for the models whose log-likelihood answer is one letter for every question."""
    found = {}
    for name, m in (metrics.get("models") or {}).items():
        letter = constant_letter(m.get("loglik_distribution"))
        if letter:
            found[name] = letter
    return found


__all__ = [
    "always_same_letter",
    "compare_models",
    "comparisons_table",
    "compute_metrics",
    "constant_letter",
    "metrics_table",
    "model_metrics",
    "prediction_record",
    "qualitative_examples",
]
