"""The report phase: collect the run's facts into a context, render ``rapport.md.j2``, write
``report/rapport.md`` and ``rapport.html``; rebuilt only when an input changed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

from .. import layout
from ..analyses import report_context as analyses_report_context
from ..analyses.tables import PROVENANCE_FR
from ..config import GPT_OSS_120B, QWEN3_4B, Config, EvalConfig, settings_drift
from ..hashing import file_sha256
from ..reuse import inputs_key, reusable, save_manifest
from ..summaries import DasSummary, DataSummary, EvalMetrics, SftManifest, TeacherSummary
from ..timing import timed_phase
from . import fields
from .course import report_context as course_report_context
from .figures import caption, classify_figures, loss_curves_fallback, run_figures
from .files import read_json, read_typed
from .format import FILTERS
from .html import markdown_to_html
from .notes import notes_context, notes_fingerprint

PACKAGE_DIR = Path(__file__).resolve().parent
#: The template ships inside the package (dasd_utils/templates/), so an installed package builds the report.
TEMPLATE_DIR = PACKAGE_DIR.parent / "templates"
TEMPLATE_NAME = "rapport.md.j2"
#: The run's files the report reads (globs relative to the run directory): a change rebuilds it.
INPUT_PATTERNS = (
    "config.json", "data/summary.json", "data/eval.jsonl", "teacher/summary.json", "das/summary.json",
    "sft/stage*/manifest.json", "sft/stage*/train_log.jsonl", "eval/metrics.json", "eval/qualitative.json",
    "eval/predictions_*.jsonl", "analyses/results.json", "figures/*.png",
)


def _input_files(run_dir: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in INPUT_PATTERNS:
        files.update(p for p in run_dir.glob(pattern) if p.is_file())
    return sorted(files)


def collect_context(run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return every value the template shows, read from the run directory (and ``config`` if given)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if config is None:
        config = read_json(layout.config_file(run_dir), problems)
    metrics = read_typed(run_dir, layout.metrics_file(run_dir), EvalMetrics, problems)
    facts = fields.config_facts(config if isinstance(config, Mapping) else None, metrics)

    data = read_typed(run_dir, layout.data_summary(run_dir), DataSummary, problems)
    teacher = read_typed(run_dir, layout.teacher_summary(run_dir), TeacherSummary, problems)
    das = read_typed(run_dir, layout.das_summary(run_dir), DasSummary, problems)
    manifests = {k: read_typed(run_dir, layout.sft_manifest(run_dir, k), SftManifest, problems) for k in layout.STAGES}
    qualitative = read_json(layout.qualitative_file(run_dir), problems)

    eval_cfg = facts["eval"]
    model_keys = fields.model_keys(metrics, eval_cfg.get("models"))
    eval_models = [m for m in (fields.eval_model(metrics, k) for k in model_keys) if m]
    widths = [m["ci_width"] for m in eval_models if m["ci_width"] is not None]
    comparisons = fields.eval_comparisons(metrics)

    featured_index = eval_cfg.get("qualitative_index", EvalConfig().qualitative_index)
    featured, random_examples = fields.qualitative_items(qualitative)
    qualitative_source = "eval/qualitative.json" if featured or random_examples else None
    if featured is None:
        featured = fields.qualitative_from_predictions(run_dir, model_keys, featured_index)
        if featured:
            qualitative_source = "eval/predictions_*.jsonl"

    report_dir = layout.report_dir(run_dir)
    figures = classify_figures(run_figures(run_dir, problems))
    if not figures["sft"]:
        fallback = loss_curves_fallback(run_dir, report_dir)
        if fallback is not None:
            figures["sft"].append(fallback)

    def figure_entries(paths: list[Path]) -> list[dict[str, str]]:
        return [
            {"path": quote(os.path.relpath(p, report_dir).replace(os.sep, "/")), "name": p.name,
             "caption": caption(p, facts["profile"])}
            for p in paths
        ]

    teacher_stages = [s for s in (fields.teacher_stage(teacher, k) for k in layout.STAGES) if s]
    das_stages = [s for s in (fields.das_stage(das, k) for k in layout.STAGES) if s]
    sft_stages = [s for s in (fields.sft_stage(manifests[k], k) for k in layout.STAGES) if s]
    stage_comparison = next((c for c in comparisons if {c["a"], c["b"]} == {"stage1", "stage2"}), None)
    phases_present = (
        ("données", data is not None),
        ("génération", bool(teacher_stages)),
        ("DAS", bool(das_stages)),
        ("SFT", bool(sft_stages)),
        ("évaluation", bool(eval_models)),
    )
    analyses = analyses_report_context(run_dir, figures)  # takes its own figures out of the groups
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
            "available": data is not None,
            "n_train": data.n_train if data else None,
            "n_eval": data.n_eval if data else None,
            "train_indices": data.train_indices if data else [],
            "eval_indices": data.eval_indices if data else [],
            "source": data.source if data else None,
            "train_split": data.train_split if data else None,
            "eval_split": data.eval_split if data else None,
        },
        "teacher": {"available": bool(teacher_stages), "stages": teacher_stages,
                    "model": next((s["model"] for s in teacher_stages if s["model"]), None)},
        "das": {"available": bool(das_stages), "stages": das_stages},
        "sft": {"available": bool(sft_stages), "stages": sft_stages},
        "eval": {
            "available": bool(eval_models),
            "n_items": (metrics.n_items if metrics else None) or (eval_models[0]["n"] if eval_models else None),
            "models": eval_models,
            "by_key": {m["key"]: m for m in eval_models},
            "comparisons": comparisons,
            "stage_comparison": stage_comparison,
            "ci_level": fields.DEFAULT_CI_LEVEL,
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
            "note": qualitative.get("highlight_missing") if isinstance(qualitative, Mapping) else None,
            # Validation item 49 is the crab question of the course report.
            "is_course_example": bool(featured) and featured.get("index") == EvalConfig().qualitative_index
            and facts["data"].get("eval_split", "validation") == "validation",
        },
        # What the numbers say, for the sentences that interpret them (section 4.2, conclusion).
        "findings": fields.findings({m["key"]: m for m in eval_models}, comparisons, das_stages, analyses),
        "analyses": analyses,
        # The student's own discussion (report/notes_etudiant.md, or notes_etudiant.md next to the run).
        "notes": notes_context(run_dir),
        "figures": {name: figure_entries(paths) for name, paths in figures.items()},
        "significance_level": fields.SIGNIFICANCE_LEVEL,
        "labels": {"provenance": PROVENANCE_FR},
        # The course report's published accuracies beside this run's (dasd_utils.report.course).
        "course": {
            "teacher": GPT_OSS_120B, "student": QWEN3_4B,
            **course_report_context(metrics.to_dict() if metrics else None, eval_models),
        },
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
    env.filters.update(FILTERS)
    return env


def render_markdown(context: Mapping[str, Any], template_dir: str | os.PathLike | None = None) -> str:
    """Return the report's Markdown rendered from ``context`` with ``rapport.md.j2``."""
    template_dir = Path(template_dir) if template_dir else TEMPLATE_DIR
    if not (template_dir / TEMPLATE_NAME).is_file():
        raise FileNotFoundError(f"report template {template_dir / TEMPLATE_NAME} not found (it ships in the package's templates/ folder)")
    text = _environment(template_dir).get_template(TEMPLATE_NAME).render(**context)
    return _collapse_blank_lines(text).strip() + "\n"


