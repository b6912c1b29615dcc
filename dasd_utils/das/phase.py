"""The DAS phase: both stages scored or reused, then records, SFT datasets, summary and figures.

Reuse (:mod:`dasd_utils.reuse`): ``das/manifest.json`` keeps, per stage, the key of what its
scores depend on (:func:`scoring_inputs`), and one key over those and the classification
settings. An unchanged stage is read back instead of scored; changed thresholds only reclassify
the stored probabilities; when nothing changed, the saved summary is returned as is.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .. import layout
from ..align import UNSCORABLE_REASONS
from ..devices import free_memory
from ..config import Config, phase_settings
from ..data import read_jsonl, write_jsonl
from ..hashing import adapter_sha256, file_sha256
from ..jsonl import read_json
from ..layout import STAGES
from ..reuse import inputs_key, reusable, save_manifest
from ..summaries import DasSummary, write_summary
from ..timing import timed_phase
from . import stage as _stage  # looked up at call time: tests replace _stage.load_scoring_model
from .example import reclassify
from .rules import PROVENANCE_TYPES, SENTENCE_TYPES
from .stage import das_dir, process_state, score_stage, target_rejected, teacher_path

#: Bump when the scoring of a record changes, so that old outputs are recomputed.
DAS_FORMAT_VERSION = 3  # 2: sentence rules of issue 10 item 5 (+ ratio without final); 3: located teacher tokens, reasoning_source


# --------------------------------------------------------------------------- outputs (paths: dasd_utils.layout)
def das_path(cfg: Config, stage: int) -> Path:
    return layout.das_records(cfg.run_dir, stage)


def sft_path(cfg: Config, stage: int) -> Path:
    """The SFT-ready examples of a stage: the same file as :func:`dasd_utils.sft.sft_data_path`."""
    return layout.sft_examples(cfg.run_dir, stage)


def sft_rows(records: Sequence[dict[str, Any]], stage: int, cfg: Config) -> list[dict[str, Any]]:
    """Return the SFT-ready examples of a stage (docs/artifacts.md, "SFT-ready datasets")."""
    das_filter = stage == 2 or cfg.das.filter_stage1
    rows = []
    for rec in records:
        if das_filter and not rec.get("keep"):
            continue
        if not rec.get("content"):  # reasoning_source=analysis and the record has no analysis text
            continue
        if target_rejected(rec):  # reasoning_source=analysis and the quality filter rejected that text
            continue
        rows.append({
            "question_id": rec["question_id"],
            "stage": stage,
            "messages": list(rec["messages"]) + [{"role": "assistant", "content": rec["content"]}],
        })
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize_stage(records: Sequence[dict[str, Any]], counts: dict[str, int], stage: int, cfg: Config) -> dict[str, Any]:
    """Return the statistics of one stage for ``das/summary.json``."""
    scored = [r for r in records if r.get("scorable")]
    target = Counter(r["target_quality"]["reason"] for r in records if target_rejected(r))
    unscorable = Counter(r["unscorable_reason"] for r in records if not r.get("scorable") and not target_rejected(r))
    ratios = [r["teacher_sentence_ratio"] for r in scored]
    ratios_wo_final = [r["teacher_sentence_ratio_without_final"] for r in scored
                       if r.get("teacher_sentence_ratio_without_final") is not None]
    sentences = [s for r in scored for s in r["sentences"]]
    kept = sum(bool(r["keep"]) for r in scored)
    out: dict[str, Any] = {
        **counts,
        "scored": len(scored),
        "unscorable": {reason: unscorable.get(reason, 0) for reason in UNSCORABLE_REASONS},
        "n_unscorable": sum(unscorable.values()),
        "kept": kept,
        "rejected": len(scored) - kept,
        "keep_rate": kept / len(scored) if scored else None,
        "teacher_sentence_ratio": {
            "mean": _mean(ratios), "median": _median(ratios),
            "min": min(ratios) if ratios else None, "max": max(ratios) if ratios else None,
        },
        "teacher_sentence_ratio_without_final": {"mean": _mean(ratios_wo_final), "median": _median(ratios_wo_final)},
        "sentences": len(sentences),
        "sentence_types": {t: sum(s["type"] == t for s in sentences) for t in SENTENCE_TYPES},
        "mean_sentences_per_example": len(sentences) / len(scored) if scored else None,
        "mean_p_teacher": _mean([s["p_teacher"] for s in sentences]),
        "mean_p_student": _mean([s["p_student"] for s in sentences]),
        "teacher_alignment": dict(Counter(r["teacher_alignment"] for r in scored)),
        "merged_sentences": sum(r.get("n_merged_sentences", 0) for r in scored),
        "sft_examples": len(sft_rows(records, stage, cfg)),
        # reasoning_source=analysis: the quality filter run on the analysis target (not on content), per reason
        **({"target_quality_rejected": dict(sorted(target.items()))} if cfg.teacher.reasoning_source == "analysis" else {}),
        "sft_das_filtered": stage == 2 or cfg.das.filter_stage1,
    }
    if sentences and "p_distilled" in sentences[0]:
        out["mean_p_distilled"] = _mean([s["p_distilled"] for s in sentences])
        out["provenance"] = {t: sum(s.get("provenance") == t for s in sentences) for t in PROVENANCE_TYPES}
    return out


def scoring_inputs(cfg: Config, stage: int) -> dict[str, Any]:
    """Return what a stage's scores depend on (hashed to decide whether outputs can be reused)."""
    train = layout.questions_file(cfg.run_dir, "train")
    return {
        "version": DAS_FORMAT_VERSION,
        "stage": stage,
        "teacher_records_sha256": file_sha256(teacher_path(cfg, stage)),
        "questions_sha256": file_sha256(train) if train.is_file() else None,
        "system_prompt": cfg.system_prompt,
        "student_model": cfg.student.model,
        "student_dtype": cfg.student.dtype,
        "segmenter": cfg.das.segmenter,
        "reasoning_source": cfg.teacher.reasoning_source,
        # The analysis target's quality verdict depends on these (content-source keys unchanged).
        **({"target_quality": {"quality": flat_quality(cfg), "max_context": cfg.student.max_context,
                               "max_new_tokens": cfg.eval.max_new_tokens}}
           if cfg.teacher.reasoning_source == "analysis" else {}),
        "distilled_adapter": cfg.das.distilled_adapter,
        "distilled_adapter_sha256": adapter_sha256(cfg.das.distilled_adapter) if cfg.das.distilled_adapter else None,
    }


