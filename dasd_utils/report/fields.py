"""Field access: the run's summaries (typed, :mod:`dasd_utils.summaries`) turned into the plain
values the template shows. Every fact the report reads from a phase's files goes through here,
by the field names the phases write (docs/artifacts.md); nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import layout
from ..config import GPT_OSS_120B, QWEN3_4B
from ..quality import REASONS
from ..stats import wilson_interval as _wilson
from ..summaries import DasSummary, EvalMetrics, SftManifest, TeacherSummary
from .files import read_jsonl
from .format import display_model, number

#: Significance level of the paired comparisons, and the interval level shown when metrics.json
#: does not state its own. These are conventions of the method, not results.
SIGNIFICANCE_LEVEL = 0.05
DEFAULT_CI_LEVEL = 0.95

MODEL_LABELS = {"base": "Base", "stage1": "Stage 1", "stage2": "Stage 2 (DASD)"}
REASON_LABELS = {
    "empty": "vide",
    "too_short": "trop courte",
    "no_final_answer": "sans réponse finale",
    "wrong_answer": "réponse fausse",
    "repetitive": "répétitive",
    "too_long": "trop longue",
    "format_talk": "parle du format",
    "too_long_to_generate": "plus longue que la génération de l'élève",
    "inconsistent_answer": "conclusion différente de la réponse finale",
    "mentions_hint": "cite l'indice",
}
#: A rise of the format rate below this (10 points) is "barely", not "the format was learned".
FORMAT_LEARNED = 0.10
#: A teacher-sentence ratio without the final-answer line below this share of the ratio with it:
#: the keep decision rests mostly on that one line (the report and the conclusion say so).
FINAL_LINE_DOMINANT = 0.5
UNSCORABLE_LABELS = {
    "no_logprobs": "sans logprobs",
    "invalid_logprob": "logprob invalide",
    "tokens_mismatch": "tokens ≠ texte",
    "no_sentences": "aucune phrase",
    "no_student_tokens": "aucun token élève",
    "no_teacher_tokens": "aucun token professeur",
}


def wilson_interval(correct: int, n: int) -> list[float] | None:
    """Return the Wilson score interval [low, high] of correct/n at 95 % (``stats.wilson_interval``), None for n = 0."""
    return list(_wilson(correct, n)) if n > 0 else None


def _breakdown(counts: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """Return [(reason, count), ...] of a reason -> count mapping, quality reasons first in their order."""
    items = [(str(k), int(v)) for k, v in (counts or {}).items() if number(v) is not None]
    order = {r: i for i, r in enumerate(REASONS)}
    return sorted(items, key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def teacher_stage(summary: TeacherSummary | None, stage: int) -> dict[str, Any] | None:
    """Return the teacher statistics of one stage (teacher/summary.json ``stages.stage{N}``)."""
    s = summary.stage(stage) if summary else None
    if s is None:
        return None
    return {
        "stage": stage,
        "model": s.model,
        "temperature": number(s.temperature),
        "questions": number(s.questions),
        # "requests" counts every request of the stage; "sent" only this run's (0 on reuse).
        "sent": number(s.requests),
        "failed": number(s.failed),
        "rejected": number(s.rejected_total),
        "rejected_by_reason": [(REASON_LABELS.get(k, k), v) for k, v in _breakdown(s.rejected)],
        "kept": number(s.kept),
        "accuracy": number(s.accuracy),
        "confidence": number(s.mean_confidence),
    }


def das_stage(summary: DasSummary | None, stage: int) -> dict[str, Any] | None:
    """Return the DAS statistics of one stage (das/summary.json ``stages."N"``)."""
    s = summary.stage(stage) if summary else None
    if s is None:
        return None
    ratio = s.teacher_sentence_ratio or {}
    types = s.sentence_types or {}
    return {
        "stage": stage,
        "scored": number(s.scored),
        "unscorable": number(s.n_unscorable),
        "unscorable_by_reason": [(UNSCORABLE_LABELS.get(k, k), v) for k, v in _breakdown(s.unscorable) if v],
        "kept": number(s.kept),
        "rejected": number(s.rejected),
        "ratio_mean": number(ratio.get("mean")),
        "ratio_median": number(ratio.get("median")),
        "ratio_without_final_mean": number((s.teacher_sentence_ratio_without_final or {}).get("mean")),
        "n_sentences": number(s.sentences),
        "sentence_types": [(t, int(types[t])) for t in ("teacher", "shared", "student") if number(types.get(t)) is not None],
        "mean_p_teacher": number(s.mean_p_teacher),
        "mean_p_student": number(s.mean_p_student),
        "sft_examples": number(s.sft_examples),
        # the statistic a distilled adapter adds (das.distilled_adapter), shown under its own name
        "statistics": [("mean_p_distilled", number(s.mean_p_distilled))] if number(s.mean_p_distilled) is not None else [],
    }


def direction(before: float | None, after: float | None) -> str | None:
    """Return ``up``, ``down`` or ``same`` from ``before`` to ``after`` (None when either is missing)."""
    if before is None or after is None:
        return None
    return "up" if after > before + 1e-12 else "down" if after < before - 1e-12 else "same"


def findings(models: Mapping[str, Mapping[str, Any]], comparisons: Iterable[Mapping[str, Any]],
             das_stages: Iterable[Mapping[str, Any]], analyses: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return what the run's numbers say, for the sentences that interpret them (section 4.2 and the conclusion).

    ``models``: evaluated models by key (:func:`eval_model`); ``comparisons``: :func:`eval_comparisons`;
    ``das_stages``: :func:`das_stage` of each stage; ``analyses``: the analyses section's values
    (``rows`` with their ``comparison`` against DAS, ``provenance``). Every interpretive sentence of
    the template is chosen by one of these values, never written in advance.
    """
    base, s1, s2 = models.get("base"), models.get("stage1"), models.get("stage2")
    comparisons, das_stages = list(comparisons), list(das_stages)

    def move(a, b, field):
        return direction(a.get(field), b.get(field)) if a and b else None

    significant = [c for c in comparisons if c.get("significant")]
    base_stage1 = next((c for c in comparisons if {c.get("a"), c.get("b")} == {"base", "stage1"}), None)
    lenient_only = [m for m in models.values() if m.get("format_rate") is not None and m.get("extracted_rate") is not None
                    and m["extracted_rate"] > m["format_rate"]]
    stage2 = next((s for s in das_stages if s.get("stage") == 2), None)
    with_final = stage2.get("ratio_mean") if stage2 else None
    without_final = stage2.get("ratio_without_final_mean") if stage2 else None
    analyses = analyses or {}
    randoms = [r.get("comparison") or {} for r in analyses.get("rows") or [] if str(r.get("name", "")).startswith("random")]
    # "difference" of a comparison against DAS: positive when DAS is right more often.
    better = [c for c in randoms if c.get("significant") and (c.get("difference") or 0) > 0]
    worse = [c for c in randoms if c.get("significant") and (c.get("difference") or 0) < 0]
    shares = {t: v for t, v in ((analyses.get("provenance") or {}).get("shares") or {}).items() if number(v) is not None}
    deltas = {t: v for t, v in ((analyses.get("provenance") or {}).get("delta") or {}).items() if number(v) is not None}
    # The planned test (DAS vs the random draws pooled over the seeds) decides when the results have it;
    # results of an older version only had one McNemar test per seed.
    planned = (analyses.get("families") or {}).get("das_vs_random")
    if planned:
        das_vs_random = ("not_significant" if not planned.get("significant")
                         else "better" if (planned.get("difference") or 0) > 0 else "worse")
    else:
        das_vs_random = (None if not randoms else "mixed" if better and worse else "better" if better
                         else "worse" if worse else "not_significant")
    return {
        "das_vs_random": das_vs_random,
        "top_provenance": max(shares, key=shares.get) if analyses.get("provenance", {}).get("available") and shares else None,
        # the provenance most over-represented in right answers (largest positive area difference)
        "top_delta": max((t for t in deltas if deltas[t] > 0), key=deltas.get, default=None),
        "accuracy_base_stage1": move(base, s1, "accuracy"),
        # None when metrics.json has no base / stage 1 test
        "accuracy_base_stage1_significant": None if base_stage1 is None else bool(base_stage1.get("significant")),
        "accuracy_stage1_stage2": move(s1, s2, "accuracy"),
        # up (by FORMAT_LEARNED or more), slightly_up, same or down
        "format_base_stage1": "slightly_up" if move(base, s1, "format_rate") == "up"
        and s1["format_rate"] - base["format_rate"] < FORMAT_LEARNED else move(base, s1, "format_rate"),
        "significant": significant,
        "none_significant": bool(comparisons) and not significant,
        # Models whose lenient extraction finds more letters than the strict "Final Answer" line.
        "lenient_only": lenient_only,
        "das_stage2": stage2,
        "final_line_dominant": with_final is not None and without_final is not None and with_final > 0
        and without_final < FINAL_LINE_DOMINANT * with_final,
    }