def _collapse_blank_lines(text: str) -> str:
    """Return ``text`` with runs of blank lines (left by skipped template blocks) reduced to one,
    except inside fenced code blocks, whose content (model responses) stays verbatim."""
    import re

    out: list[str] = []
    fence_open: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        opening = re.match(r"^`{3,}", stripped)
        if fence_open is None and opening:
            fence_open = opening.group(0)
        elif fence_open is not None and stripped == fence_open:
            fence_open = None
        elif fence_open is None and not stripped and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)


# ================================================================================ the phase
def report_inputs(run_dir: Path, config: Mapping[str, Any] | None, template_dir: Path) -> dict[str, Any]:
    """Return what the report depends on: the config, the run files it reads, the student's notes, the template and its own code."""
    code = sorted(PACKAGE_DIR.glob("*.py")) + [PACKAGE_DIR.parent / "summaries.py"]
    return {
        "config": config,
        "files": {p.relative_to(run_dir).as_posix(): file_sha256(p) for p in _input_files(run_dir)},
        "notes": notes_fingerprint(run_dir),
        # rapport.md.j2 and the templates it includes (analyses.md.j2)
        "template": {p.name: file_sha256(p) for p in sorted(template_dir.glob("*.j2"))} or None,
        "code": {p.name: file_sha256(p) for p in code if p.is_file()},
    }


def build_report(
    run_dir: str | os.PathLike,
    config: Mapping[str, Any] | None = None,
    force: bool = False,
    template_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Return the paths of ``report/rapport.md`` and ``rapport.html`` built from the run's files.

    ``config`` (a ``Config.to_dict()`` mapping) replaces ``config.json`` when given. The report is
    rebuilt only when one of its inputs (the run's files, the template, the report's code)
    changed, unless ``force``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    template_dir = Path(template_dir) if template_dir else TEMPLATE_DIR
    out_dir = layout.report_dir(run_dir)
    md_path, html_path, manifest_path = out_dir / "rapport.md", out_dir / "rapport.html", out_dir / "manifest.json"
    key = inputs_key(report_inputs(run_dir, config, template_dir))
    previous = reusable(manifest_path, key, outputs=(md_path, html_path), force=force)
    if previous is not None and isinstance(previous.get("summary"), dict):
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
    save_manifest(manifest_path, key, summary=summary)
    return {**summary, "reused": False}


@timed_phase("report")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Report phase: build ``<run_dir>/report/rapport.md`` and ``rapport.html``; return their paths."""
    return build_report(cfg.run_dir, config=cfg.to_dict(), force=force)