def flat_quality(cfg: Config) -> dict[str, Any]:
    """Return the quality filter's settings as a plain mapping (for a reuse key)."""
    from dataclasses import asdict

    return asdict(cfg.quality)


def _classification_inputs(cfg: Config) -> dict[str, Any]:
    d = cfg.das
    return {
        "teacher_prob_threshold": d.teacher_prob_threshold,
        "divergence_threshold": d.divergence_threshold,
        "keep_ratio_threshold": d.keep_ratio_threshold,
        "filter_stage1": d.filter_stage1,
        "figures": d.figures,
        "profile": cfg.profile,
    }


def load_das_records(cfg: Config, stage: int) -> list[dict[str, Any]]:
    """Return the DAS records of a stage written by this phase."""
    path = das_path(cfg, stage)
    if not path.is_file():
        raise layout.MissingPhaseOutput(path, "das")
    return read_jsonl(path)


def make_figures(cfg: Config, records_by_stage: dict[int, list[dict[str, Any]]]) -> list[str]:
    """Write the DAS figures into ``<run>/figures`` and return their paths."""
    from ..plots import das as das_plots

    return [str(p) for p in das_plots.all_figures(records_by_stage, cfg)]


@timed_phase("das")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """DAS phase: score both stages' teacher responses, write records, SFT datasets, summary, figures."""
    start = time.perf_counter()
    state = process_state(cfg)
    manifest_file = layout.das_manifest(cfg.run_dir)
    for stage in STAGES:
        if not teacher_path(cfg, stage).is_file():
            raise layout.MissingPhaseOutput(teacher_path(cfg, stage), "generate")
    inputs = {stage: scoring_inputs(cfg, stage) for stage in STAGES}
    keys = {stage: inputs_key(inputs[stage]) for stage in STAGES}
    full_key = inputs_key({"scoring": keys, "classification": _classification_inputs(cfg)})
    summary_file = layout.das_summary(cfg.run_dir)
    outputs = [summary_file, *(das_path(cfg, s) for s in STAGES), *(sft_path(cfg, s) for s in STAGES)]
    if reusable(manifest_file, full_key, outputs, force) is not None:
        summary = read_json(summary_file)
        # Figure paths are stored as written (relative to the CLI's working directory); a notebook
        # runs from notebooks/, so look them up by name in the run's figures folder.
        if isinstance(summary, dict) and all(
            layout.figure(cfg.run_dir, Path(p).name).is_file() for p in summary.get("figures", [])
        ):
            summary["reused"] = True
            return summary
    # A stage whose scoring inputs did not change is read back and only reclassified.
    manifest = {} if force else read_json(manifest_file, {})
    saved_stages = manifest.get("stages", {}) if isinstance(manifest, dict) else {}
    reuse = {
        stage: not force
        and saved_stages.get(str(stage), {}).get("scoring_key") == keys[stage]
        and das_path(cfg, stage).is_file()
        for stage in STAGES
    }

    model = tokenizer = None
    records_by_stage: dict[int, list[dict[str, Any]] | None] = {}
    counts_by_stage: dict[int, dict[str, int]] = {}
    try:
        for stage in STAGES:
            if reuse[stage]:
                records = load_das_records(cfg, stage)
                for rec in records:
                    reclassify(rec, cfg.das)
                records_by_stage[stage] = records
                counts_by_stage[stage] = saved_stages[str(stage)]["counts"]
                continue
            if model is None:
                device = None
                if state.num_processes > 1 and cfg.student.device == "auto":
                    device = str(state.device)
                model, tokenizer = _stage.load_scoring_model(cfg, device=device, distilled_adapter=cfg.das.distilled_adapter)
            records, counts = score_stage(cfg, stage, model=model, tokenizer=tokenizer, state=state)
            records_by_stage[stage] = records
            counts_by_stage[stage] = counts
    finally:
        if model is not None:
            del model
            free_memory()

    if not state.is_main_process:
        return {"process_index": state.process_index, "num_processes": state.num_processes}

    stage_summaries = {}
    for stage in STAGES:
        records = records_by_stage[stage] or []
        write_jsonl(das_path(cfg, stage), records)
        write_jsonl(sft_path(cfg, stage), sft_rows(records, stage, cfg))
        stage_summaries[str(stage)] = summarize_stage(records, counts_by_stage[stage], stage, cfg)
    figures = make_figures(cfg, {s: records_by_stage[s] or [] for s in STAGES}) if cfg.das.figures else []
    summary = {
        "profile": cfg.profile,
        "stand_in": cfg.profile == "demo",
        "student": cfg.student.model,
        "distilled_adapter": cfg.das.distilled_adapter,
        "thresholds": {
            "teacher_prob": cfg.das.teacher_prob_threshold,
            "divergence": cfg.das.divergence_threshold,
            "keep_ratio": cfg.das.keep_ratio_threshold,
        },
        "segmenter": cfg.das.segmenter,
        # Where P_T and the SFT target come from (teacher.reasoning_source): the answer's <reasoning>
        # block (content) or gpt-oss's analysis channel (analysis).
        "reasoning_source": cfg.teacher.reasoning_source,
        "num_processes": state.num_processes,
        "rescored_stages": [s for s in STAGES if not reuse[s]],
        "reused": False,
        "wall_time_s": round(time.perf_counter() - start, 2),
        "stages": stage_summaries,
        "files": {
            **{f"das_stage{s}": str(das_path(cfg, s)) for s in STAGES},
            **{f"sft_stage{s}": str(sft_path(cfg, s)) for s in STAGES},
        },
        "figures": figures,
        "settings": phase_settings(cfg, "das"),  # what this phase used (the report checks config.json against it)
    }
    write_summary(summary_file, DasSummary.from_dict(summary))
    save_manifest(manifest_file, full_key, stages={
        str(s): {"scoring_key": keys[s], "inputs": inputs[s], "counts": counts_by_stage[s]} for s in STAGES
    })
    return summary


