"""Phase ``analyses``: does DAS help? The DASD paper's analyses on this run (notebook 08).

1. **DAS vs random sampling at equal budget** (paper, Table 3): from the run's stage-1 adapter,
   stage 2 is trained on (a) the DAS-kept high-temperature responses (the run's own stage 2,
   reused), (b) random subsets of the same size drawn from the same quality-kept pool
   (``analyses.random_seeds``) and optionally (c) the whole pool (``analyses.full_pool``), with
   the same recipe; every variant answers the same evaluation items. One planned test answers the
   question, DAS against the random subsets pooled over their seeds; the mixed policy has its own
   planned test against its control; every other comparison is descriptive (:mod:`.compare`).
2. **Sentence provenance** of the distilled model's answers (:mod:`.provenance`).
3. **Mixed-policy distillation** (paper, sections 5 and 6.4.2; ``analyses.mixed_policy``): the
   teacher continues the distilled student's diverging answers, and one more training from the
   stage-2 adapter uses them with the off-policy examples (:mod:`.mixed`); evaluated and compared
   with DAS like the other variants.

Outputs (``runs/<run>/analyses/``): one folder per variant (:mod:`.variants`),
``results.json``, ``provenance.jsonl``, ``mixed_policy/``, ``manifest.json``; figures
``figures/analyses_das_vs_random.png`` and ``figures/analyses_provenance.png``. A re-run whose
inputs (pool, DAS set, adapters, evaluation items, settings, seeds) did not change reuses
``results.json`` without loading a model (:mod:`dasd_utils.reuse`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import layout, reuse
from ..config import Config, phase_settings
from ..data import load_run_questions, write_jsonl
from ..hashing import adapter_sha256, file_sha256
from ..jsonl import read_json, write_json_atomic
from ..secrets import redact_url
from ..timing import timed_phase
from . import compare, mixed, paths, provenance, sampling, tables, variants
from .compare import comparison_table, mixed_verdict, verdict
from .paths import analyses_dir, comparison_figure, manifest_file, provenance_figure, results_file
from .sampling import das_kept, pool_records, random_subset, set_statistics
from .tables import (cost_table, larger_plan, mixed_policy_table, plan_costs, provenance_table, results_table,
                     show_mixed_example, statistics_table, tests_table, training_table)

log = logging.getLogger(__name__)

#: Bumped when the analyses' results change meaning, so that older results are recomputed.
FORMAT_VERSION = 4  # 4: separate statistical families, provenance without the gold hint, harmony route


def build_variants(cfg: Config) -> list[variants.Variant]:
    """Return the variants to compare: DAS, one random subset per seed, and the whole pool when asked."""
    pool = pool_records(cfg.run_dir)
    kept = das_kept(pool)
    if not kept:
        raise ValueError("DAS kept no stage-2 example: there is nothing to compare (lower das.keep_ratio_threshold)")
    out = [variants.Variant("das", kept, main_run=variants.main_stage2_current(cfg))]
    for seed in cfg.analyses.random_seeds:
        out.append(variants.Variant(f"random_s{seed}", random_subset(pool, len(kept), seed), seed=seed))
    if cfg.analyses.full_pool:
        out.append(variants.Variant("full", [dict(r) for r in pool]))
    return out


def phase_inputs(cfg: Config) -> dict[str, Any]:
    """Return what the analyses' results depend on (hashed into the manifest's key)."""
    def sha(path: Path) -> str | None:
        return file_sha256(path) if path.is_file() else None

    stages = {s: layout.sft_stage_dir(cfg.run_dir, s) for s in (1, 2)}
    return {
        "format_version": FORMAT_VERSION,
        "pool_sha256": sha(layout.das_records(cfg.run_dir, 2)),
        "das_set_sha256": sha(layout.sft_examples(cfg.run_dir, 2)),
        "eval_sha256": sha(layout.questions_file(cfg.run_dir, "eval")),
        "adapters": {f"stage{s}": adapter_sha256(p) if (p / "adapter_config.json").is_file() else None
                     for s, p in stages.items()},
        "settings": phase_settings(cfg, "analyses"),
        # Everything that decides the teacher's answers and the route to it (P_T, continuations): the
        # endpoint (without credentials) and the extra body (reasoning_effort changes gpt-oss's prompt).
        "teacher": {"backend": cfg.teacher.backend, "model": cfg.teacher.model, "base_url": redact_url(cfg.teacher.base_url),
                    "extra_body": cfg.teacher.extra_body, "tokenizer": cfg.teacher.tokenizer,
                    "reasoning_source": cfg.teacher.reasoning_source, "local_few_shot": cfg.teacher.local_few_shot,
                    "local_gold_hint": cfg.teacher.local_gold_hint, "temperature_stage2": cfg.teacher.temperature_stage2,
                    "max_tokens": cfg.teacher.max_tokens, "seed": cfg.teacher.seed},
        "teacher_stage2_sha256": sha(layout.teacher_records(cfg.run_dir, 2)),
        "seed": cfg.seed,
    }


def teacher_capabilities(cfg: Config) -> dict[str, str | None]:
    """Return, per analysis that needs the teacher, why it cannot run (None: it can), asked before any GPU work.

    Provenance needs the teacher's probabilities of given text, mixed-policy distillation a
    teacher that continues an answer: one request each (:func:`provenance.check_teacher`,
    :func:`mixed.check_teacher`), so that a provider that cannot never costs a training, an
    evaluation or the distilled student's answers first.
    """
    out: dict[str, str | None] = {"provenance": None, "mixed_policy": None}
    if cfg.analyses.provenance:
        try:
            provenance.check_teacher(cfg)
        except provenance.ProvenanceUnavailable as exc:
            log.warning("provenance analysis stopped: %s", exc)
            out["provenance"] = str(exc)
    if cfg.analyses.mixed_policy:
        rows = {r["id"]: r for r in load_run_questions(cfg, "train")}
        try:
            mixed.check_teacher(cfg, pool_records(cfg.run_dir), rows)
        except mixed.MixedPolicyUnavailable as exc:
            log.warning("mixed-policy distillation stopped: %s", exc)
            out["mixed_policy"] = str(exc)
    return out


def _provenance(cfg: Config, das_variant, predictions, rows, unavailable: str | None = None) -> dict[str, Any]:
    if not cfg.analyses.provenance:
        return {"available": False, "reason": "analyses.provenance=false"}
    if unavailable:
        return {"available": False, "reason": unavailable}
    try:
        records = provenance.score_answers(cfg, predictions, rows, str(variants.adapter_dir(cfg, das_variant)))
    except provenance.ProvenanceUnavailable as exc:
        log.warning("provenance analysis stopped: %s", exc)
        return {"available": False, "reason": str(exc)}
    write_jsonl(paths.provenance_file(cfg.run_dir), records)
    summary = provenance.summarize(records)
    figure = provenance.plot(summary, provenance_figure(cfg.run_dir), cfg.profile) if summary["sentences"] else None
    return {"available": True, **summary, "route": provenance.route_info(cfg), "figure": str(figure) if figure else None}


def _mixed_policy(cfg: Config, das_variant: variants.Variant, force: bool,
                  unavailable: str | None = None) -> tuple[list[variants.Variant], dict[str, Any]]:
    """Return the mixed-policy variants to train (none when off or impossible) and the mixed-policy summary."""
    if not cfg.analyses.mixed_policy:
        return [], {"available": False, "reason": "analyses.mixed_policy=false"}
    if unavailable:
        return [], {"available": False, "reason": unavailable}
    rows = {r["id"]: r for r in load_run_questions(cfg, "train")}
    parent = variants.adapter_dir(cfg, das_variant)
    try:
        items, summary = mixed.build(cfg, pool_records(cfg.run_dir), rows, parent, force=force)
    except mixed.MixedPolicyUnavailable as exc:
        log.warning("mixed-policy distillation stopped: %s", exc)
        return [], {"available": False, "reason": str(exc)}
    if not summary["used"]:
        return [], dict(summary, available=False,
                        reason="no continued answer passed the quality filter: there is no mixed-policy example to train on")
    off_policy = mixed.off_policy_examples(cfg.run_dir)
    training_sets = [("mixed", mixed.training_examples(cfg, items, rows, off_policy))]
    if cfg.analyses.mixed_masked:
        training_sets.append(("mixed_masked", mixed.training_examples(cfg, items, rows, off_policy, masked=True)))
    if cfg.analyses.mixed_control:  # the same extra training without the mixed-policy answers
        training_sets.append((compare.CONTROL, mixed.training_examples(cfg, [], rows, off_policy)))
    return [variants.Variant(name, [{"question_id": e["question_id"], "content": e["messages"][-1]["content"],
                                     "source": e["source"]} for e in examples],
                             examples=examples, parent=parent, overrides={"sft.epochs": cfg.analyses.mixed_epochs})
            for name, examples in training_sets], summary


@timed_phase("analyses")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Train and evaluate the stage-2 variants, compare them, score provenance; return ``results.json``'s content."""
    inputs = phase_inputs(cfg)
    key = reuse.inputs_key(inputs)
    saved = reuse.reusable(manifest_file(cfg.run_dir), key, [results_file(cfg.run_dir), comparison_figure(cfg.run_dir)], force)
    if saved is not None:
        results = read_json(results_file(cfg.run_dir))
        if isinstance(results, dict):
            return dict(results, reused=True)
    rows = load_run_questions(cfg, "eval")
    if not rows:
        raise ValueError(f"{layout.questions_file(cfg.run_dir, 'eval')} holds no question")
    todo = build_variants(cfg)
    capabilities = teacher_capabilities(cfg)  # before any training: a teacher that cannot costs nothing
    for v in todo:
        variants.train(cfg, v, force=force)
    mixed_variants, mixed_summary = _mixed_policy(cfg, todo[0], force, capabilities["mixed_policy"])
    for v in mixed_variants:
        variants.train(cfg, v, force=force)
    todo += mixed_variants
    evaluated = variants.evaluate(cfg, todo, rows, force=force)
    predictions = {name: r["predictions"] for name, r in evaluated.items()}
    table = comparison_table(predictions)  # the planned tests in table["families"], the rest descriptive
    figure = compare.plot_comparison(table, comparison_figure(cfg.run_dir), cfg.profile)
    results = {
        "profile": cfg.profile,
        "n_items": len(rows),
        "variants": [{
            "name": v.name, "label": compare.label(v.name), "seed": v.seed, "main_run_adapter": v.main_run,
            "adapter": str(variants.adapter_dir(cfg, v).relative_to(cfg.run_dir)),
            "training_set": set_statistics(v.records),
            "steps": v.manifest.get("steps"), "final_loss": v.manifest.get("final_loss"),
            # Did it learn? Steps at a non-zero learning rate and how far the adapter moved from its parent.
            "learning_steps": v.manifest.get("learning_steps"), "adapter_change": v.manifest.get("adapter_change"),
            "retrained": not v.manifest.get("reused", False),
            "generated": evaluated[v.name]["generated"],
        } for v in todo],
        **table,
        "verdict": verdict(table, cfg.profile),
        "mixed_policy": mixed_summary,
        "mixed_verdict": mixed_verdict(table, cfg.profile) if mixed_variants else None,
        "mixed_vs_control": table["families"].get("mixed_vs_control"),
        "figure": str(figure),
        "provenance": _provenance(cfg, todo[0], predictions["das"], rows, capabilities["provenance"]),
        "settings": inputs["settings"],
    }
    write_json_atomic(results_file(cfg.run_dir), results)
    reuse.save_manifest(manifest_file(cfg.run_dir), key, inputs=inputs)
    return dict(results, reused=False)