def sft_stage(manifest: SftManifest | None, stage: int) -> dict[str, Any] | None:
    """Return the training facts of one stage (sft/stage{N}/manifest.json)."""
    if manifest is None:
        return None
    parent = (manifest.parent_adapter or {}).get("path")
    if parent:
        # Show the adapter's place in the run (sft/stage1), not an absolute path of the machine.
        parent = "/".join(Path(str(parent)).parts[-2:])
    return {
        "stage": stage,
        "base_model": display_model(manifest.base_model),
        "init_adapter": parent,
        "n_examples": number(manifest.n_examples),
        "steps": number(manifest.steps),
        "final_loss": number(manifest.final_loss),
        "tokens_per_s": number(manifest.tokens_per_s),
        "first_loss": number(manifest.first_loss),
        "wall_time_s": number(manifest.wall_time_s),
        "learning_rate": number(manifest.learning_rate),
        "epochs": number(manifest.epochs),
        # Did it learn: steps at a non-zero learning rate, how far the adapter moved from its parent.
        "learning_steps": number(manifest.learning_steps),
        "adapter_change": number((manifest.adapter_change or {}).get("relative")),
        "unchanged": (manifest.adapter_change or {}).get("l2") == 0,
    }


def eval_model(metrics: EvalMetrics | None, key: str) -> dict[str, Any] | None:
    """Return the metrics of one evaluated model (eval/metrics.json ``models.<key>``)."""
    m = metrics.models.get(key) if metrics else None
    if m is None:
        return None
    ci, ci_source = m.ci95, "metrics"
    if not (isinstance(ci, list) and len(ci) == 2 and all(number(v) is not None for v in ci)):
        ci = wilson_interval(int(m.correct), int(m.n)) if m.n else None
        ci_source = "calculé ici (Wilson)" if ci else None
    return {
        "key": key,
        "label": MODEL_LABELS.get(key, key),
        "n": number(m.n),
        "correct": number(m.correct),
        "accuracy": number(m.accuracy),
        "ci": [float(ci[0]), float(ci[1])] if ci else None,
        "ci_width": (float(ci[1]) - float(ci[0])) if ci else None,
        "ci_source": ci_source,
        "format_rate": number(m.format_rate),
        # lenient extraction: a letter found in the "Final Answer" line or, without one, in "the answer is C"...
        "extracted_rate": number(m.extracted_rate),
        "loglik_accuracy": number(m.loglik_accuracy),
        "answer_distribution": [(str(k), int(v)) for k, v in m.answer_distribution.items() if number(v) is not None],
    }