def provenance_analysis(cfg: Config, distilled_adapter: str, stage: int = 2, force: bool = False) -> dict[str, Any]:
    """Return the four-way provenance counts of a stage's sentences under a distilled student.

    Scores the stage's teacher responses with the student and with ``distilled_adapter`` (a PEFT
    adapter on the student, e.g. ``runs/<run>/sft/stage2``) and writes the records, with
    ``p_distilled`` and ``provenance`` per sentence, to ``das/provenance_stage{stage}.jsonl``
    (the phase's own ``das/stage{stage}.jsonl`` is left untouched). Reuses that file when the
    teacher records, the student and the adapter did not change.
    """
    out = das_dir(cfg) / f"provenance_stage{stage}.jsonl"
    meta = das_dir(cfg) / f"provenance_stage{stage}.json"
    key = inputs_key({**scoring_inputs(cfg, stage), "distilled_adapter": distilled_adapter,
                      "distilled_adapter_sha256": adapter_sha256(distilled_adapter)})
    saved = reusable(meta, key, [out], force)
    if saved is not None and "counts" in saved:
        records, counts = read_jsonl(out), saved["counts"]
    else:
        records, counts = score_stage(cfg, stage, distilled_adapter=distilled_adapter)
        if records is None:  # a non-main process under accelerate
            return {}
        write_jsonl(out, records)
        save_manifest(meta, key, counts=counts, distilled_adapter=distilled_adapter)
    for rec in records:
        reclassify(rec, cfg.das)
    summary = summarize_stage(records, counts, stage, cfg)
    summary["file"] = str(out)
    return summary


__all__ = [
    "DAS_FORMAT_VERSION",
    "das_path",
    "load_das_records",
    "make_figures",
    "provenance_analysis",
    "run_phase",
    "scoring_inputs",
    "sft_path",
    "sft_rows",
    "summarize_stage",
]
