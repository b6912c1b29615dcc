"""The French report, built from a run directory only: Markdown plus a standalone HTML file.

``build_report(run_dir)`` reads the run's files (``config.json``, ``data/summary.json``,
``teacher/summary.json``, ``das/summary.json``, ``sft/stage*/manifest.json``,
``eval/metrics.json``, ``eval/qualitative.json``, ``figures/*.png``; see docs/artifacts.md),
turns them into a context of plain values, and renders ``dasd_utils/templates/rapport.md.j2`` (Jinja2) into
``<run_dir>/report/rapport.md`` (figures referenced relatively) and ``rapport.html`` (figures
embedded as base64 data URIs, small CSS, no external file). No number is written by hand: every
figure in the text comes from those files, or is derived from them here (interval widths, a
Wilson interval when ``metrics.json`` lacks one). A phase that has not run leaves its section
with a sentence saying so.

Every read of a phase's fields goes through the "field access" functions below, so that a change
in a phase's format is adjusted in one place.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote, unquote

from .config import GPT_OSS_120B, QWEN3_4B, Config, EvalConfig, settings_drift
from .plots import stand_in_note
from .prompts import LETTERS
from .quality import REASONS
from .timing import timed_phase

log = logging.getLogger(__name__)

#: The template lives in the repository's ``report/`` folder (next to the package).
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "rapport.md.j2"
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
}
UNSCORABLE_LABELS = {
    "no_logprobs": "sans logprobs",
    "invalid_logprob": "logprob invalide",
    "tokens_mismatch": "tokens ≠ texte",
    "no_sentences": "aucune phrase",
    "no_student_tokens": "aucun token élève",
    "no_teacher_tokens": "aucun token professeur",
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.55;
       max-width: 54rem; margin: 2rem auto; padding: 0 1.2rem; color: #1f2328; background: #fff; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .92rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: .8rem auto; border: 1px solid #eaeef2; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; white-space: pre-wrap;
      word-wrap: break-word; font-size: .85rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
blockquote { margin: 1rem 0; padding: .6rem 1rem; border-left: 5px solid #d4a72c; background: #fff8c5; }
blockquote p { margin: .3rem 0; }
em.note { color: #57606a; }
"""


# =============================================================================== field access
# Everything read from a phase's files goes through this section. The formats are the ones of
# docs/artifacts.md; alternative names are accepted where a phase might reasonably use them.