def eval_comparisons(metrics: EvalMetrics | None) -> list[dict[str, Any]]:
    """Return the paired comparisons of eval/metrics.json (McNemar)."""
    out = []
    for c in metrics.comparisons if metrics else []:
        only_a, only_b = number(c.only_a_correct), number(c.only_b_correct)
        p, p_holm = number(c.mcnemar_p), number(c.mcnemar_p_holm)
        # With several pairs tested, the decision uses the Holm-adjusted p-value when there is one.
        decisive = p_holm if p_holm is not None else p
        a_label, b_label = MODEL_LABELS.get(c.a, c.a), MODEL_LABELS.get(c.b, c.b)
        out.append({
            "a": c.a, "b": c.b, "a_label": a_label, "b_label": b_label,
            "only_a": only_a, "only_b": only_b, "p": p, "p_holm": p_holm,
            "significant": decisive is not None and decisive < SIGNIFICANCE_LEVEL,
            "better": None if only_a is None or only_b is None or only_a == only_b else (a_label if only_a > only_b else b_label),
        })
    return out


def qualitative_example(item: Any) -> dict[str, Any] | None:
    """Return one item of eval/qualitative.json (``evaluation.qualitative_examples``) for the template."""
    if not isinstance(item, Mapping):
        return None
    answers = item.get("answers") if isinstance(item.get("answers"), Mapping) else {}
    choices = item.get("choices") if isinstance(item.get("choices"), Mapping) else {}
    return {
        "index": item.get("index"),
        "question_id": item.get("question_id"),
        "question": item.get("question"),
        "options": [(str(k), str(v)) for k, v in choices.items()],
        "gold": item.get("gold"),
        "responses": [
            {"key": key, "label": MODEL_LABELS.get(key, key), "response": a.get("response") or "",
             "extracted": a.get("extracted"), "correct": a.get("correct")}
            for key, a in answers.items() if isinstance(a, Mapping)
        ],
    }


