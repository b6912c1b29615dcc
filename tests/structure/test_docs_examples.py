"""The documented examples in docs/artifacts.md, recomputed with the package's own functions.

Every JSON block preceded by ``<!-- checked-example: NAME -->`` is parsed and checked by the
checker registered for NAME, so an example whose numbers drift from what the code computes (as
the McNemar p-value once did: 2 vs 25 discordant pairs give 5.6e-6, not 1.1e-6) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dasd_utils import evaluation, stats
from dasd_utils.data import load_split
from dasd_utils.prompts import LETTERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "artifacts.md"
BLOCK = re.compile(r"<!-- checked-example: (?P<name>[^ ]+) -->\n```json\n(?P<body>.*?)\n```", re.S)


def examples() -> dict[str, object]:
    """Return {name: parsed JSON} of the marked example blocks of docs/artifacts.md."""
    text = DOC.read_text(encoding="utf-8")
    found = {}
    for match in BLOCK.finditer(text):
        found[match["name"]] = json.loads(match["body"])  # one object (wrapped over lines for reading)
    return found


def sig2(x: float) -> float:
    """Return ``x`` rounded to 2 significant digits, as the example prints p-values."""
    return float(f"{x:.2g}")


def r4(pair) -> list[float]:
    return [round(v, 4) for v in pair]


# --------------------------------------------------------------------------- checkers
def _base_predictions(m: dict) -> tuple[list[dict], list[dict]]:
    """Return (predictions, loglik records) realising the documented counts of one model."""
    extracted = [letter for letter in LETTERS for _ in range(m["answer_distribution"][letter])]
    extracted += [None] * m["answer_distribution"]["none"]
    assert len(extracted) == m["n"]
    # Correct answers go to the first extracted letters; the others get a different gold letter.
    predictions = []
    for i, letter in enumerate(extracted):
        correct = i < m["correct"]
        gold = letter if correct else ("A" if letter != "A" else "B")
        predictions.append({"question_id": f"q{i:02d}", "extracted": letter, "gold": gold, "correct": correct,
                            "format_ok": i < m["format_ok"], "finish_reason": "length" if i < m["truncated"] else "stop",
                            "n_new_tokens": 0})
    total_tokens = round(m["mean_new_tokens"] * m["n"])
    for p in predictions:
        p["n_new_tokens"] = total_tokens // m["n"]
    predictions[0]["n_new_tokens"] += total_tokens - sum(p["n_new_tokens"] for p in predictions)
    predicted = [letter for letter in LETTERS for _ in range(m["loglik_distribution"][letter])]
    loglik = [{"question_id": f"q{i:02d}", "predicted": letter, "correct": i < m["loglik_correct"]}
              for i, letter in enumerate(predicted)]
    return predictions, loglik


def check_metrics(doc: dict) -> None:
    models = doc["models"]
    assert list(models) == doc["model_order"]
    for name, m in models.items():
        assert m["n"] == doc["n_items"], name
        assert m["accuracy"] == pytest.approx(m["correct"] / m["n"]), name
        assert m["ci95"] == r4(stats.wilson_interval(m["correct"], m["n"])), name

    # The fully documented model: every number comes out of evaluation.model_metrics.
    base = models["base"]
    predictions, loglik = _base_predictions(base)
    computed = evaluation.model_metrics(predictions, loglik)
    for key, value in base.items():
        if key in ("adapter", "adapter_fingerprint"):
            continue
        got = computed[key]
        if key.endswith("ci95"):
            got = r4(got)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key

    comparisons = doc["comparisons"]
    names = doc["model_order"]
    assert [(c["a"], c["b"]) for c in comparisons] == [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    raw_p = [stats.mcnemar_exact(c["only_a_correct"], c["only_b_correct"]) for c in comparisons]
    holm = stats.holm_adjust(raw_p)
    for c, p, p_holm in zip(comparisons, raw_p, holm):
        pair = f"{c['a']} vs {c['b']}"
        n = c["both_correct"] + c["only_a_correct"] + c["only_b_correct"] + c["both_wrong"]
        assert c["n"] == n == doc["n_items"], pair
        assert c["both_correct"] + c["only_a_correct"] == models[c["a"]]["correct"], pair
        assert c["both_correct"] + c["only_b_correct"] == models[c["b"]]["correct"], pair
        assert c["accuracy_a"] == pytest.approx(models[c["a"]]["accuracy"]), pair
        assert c["accuracy_b"] == pytest.approx(models[c["b"]]["accuracy"]), pair
        assert c["difference"] == pytest.approx(c["accuracy_b"] - c["accuracy_a"]), pair
        assert c["mcnemar_p"] == sig2(p), pair
        assert c["mcnemar_p_holm"] == sig2(p_holm), pair
        assert c["significant"] is (p_holm < 0.05), pair


def check_eval_question(doc_row: dict) -> None:
    row = load_split("bundled", doc_row["split"])[doc_row["index"]]
    assert row["id"].startswith(doc_row["id"].rstrip(".")), "the id is not that of the item at this index"
    for key in ("question", "question_concept", "answerKey"):
        assert doc_row[key] == row[key], key
    assert doc_row["choices"]["label"] == row["choices"]["label"]
    shown = [t for t in doc_row["choices"]["text"] if t != "..."]
    assert row["choices"]["text"][: len(shown)] == shown


CHECKERS = {"metrics.json": check_metrics, "data/eval.jsonl": check_eval_question}


def test_every_checker_has_its_marked_example():
    assert set(examples()) == set(CHECKERS)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_documented_example_matches_the_package(name):
    CHECKERS[name](examples()[name])


def test_the_checker_catches_the_old_mcnemar_value():
    doc = examples()["metrics.json"]
    doc["comparisons"][0]["mcnemar_p"] = 1.1e-6  # the value the documentation once printed
    with pytest.raises(AssertionError):
        check_metrics(doc)