def _first(mapping: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """Return the value of the first of ``names`` present (and not None) in ``mapping``."""
    if not isinstance(mapping, Mapping):
        return default
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return default


def _number(value: Any) -> float | None:
    """Return ``value`` as a float when it is a finite number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mean_of(value: Any) -> float | None:
    """Return a scalar from a number or from a statistics mapping (``{"mean": ...}``)."""
    if isinstance(value, Mapping):
        return _number(_first(value, "mean", "avg", "average"))
    return _number(value)


def _stage_entry(summary: Any, stage: int) -> Mapping[str, Any] | None:
    """Return the per-stage mapping of a teacher / DAS summary, whatever its nesting."""
    if not isinstance(summary, Mapping):
        return None
    container: Any = summary.get("stages", summary)
    keys = (f"stage{stage}", str(stage), f"stage_{stage}")
    if isinstance(container, Mapping):
        for key in keys:
            if isinstance(container.get(key), Mapping):
                return container[key]
    if isinstance(container, list):
        for item in container:
            if isinstance(item, Mapping) and str(item.get("stage")) in (str(stage), f"stage{stage}"):
                return item
    return None


def _count_breakdown(value: Any) -> tuple[int | None, list[tuple[str, int]]]:
    """Return (total, [(reason, count), ...]) from an int or a mapping reason -> count."""
    if isinstance(value, Mapping):
        items = [(str(k), int(v)) for k, v in value.items() if _number(v) is not None]
        known = [r for r in REASONS if any(k == r for k, _ in items)]
        order = {r: i for i, r in enumerate(known)}
        items.sort(key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        return sum(v for _, v in items), items
    number = _number(value)
    return (int(number) if number is not None else None), []


def teacher_stage(summary: Any, stage: int) -> dict[str, Any] | None:
    """Return the normalised teacher statistics of one stage (teacher/summary.json)."""
    entry = _stage_entry(summary, stage)
    if entry is None:
        return None
    rejected_total, rejected = _count_breakdown(_first(entry, "rejected", "rejected_by_reason", "rejections"))
    failed_total, failed = _count_breakdown(_first(entry, "failed", "n_failed", "errors"))
    # "requests" counts every request of the stage; "sent" may count only this run's (0 on reuse).
    return {
        "stage": stage,
        "model": _first(entry, "model"),
        "temperature": _number(_first(entry, "temperature")),
        "questions": _number(_first(entry, "questions", "n_questions")),
        "sent": _number(_first(entry, "requests", "n_requests", "sent", "n_sent")),
        "failed": failed_total,
        "rejected": _number(_first(entry, "rejected_total")) if rejected_total is None else rejected_total,
        "rejected_by_reason": [(REASON_LABELS.get(k, k), v) for k, v in rejected],
        "kept": _number(_first(entry, "kept", "n_kept")),
        "accuracy": _mean_of(_first(entry, "accuracy", "teacher_accuracy")),
        "confidence": _mean_of(_first(entry, "mean_confidence", "confidence", "mean_token_prob")),
    }


def das_stage(summary: Any, stage: int) -> dict[str, Any] | None:
    """Return the normalised DAS statistics of one stage (das/summary.json)."""
    entry = _stage_entry(summary, stage)
    if entry is None:
        return None
    unscorable_total, unscorable = _count_breakdown(_first(entry, "unscorable", "unscorable_by_reason"))
    stats = _first(entry, "statistics", "stats", default={})
    stats = stats if isinstance(stats, Mapping) else {}
    ratio = _first(entry, "teacher_sentence_ratio", default=_first(stats, "teacher_sentence_ratio", default={}))
    ratio = ratio if isinstance(ratio, Mapping) else {"mean": ratio}
    types = _first(entry, "sentence_types", default=_first(stats, "sentence_types", default={}))
    known = {"teacher_sentence_ratio", "sentence_types", "mean_teacher_sentence_ratio", "median_teacher_sentence_ratio",
             "mean_p_teacher", "mean_p_student", "sentences", "n_sentences", "sft_examples"}
    return {
        "stage": stage,
        "scored": _number(_first(entry, "scored", "n_scored")),
        "unscorable": _number(_first(entry, "n_unscorable")) if unscorable_total is None else unscorable_total,
        "unscorable_by_reason": [(UNSCORABLE_LABELS.get(k, k), v) for k, v in unscorable if v],
        "kept": _number(_first(entry, "kept", "n_kept")),
        "rejected": _number(_first(entry, "rejected", "n_rejected")),
        "ratio_mean": _number(_first(ratio, "mean", default=_first(stats, "mean_teacher_sentence_ratio"))),
        "ratio_median": _number(_first(ratio, "median", default=_first(stats, "median_teacher_sentence_ratio"))),
        "n_sentences": _number(_first(entry, "sentences", "n_sentences", default=_first(stats, "sentences", "n_sentences"))),
        "sentence_types": [(t, int(types[t])) for t in ("teacher", "shared", "student") if _number(types.get(t)) is not None]
        if isinstance(types, Mapping) else [],
        "mean_p_teacher": _number(_first(entry, "mean_p_teacher", default=_first(stats, "mean_p_teacher"))),
        "mean_p_student": _number(_first(entry, "mean_p_student", default=_first(stats, "mean_p_student"))),
        "sft_examples": _number(_first(entry, "sft_examples", default=_first(stats, "sft_examples"))),
        # any other statistic a phase adds, shown under its own name
        "statistics": [(str(k), _mean_of(v)) for k, v in stats.items() if k not in known and _mean_of(v) is not None],
    }


def sft_stage(manifest: Any, stage: int) -> dict[str, Any] | None:
    """Return the normalised training facts of one stage (sft/stage*/manifest.json)."""
    if not isinstance(manifest, Mapping):
        return None
    config = _first(manifest, "config", "training_config", default={})
    dataset = _first(manifest, "dataset", default={})
    parent = _first(manifest, "parent_adapter", "init_adapter", "init_from")
    if isinstance(parent, Mapping):
        parent = parent.get("path")
    if parent:
        # Show the adapter's place in the run (sft/stage1), not an absolute path of the machine.
        parent = "/".join(Path(str(parent)).parts[-2:])
    return {
        "stage": stage,
        "base_model": display_model(_first(manifest, "base_model", "model")),
        "init_adapter": parent,
        "n_examples": _number(_first(manifest, "n_examples", "num_examples", "examples", default=_first(dataset, "n_examples"))),
        "steps": _number(_first(manifest, "steps", "global_step", "max_steps", "n_steps")),
        "final_loss": _number(_first(manifest, "final_loss", "train_loss", "loss")),
        "tokens_per_s": _number(_first(manifest, "tokens_per_s", "tokens_per_second", "train_tokens_per_second")),
        "first_loss": _number(_first(manifest, "first_loss")),
        "wall_time_s": _number(_first(manifest, "wall_time_s", "wall_s", "train_runtime_s", "train_runtime", "runtime_s")),
        "learning_rate": _number(_first(manifest, "learning_rate", "lr", default=_first(config, "learning_rate", "lr"))),
        "epochs": _number(_first(manifest, "epochs", "num_train_epochs", default=_first(config, "num_train_epochs", "epochs"))),
    }


def eval_model(metrics: Any, key: str) -> dict[str, Any] | None:
    """Return the normalised metrics of one evaluated model (eval/metrics.json ``models``)."""
    models = _first(metrics, "models", default={})
    entry = models.get(key) if isinstance(models, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    n = _number(_first(entry, "n", "n_items"))
    correct = _number(_first(entry, "correct", "n_correct"))
    accuracy = _number(_first(entry, "accuracy", "acc"))
    ci = _first(entry, "ci95", "wilson_ci95", "ci", "wilson_ci")
    ci_source = "metrics"
    if isinstance(ci, Mapping):
        ci = [ci.get("low", ci.get("lower")), ci.get("high", ci.get("upper"))]
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(v) is not None for v in ci)):
        ci = wilson_interval(int(correct), int(n)) if n and correct is not None else None
        ci_source = "calculé ici (Wilson)" if ci else None
    distribution = _first(entry, "answer_distribution", "distribution", default={})
    return {
        "key": key,
        "label": MODEL_LABELS.get(key, key),
        "n": n,
        "correct": correct,
        "accuracy": accuracy,
        "ci": [float(ci[0]), float(ci[1])] if ci else None,
        "ci_width": (float(ci[1]) - float(ci[0])) if ci else None,
        "ci_source": ci_source,
        "format_rate": _number(_first(entry, "format_rate", "format_compliance", "format_ok_rate")),
        "loglik_accuracy": _number(_first(entry, "loglik_accuracy", "loglikelihood_accuracy")),
        "answer_distribution": [
            (str(k), int(v)) for k, v in distribution.items() if _number(v) is not None
        ] if isinstance(distribution, Mapping) else [],
    }


def eval_comparisons(metrics: Any) -> list[dict[str, Any]]:
    """Return the paired comparisons of eval/metrics.json (McNemar), normalised."""
    out = []
    for item in _first(metrics, "comparisons", default=[]) or []:
        if not isinstance(item, Mapping):
            continue
        a, b = _first(item, "a", "model_a"), _first(item, "b", "model_b")
        only_a = _number(_first(item, "only_a_correct", "a_only", "b_wrong_a_right"))
        only_b = _number(_first(item, "only_b_correct", "b_only", "a_wrong_b_right"))
        p = _number(_first(item, "mcnemar_p", "p_value", "p"))
        # With several pairs tested, the decision uses the Holm-adjusted p-value when there is one.
        p_holm = _number(_first(item, "mcnemar_p_holm", "p_holm", "p_adjusted"))
        decisive = p_holm if p_holm is not None else p
        if a is None or b is None:
            continue
        out.append({
            "a": a, "b": b,
            "a_label": MODEL_LABELS.get(a, a), "b_label": MODEL_LABELS.get(b, b),
            "only_a": only_a, "only_b": only_b, "p": p, "p_holm": p_holm,
            "significant": decisive is not None and decisive < SIGNIFICANCE_LEVEL,
            "better": (
                None if only_a is None or only_b is None or only_a == only_b
                else (MODEL_LABELS.get(a, a) if only_a > only_b else MODEL_LABELS.get(b, b))
            ),
        })
    return out


def _choices_of(example: Mapping[str, Any]) -> list[tuple[str, str]]:
    row = example.get("row") if isinstance(example.get("row"), Mapping) else example
    choices = _first(row, "choices", "options")
    if isinstance(choices, Mapping):
        if "text" in choices:
            return list(zip(choices.get("label", LETTERS), choices["text"]))
        return [(str(k), str(v)) for k, v in choices.items()]  # {"A": "fish market", ...}
    if isinstance(choices, list):
        if all(isinstance(c, Mapping) for c in choices):
            return [(str(c.get("label")), str(c.get("text"))) for c in choices]
        return list(zip(LETTERS, [str(c) for c in choices]))
    return []


def qualitative_example(example: Any, model_keys: Iterable[str]) -> dict[str, Any] | None:
    """Return one qualitative item (question, options, gold, each model's response) normalised."""
    if not isinstance(example, Mapping):
        return None
    row = example.get("row") if isinstance(example.get("row"), Mapping) else example
    question = _first(row, "question")
    if isinstance(question, Mapping):  # {"question": {"stem": ...}} style
        question = _first(question, "stem", "text")
    responses_src = _first(example, "answers", "responses", "models", "predictions", default=None)
    if responses_src is None:
        responses_src = {k: example[k] for k in model_keys if isinstance(example.get(k), (Mapping, str))}
    responses = []
    items: Iterable[tuple[str, Any]]
    if isinstance(responses_src, Mapping):
        items = responses_src.items()
    elif isinstance(responses_src, list):
        items = [(str(_first(r, "model", "name", default="?")), r) for r in responses_src if isinstance(r, Mapping)]
    else:
        items = []
    for key, value in items:
        if isinstance(value, str):
            value = {"response": value}
        if not isinstance(value, Mapping):
            continue
        responses.append({
            "key": key,
            "label": MODEL_LABELS.get(key, key),
            "response": _first(value, "response", "content", "text", default=""),
            "extracted": _first(value, "extracted", "answer"),
            "correct": _first(value, "correct"),
        })
    return {
        "index": _first(example, "index", default=_first(row, "index")),
        "question_id": _first(example, "question_id", "id", default=_first(row, "id")),
        "question": question,
        "options": _choices_of(example),
        "gold": _first(example, "gold", "answerKey", default=_first(row, "answerKey", "gold")),
        "responses": responses,
    }


def qualitative_items(qualitative: Any, model_keys: list[str], featured_index: int | None) -> tuple[dict | None, list[dict]]:
    """Return (featured example, random examples) from eval/qualitative.json."""
    featured_raw: Any = None
    others_raw: list[Any] = []
    if isinstance(qualitative, list):
        others_raw = list(qualitative)
    elif isinstance(qualitative, Mapping):
        featured_raw = _first(qualitative, "highlight", "featured", "crab", "example")
        others_raw = list(_first(qualitative, "random_examples", "random", "examples", "items", default=[]) or [])
        if featured_raw is None and ("question" in qualitative or "row" in qualitative):
            featured_raw = qualitative
    if featured_raw is None and featured_index is not None:
        for item in others_raw:
            if isinstance(item, Mapping) and _first(item, "index") == featured_index:
                featured_raw = item
        others_raw = [item for item in others_raw if item is not featured_raw]
    featured = qualitative_example(featured_raw, model_keys)
    others = [ex for ex in (qualitative_example(item, model_keys) for item in others_raw) if ex]
    return featured, others


def qualitative_from_predictions(run_dir: Path, model_keys: list[str], index: int) -> dict[str, Any] | None:
    """Return the featured example rebuilt from data/eval.jsonl and eval/predictions_<model>.jsonl."""
    questions = _read_jsonl(run_dir / "data" / "eval.jsonl")
    row = next((r for r in questions or [] if r.get("index") == index), None)
    if row is None:
        return None
    responses = {}
    for key in model_keys:
        for pred in _read_jsonl(run_dir / "eval" / f"predictions_{key}.jsonl") or []:
            if pred.get("question_id") == row.get("id") or (pred.get("index") == index and "question_id" not in pred):
                responses[key] = pred
                break
    if not responses:
        return None
    return qualitative_example({**row, "gold": row.get("answerKey"), "responses": responses}, model_keys)


def config_facts(cfg: Mapping[str, Any] | None, metrics: Any) -> dict[str, Any]:
    """Return the run's identity (profile, models, sizes, method settings) from config.json."""
    cfg = cfg or {}

    def section(name: str) -> Mapping[str, Any]:
        return cfg.get(name) if isinstance(cfg.get(name), Mapping) else {}

    data, teacher, student = section("data"), section("teacher"), section("student")
    das, sft, quality, evaluation = section("das"), section("sft"), section("quality"), section("eval")
    profile = cfg.get("profile") or _first(metrics, "profile")
    teacher_model = teacher.get("model")
    student_model = student.get("model")
    stand_in_teacher = teacher.get("backend") == "local" or bool(teacher.get("stand_in"))
    stand_in = profile == "demo" or stand_in_teacher
    return {
        "known": bool(cfg),
        "profile": profile,
        "demo": profile == "demo",
        "stand_in_teacher": stand_in_teacher,
        "same_model": bool(teacher_model) and teacher_model == student_model,
        "differs_from_course": bool(cfg) and (teacher_model != GPT_OSS_120B or student_model != QWEN3_4B),
        "stand_in": stand_in,
        "student": display_model(student_model),
        "teacher": display_model(teacher_model),
        "teacher_backend": teacher.get("backend"),
        "teacher_base_url": teacher.get("base_url"),
        "gold_hint": teacher.get("backend") == "local" and bool(teacher.get("local_gold_hint")),
        "few_shot": teacher.get("local_few_shot") if teacher.get("backend") == "local" else None,
        "best_of_n": teacher.get("local_best_of_n") if teacher.get("backend") == "local" else None,
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


# ================================================================================ reading files


def _read_json(path: Path, problems: list[str]) -> Any:
    """Return the parsed JSON file, or None (and a note in ``problems``) when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 (UnicodeDecodeError) or not JSON
        problems.append(f"{path.name} illisible ({type(exc).__name__})")
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]] | None:
    """Return the JSON objects of a JSONL file, or None when it is missing; broken lines are skipped with a warning."""
    if not path.is_file():
        return None
    rows = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        if raw.strip():
            try:
                row = json.loads(raw.decode("utf-8"))
            except ValueError:  # not UTF-8, or a torn last line of an interrupted phase
                log.warning("report: %s:%d is not a UTF-8 JSON record; it is ignored", path, lineno)
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


# ================================================================================ figures
# Figure names come from the phases (teacher_quality.png, das_stage1.png, sft_loss.png, ...);
# unknown names still appear, in the section their name suggests or in "Autres figures".
FIGURE_SECTIONS = (
    ("sft", ("loss", "sft", "train")),
    ("das", ("das", "ratio", "sentence", "divergence", "scatter", "provenance")),
    ("eval", ("eval", "accuracy", "format", "confusion", "metric", "mcnemar", "answer")),
    ("teacher", ("teacher", "quality", "confidence", "generation")),
)
FIGURE_CAPTIONS = (
    ("teacher_quality", "Filtre de qualité : réponses du professeur gardées et rejetées (par raison) pour chaque étape, "
                        "et distribution de sa confiance (probabilité moyenne des tokens)."),
    ("das_stage1", "Distribution du taux de phrases professeur, étape 1 : exemples gardés et rejetés, avec le seuil."),
    ("das_stage2", "Distribution du taux de phrases professeur, étape 2 : exemples gardés et rejetés, avec le seuil."),
    ("scatter", "P_T contre P_S pour chaque phrase ; la zone des phrases professeur est ombrée."),
    ("profile", "Profil d'un exemple phrase par phrase : P_T et P_S le long de la réponse, fond coloré par type de phrase."),
    ("loss", "Courbes de perte d'entraînement des deux étapes."),
    ("confusion", "Matrice de confusion : lettre prédite contre lettre correcte."),
    ("format", "Taux de réponses au format demandé, par modèle."),
    ("accuracy", "Exactitude par modèle, avec son intervalle de confiance."),
)
#: Order of figures inside a section: the order of FIGURE_CAPTIONS, then by name.
_FIGURE_ORDER = ("teacher_quality", "das_stage1", "das_stage2", "scatter", "profile", "loss", "accuracy", "format", "confusion")


#: First bytes of the image formats the report embeds (PNG, JPEG, GIF, WebP); nothing else is inlined.
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                    b"GIF89a": "image/gif"}


def image_mime(path: Path) -> str | None:
    """Return the MIME type of a PNG, JPEG, GIF or WebP file from its first bytes, else None."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_SIGNATURES.items() if head.startswith(magic)), None)


def inside(path: Path, root: Path) -> Path | None:
    """Return ``path`` fully resolved (symlinks followed) when it is a regular file inside ``root``, else None."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(root.resolve()):
        return None
    return resolved


def run_figures(run_dir: Path, problems: list[str] | None = None) -> list[Path]:
    """Return the run's ``figures/*.png`` that are image files inside the run (a symlink leading out is left out)."""
    out = []
    for path in sorted((run_dir / "figures").glob("*.png")):
        if inside(path, run_dir) is None or image_mime(path) is None:
            log.warning("report: %s is left out (not an image file inside the run directory)", path)
            if problems is not None:
                problems.append(f"figure {path.name} ignorée (pas une image à l'intérieur du run)")
            continue
        out.append(path)
    return out


def _classify_figures(paths: list[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {"teacher": [], "das": [], "sft": [], "eval": [], "other": []}
    def order(path: Path) -> tuple[int, str]:
        stem = path.stem.lower()
        return next((i for i, key in enumerate(_FIGURE_ORDER) if key in stem), len(_FIGURE_ORDER)), path.name

    for path in sorted(paths, key=order):
        stem = path.stem.lower()
        section = next((name for name, words in FIGURE_SECTIONS if any(w in stem for w in words)), "other")
        groups[section].append(path)
    return groups


def _caption(path: Path, profile: str | None) -> str:
    stem = path.stem.lower()
    caption = next((text for key, text in FIGURE_CAPTIONS if key in stem), f"Figure {md_code(path.name)}.")
    note = stand_in_note(profile or "")
    return f"{caption} ({note})" if note else caption


def _loss_curves_fallback(run_dir: Path, out_dir: Path) -> Path | None:
    """Return a loss-curve PNG drawn from sft/stage*/train_log.jsonl when no loss figure exists."""
    logs = {}
    for stage in (1, 2):
        rows = _read_jsonl(run_dir / "sft" / f"stage{stage}" / "train_log.jsonl") or []
        points = [(r["step"], r["loss"]) for r in rows if _number(r.get("step")) is not None and _number(r.get("loss")) is not None]
        if points:
            logs[stage] = points
    if not logs:
        return None
    import matplotlib.pyplot as plt

    from .plots import MODEL_COLOURS, save

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for stage, points in logs.items():
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker=".", color=MODEL_COLOURS.get(f"stage{stage}"), label=f"stage {stage}")
    ax.set_xlabel("pas d'optimisation")
    ax.set_ylabel("perte (entropie croisée)")
    ax.set_title("Courbes de perte (tracées depuis train_log.jsonl)")
    ax.legend()
    return save(fig, out_dir / "courbes_de_perte.png")


# ================================================================================ formatting
# French typography: decimal comma, a space before "%".


def fmt_num(value: Any, digits: int = 2) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return f"{number:.{digits}f}".replace(".", ",")


def fmt_g(value: Any) -> str:
    """Return a setting as written (0.3, 3, 0.25), with a decimal comma."""
    number = _number(value)
    return "—" if number is None else f"{number:g}".replace(".", ",")


def fmt_int(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else str(int(round(number)))


def fmt_pct(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{fmt_num(number * 100, digits)} %"


def fmt_ci(ci: Any, digits: int = 1) -> str:
    if not ci:
        return "—"
    return f"[{fmt_pct(ci[0], digits)} ; {fmt_pct(ci[1], digits)}]"


def fmt_p(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "p non disponible"
    if number < 0.001:
        return "p < 0,001"
    return f"p = {fmt_num(number, 3)}"


def fmt_sci(value: Any) -> str:
    """Return a learning rate or other small number in the usual 2e-04 notation."""
    number = _number(value)
    return "—" if number is None else f"{number:.0e}"


def fmt_duration(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "—"
    if number < 120:
        return f"{fmt_num(number, 1)} s"
    return f"{fmt_num(number / 60, 1)} min"


def md_escape(text: Any) -> str:
    """Return ``text`` with Markdown / HTML special characters escaped, on one line."""
    if text is None:
        return "—"
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_{}\[\]<>#|!])", r"\\\1", text)


def md_code(text: Any) -> str:
    """Return ``text`` as an inline code span on one line; text holding a backtick or ``|`` is escaped instead.

    A backtick would close the span early and let the rest be read as Markdown; a ``|`` would
    split a table cell. Such text (never a real profile, split or path) is shown escaped, not in code.
    """
    if text is None:
        return "—"
    text = " ".join(str(text).split())
    if not text or "`" in text or "|" in text:
        return md_escape(text) if text else "—"
    return f"`{text}`"


def md_alt(text: Any) -> str:
    """Return ``text`` escaped for the alt text of a Markdown image (brackets, backticks, ``<``, ``\\``), on one line."""
    return re.sub(r"([\\`\[\]<>])", r"\\\1", " ".join(str(text or "").split()))


def fence(text: Any) -> str:
    """Return ``text`` in a fenced code block whose fence is longer than any backtick run inside."""
    text = "" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


def display_model(name: Any) -> str | None:
    """Return a readable model name: ``pypi:pkg/Name`` -> ``Name (paquet PyPI pkg)``."""
    if not name:
        return None
    name = str(name)
    if name.startswith("pypi:"):
        package, _, model = name[len("pypi:") :].partition("/")
        return f"{model or package} (paquet PyPI {package})"
    return name


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> list[float] | None:
    """Return the Wilson score interval [low, high] of correct/n at the level of ``z`` (95 %)."""
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


# ================================================================================ context


def _input_files(run_dir: Path) -> list[Path]:
    patterns = [
        "config.json", "data/summary.json", "data/eval.jsonl", "teacher/summary.json", "das/summary.json",
        "sft/stage*/manifest.json", "sft/stage*/train_log.jsonl", "eval/metrics.json", "eval/qualitative.json",
        "eval/predictions_*.jsonl", "figures/*.png",
    ]
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in run_dir.glob(pattern) if p.is_file())
    return sorted(files)


def collect_context(run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return every value the template shows, read from the run directory (and ``config`` if given)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if config is None:
        config = _read_json(run_dir / "config.json", problems)
    metrics = _read_json(run_dir / "eval" / "metrics.json", problems)
    facts = config_facts(config, metrics)

    data_summary = _read_json(run_dir / "data" / "summary.json", problems)
    teacher_summary = _read_json(run_dir / "teacher" / "summary.json", problems)
    das_summary = _read_json(run_dir / "das" / "summary.json", problems)
    manifests = {stage: _read_json(run_dir / "sft" / f"stage{stage}" / "manifest.json", problems) for stage in (1, 2)}
    qualitative = _read_json(run_dir / "eval" / "qualitative.json", problems)

    eval_cfg = facts["eval"]
    model_keys = list(_first(metrics, "model_order", default=None) or eval_cfg.get("models") or ["base", "stage1", "stage2"])
    models_in_metrics = list((_first(metrics, "models", default={}) or {}).keys()) if isinstance(metrics, Mapping) else []
    model_keys += [k for k in models_in_metrics if k not in model_keys]
    eval_models = [m for m in (eval_model(metrics, k) for k in model_keys) if m]
    widths = [m["ci_width"] for m in eval_models if m["ci_width"] is not None]
    comparisons = eval_comparisons(metrics)
    ci_level = _number(_first(metrics, "ci_level", "confidence_level")) or DEFAULT_CI_LEVEL

    featured_index = eval_cfg.get("qualitative_index", EvalConfig().qualitative_index)
    featured, random_examples = qualitative_items(qualitative, model_keys, featured_index)
    qualitative_source = "eval/qualitative.json" if featured or random_examples else None
    if featured is None:
        featured = qualitative_from_predictions(run_dir, model_keys, featured_index)
        if featured:
            qualitative_source = "eval/predictions_*.jsonl"

    report_dir = run_dir / "report"
    figures = _classify_figures(run_figures(run_dir, problems))
    if not figures["sft"]:
        fallback = _loss_curves_fallback(run_dir, report_dir)
        if fallback is not None:
            figures["sft"].append(fallback)

    def figure_entries(paths: list[Path]) -> list[dict[str, str]]:
        return [
            {"path": quote(os.path.relpath(p, report_dir).replace(os.sep, "/")), "name": p.name, "caption": _caption(p, facts["profile"])}
            for p in paths
        ]

    teacher_stages = [s for s in (teacher_stage(teacher_summary, k) for k in (1, 2)) if s]
    das_stages = [s for s in (das_stage(das_summary, k) for k in (1, 2)) if s]
    sft_stages = [s for s in (sft_stage(manifests[k], k) for k in (1, 2)) if s]

    by_key = {m["key"]: m for m in eval_models}
    stage_comparison = next(
        (c for c in comparisons if {c["a"], c["b"]} == {"stage1", "stage2"}), None
    )
    phases_present = (
        ("données", isinstance(data_summary, Mapping)),
        ("génération", bool(teacher_stages)),
        ("DAS", bool(das_stages)),
        ("SFT", bool(sft_stages)),
        ("évaluation", bool(eval_models)),
    )
    return {
        "run": facts,
        "run_name": run_dir.resolve().name,
        "missing_phases": [name for name, present in phases_present if not present],
        "problems": problems,
        # Phases whose recorded settings differ from config.json (replaced with FORCE, phase not re-run).
        "settings_drift": [
            dict(d, used=json.dumps(d["used"], ensure_ascii=False), config=json.dumps(d["config"], ensure_ascii=False))
            for d in settings_drift(run_dir, dict(config) if isinstance(config, Mapping) else None)
        ],
        "data": {
            "available": isinstance(data_summary, Mapping),
            "n_train": _number(_first(data_summary, "n_train")),
            "n_eval": _number(_first(data_summary, "n_eval")),
            "train_indices": _first(data_summary, "train_indices", default=[]),
            "eval_indices": _first(data_summary, "eval_indices", default=[]),
            "source": _first(data_summary, "source"),
            "train_split": _first(data_summary, "train_split"),
            "eval_split": _first(data_summary, "eval_split"),
        },
        "teacher": {"available": bool(teacher_stages), "stages": teacher_stages,
                    "model": next((s["model"] for s in teacher_stages if s["model"]), None)},
        "das": {"available": bool(das_stages), "stages": das_stages},
        "sft": {"available": bool(sft_stages), "stages": sft_stages},
        "eval": {
            "available": bool(eval_models),
            "n_items": _number(_first(metrics, "n_items", "n")) or (eval_models[0]["n"] if eval_models else None),
            "models": eval_models,
            "by_key": by_key,
            "comparisons": comparisons,
            "stage_comparison": stage_comparison,
            "ci_level": ci_level,
            "width_min": min(widths) if widths else None,
            "width_max": max(widths) if widths else None,
            "any_computed_ci": any(m["ci_source"] and m["ci_source"] != "metrics" for m in eval_models),
            "any_holm": any(c["p_holm"] is not None for c in comparisons),
            "has_loglik": any(m["loglik_accuracy"] is not None for m in eval_models),
            "best": max(eval_models, key=lambda m: m["accuracy"] if m["accuracy"] is not None else -1) if eval_models else None,
        },
        "qualitative": {
            "featured": featured,
            "random": random_examples,
            "source": qualitative_source,
            "index": featured_index,
            "note": _first(qualitative, "highlight_missing") if isinstance(qualitative, Mapping) else None,
            # Validation item 49 is the crab question of the course report.
            "is_course_example": bool(featured) and featured.get("index") == EvalConfig().qualitative_index
            and facts["data"].get("eval_split", "validation") == "validation",
        },
        "analyses": __import__("dasd_utils.analyses", fromlist=["report_context"]).report_context(run_dir, figures),
        "figures": {name: figure_entries(paths) for name, paths in figures.items()},
        "significance_level": SIGNIFICANCE_LEVEL,
        "course": {"teacher": GPT_OSS_120B, "student": QWEN3_4B},
    }


# ================================================================================ rendering


def _environment(template_dir: Path):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown output; text from the run is escaped with md / code / fence
    )
    env.filters.update(
        num=fmt_num, g=fmt_g, int=fmt_int, pct=fmt_pct, ci=fmt_ci, pval=fmt_p, sci=fmt_sci,
        duration=fmt_duration, md=md_escape, code=md_code, alt=md_alt, fence=fence,
    )
    return env


def render_markdown(context: Mapping[str, Any], template_dir: str | os.PathLike | None = None) -> str:
    """Return the report's Markdown rendered from ``context`` with ``rapport.md.j2``."""
    template_dir = Path(template_dir) if template_dir else TEMPLATE_DIR
    if not (template_dir / TEMPLATE_NAME).is_file():
        raise FileNotFoundError(f"report template {template_dir / TEMPLATE_NAME} not found (it ships in the repository's report/ folder)")
    text = _environment(template_dir).get_template(TEMPLATE_NAME).render(**context)
    return _collapse_blank_lines(text).strip() + "\n"


def _collapse_blank_lines(text: str) -> str:
    """Return ``text`` with runs of blank lines (left by skipped template blocks) reduced to one,
    except inside fenced code blocks, whose content (model responses) stays verbatim."""
    out: list[str] = []
    fence_open: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if fence_open is None and re.match(r"^`{3,}", stripped):
            fence_open = re.match(r"^`{3,}", stripped).group(0)
        elif fence_open is not None and stripped == fence_open:
            fence_open = None
        elif fence_open is None and not stripped and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)


_IMG_TAG = re.compile(r'<img\b[^>]*?\bsrc="([^"]*)"[^>]*>', re.IGNORECASE)
_URL_ATTR = re.compile(r'\b(href|src)="([^"]*)"', re.IGNORECASE)
_SAFE_URL = re.compile(r"(?i)^(https?://|mailto:|#|data:image/(png|jpeg|gif|webp);base64,)")


def _markdown_renderer():
    """Return a Python-Markdown converter that shows raw HTML as text instead of passing it through."""
    import markdown

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.ESCAPED_CHARS.extend(c for c in "<|" if c not in md.ESCAPED_CHARS)  # "\<" and "\|" from md_escape
    return md


def markdown_to_html(
    markdown_text: str, base_dir: str | os.PathLike, title: str = "Rapport DASD", root: str | os.PathLike | None = None
) -> str:
    """Return a standalone HTML page: the Markdown rendered, figures inlined as data URIs, CSS inline.

    Raw HTML in the Markdown is shown as text, never passed through. Only image files (PNG, JPEG,
    GIF, WebP) that resolve, symlinks followed, to a file inside ``root`` (default: the parent
    of ``base_dir``, i.e. the run directory for ``<run>/report``) are embedded; any other image
    is replaced by a note. Links keep only http(s), mailto and in-page targets.
    """
    base_dir = Path(base_dir)
    root = Path(root) if root is not None else base_dir.parent
    body = _markdown_renderer().convert(markdown_text)

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        if src.startswith("data:"):
            return match.group(0) if _SAFE_URL.match(src) else ""
        candidate = base_dir / unquote(src)
        if not (os.path.lexists(candidate) or candidate.exists()):
            raise FileNotFoundError(f"figure {src} referenced by the report is missing ({candidate})")
        path = inside(candidate, root)
        mime = image_mime(path) if path is not None else None
        if path is None or mime is None:
            log.warning("report: figure %s is not embedded (not an image file inside %s)", src, root)
            return f'<em class="note">[figure non intégrée : {html.escape(Path(src).name)} n\'est pas une image du run]</em>'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return match.group(0).replace(f'src="{match.group(1)}"', f'src="data:{mime};base64,{data}"', 1)

    def safe_url(match: re.Match[str]) -> str:
        # Browsers ignore whitespace and control characters inside a scheme ("java\tscript:").
        url = re.sub(r"[\x00-\x20]", "", html.unescape(match.group(2)))
        relative = not re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", url)
        return match.group(0) if relative or _SAFE_URL.match(url) else f'{match.group(1)}="#"'

    body = _IMG_TAG.sub(inline, body)
    body = _URL_ATTR.sub(safe_url, body)
    return (
        "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _inputs_hash(run_dir: Path, config: Mapping[str, Any] | None, template_dir: Path) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for path in _input_files(run_dir):
        digest.update(str(path.relative_to(run_dir)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for path in (template_dir / TEMPLATE_NAME, Path(__file__)):
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def build_report(
    run_dir: str | os.PathLike,
    config: Mapping[str, Any] | None = None,
    force: bool = False,
    template_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Return the paths of ``report/rapport.md`` and ``rapport.html`` built from the run's files.

    ``config`` (a ``Config.to_dict()`` mapping) replaces ``config.json`` when given. The report is
    rebuilt only when one of its inputs (the run's files, the template, this module) changed,
    unless ``force``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    template_dir = Path(template_dir) if template_dir else TEMPLATE_DIR
    out_dir = run_dir / "report"
    md_path, html_path, manifest_path = out_dir / "rapport.md", out_dir / "rapport.html", out_dir / "manifest.json"
    inputs_hash = _inputs_hash(run_dir, config, template_dir)
    if not force and md_path.is_file() and html_path.is_file() and manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
        if previous.get("inputs_hash") == inputs_hash:
            return {**previous["summary"], "reused": True}

    out_dir.mkdir(parents=True, exist_ok=True)
    context = collect_context(run_dir, config)
    markdown_text = render_markdown(context, template_dir)
    html_text = markdown_to_html(markdown_text, out_dir, title=f"Rapport DASD — {context['run_name']}", root=run_dir)
    for path, text in ((md_path, markdown_text), (html_path, html_text)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    missing = [
        name for name, present in (
            ("config.json", context["run"]["known"]),
            ("data/summary.json", context["data"]["available"]),
            ("teacher/summary.json", context["teacher"]["available"]),
            ("das/summary.json", context["das"]["available"]),
            ("sft/stage*/manifest.json", context["sft"]["available"]),
            ("eval/metrics.json", context["eval"]["available"]),
            ("eval/qualitative.json", context["qualitative"]["source"] == "eval/qualitative.json"),
        ) if not present
    ]
    summary = {
        "markdown": str(md_path),
        "html": str(html_path),
        "profile": context["run"]["profile"],
        "missing_inputs": missing,
        "figures": sum(len(v) for v in context["figures"].values()),
        "problems": context["problems"],
    }
    manifest_path.write_text(json.dumps({"inputs_hash": inputs_hash, "summary": summary}, indent=2) + "\n", encoding="utf-8")
    return {**summary, "reused": False}


@timed_phase("report")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Report phase: build ``<run_dir>/report/rapport.md`` and ``rapport.html``; return their paths."""
    return build_report(cfg.run_dir, config=cfg.to_dict(), force=force)


__all__ = [
    "build_report",
    "collect_context",
    "markdown_to_html",
    "render_markdown",
    "run_phase",
    "wilson_interval",
]