def qualitative_items(qualitative: Any) -> tuple[dict | None, list[dict]]:
    """Return (featured example, random examples) of eval/qualitative.json (``highlight``, ``random``)."""
    if not isinstance(qualitative, Mapping):
        return None, []
    random_items = qualitative.get("random") if isinstance(qualitative.get("random"), list) else []
    return qualitative_example(qualitative.get("highlight")), [ex for ex in map(qualitative_example, random_items) if ex]


def qualitative_from_predictions(run_dir: Path, model_keys: list[str], index: int) -> dict[str, Any] | None:
    """Return the featured example rebuilt from data/eval.jsonl and eval/predictions_<model>.jsonl."""
    row = next((r for r in read_jsonl(layout.questions_file(run_dir, "eval")) or [] if r.get("index") == index), None)
    if row is None:
        return None
    answers = {}
    for key in model_keys:
        for pred in read_jsonl(layout.predictions_file(run_dir, key)) or []:
            if pred.get("question_id") == row.get("id"):
                answers[key] = pred
                break
    if not answers:
        return None
    choices = row.get("choices") or {}
    return qualitative_example({
        "question_id": row.get("id"), "index": index, "question": row.get("question"),
        "choices": dict(zip(choices.get("label", []), choices.get("text", []))), "gold": row.get("answerKey"),
        "answers": answers,
    })


def config_facts(cfg: Mapping[str, Any] | None, metrics: EvalMetrics | None) -> dict[str, Any]:
    """Return the run's identity (profile, models, sizes, method settings) from config.json."""
    cfg = cfg or {}

    def section(name: str) -> Mapping[str, Any]:
        return cfg.get(name) if isinstance(cfg.get(name), Mapping) else {}

    data, teacher, student = section("data"), section("teacher"), section("student")
    das, sft, quality, evaluation = section("das"), section("sft"), section("quality"), section("eval")
    profile = cfg.get("profile") or (metrics.profile if metrics else None)
    teacher_model = teacher.get("model")
    student_model = student.get("model")
    local = teacher.get("backend") == "local"
    stand_in_teacher = local or bool(teacher.get("stand_in"))
    return {
        "known": bool(cfg),
        "profile": profile,
        "demo": profile == "demo",
        "stand_in_teacher": stand_in_teacher,
        "same_model": bool(teacher_model) and teacher_model == student_model,
        "differs_from_course": bool(cfg) and (teacher_model != GPT_OSS_120B or student_model != QWEN3_4B),
        "stand_in": profile == "demo" or stand_in_teacher,
        "student": display_model(student_model),
        "teacher": display_model(teacher_model),
        "teacher_backend": teacher.get("backend"),
        "teacher_base_url": teacher.get("base_url"),
        "gold_hint": local and bool(teacher.get("local_gold_hint")),
        "few_shot": teacher.get("local_few_shot") if local else None,
        "best_of_n": teacher.get("local_best_of_n") if local else None,
        "data": dict(data),
        "teacher_cfg": dict(teacher),
        "student_cfg": dict(student),
        "das": dict(das),
        "sft": dict(sft),
        "quality": dict(quality),
        "eval": dict(evaluation),
        "system_prompt": cfg.get("system_prompt"),
        "seed": cfg.get("seed"),
    }


def model_keys(metrics: EvalMetrics | None, configured: Iterable[str] | None) -> list[str]:
    """Return the evaluated models in display order: metrics' ``model_order``, then any other model it holds."""
    keys = list((metrics.model_order if metrics else None) or configured or ["base", "stage1", "stage2"])
    return keys + [k for k in (metrics.models if metrics else {}) if k not in keys]