def report_context(run_dir, figures: dict[str, list[Path]] | None = None) -> dict[str, Any]:
    """Return the report's ``analyses`` section values; ``available`` is False when the phase was not run.

    ``figures``: the report's figure groups (section -> paths); this phase's own figures are taken
    out of them in place, since this section shows them with their captions.
    """
    for paths_of_section in (figures or {}).values():
        paths_of_section[:] = [p for p in paths_of_section if not Path(p).name.startswith("analyses_")]
    results = read_json(results_file(run_dir))
    if not isinstance(results, dict) or "models" not in results:
        return {"available": False}
    run_dir = Path(run_dir)

    def rel(path: Path) -> str | None:
        return Path("..", path.relative_to(run_dir)).as_posix() if path.is_file() else None

    comparisons = {c["b"]: c for c in results.get("comparisons", [])}
    stats = {v["name"]: v["training_set"] for v in results.get("variants", [])}
    # labels in this version's words (as the verdict), not those stored when the phase ran
    rows = [dict(m, label=compare.label(m["name"]), comparison=comparisons.get(m["name"]), training_set=stats.get(m["name"], {}))
            for m in results["models"]]
    prov = results.get("provenance") or {}
    return {
        "available": True,
        "profile": results.get("profile"),
        "n_items": results.get("n_items"),
        "rows": rows,
        "families": results.get("families") or {},
        "verdict": verdict(results, results.get("profile") or ""),  # from the stored tests, in this version's words
        "mixed_policy": results.get("mixed_policy") or {"available": False},
        "mixed_verdict": mixed_verdict(results, results.get("profile") or ""),
        "figure": rel(comparison_figure(run_dir)),
        "provenance": dict(prov, figure=rel(provenance_figure(run_dir)) if prov.get("available") else None),
    }


__all__ = ["FORMAT_VERSION", "build_variants", "compare", "comparison_table", "cost_table", "larger_plan", "mixed",
           "mixed_policy_table", "plan_costs",
           "mixed_verdict", "paths", "phase_inputs", "provenance", "provenance_table", "report_context", "results_table",
           "run_phase", "sampling", "show_mixed_example", "statistics_table", "tables", "teacher_capabilities",
           "tests_table", "training_table", "variants", "verdict"]
