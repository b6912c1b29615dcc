"""The evaluation phase: each model's predictions with their per-item cache, then metrics, qualitative examples and figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import layout
from ..config import Config, phase_settings
from ..data import load_run_questions, read_jsonl, write_jsonl
from ..jsonl import write_json_atomic
from ..prompts import LETTERS
from ..reuse import inputs_key
from ..summaries import EvalMetrics, write_summary
from ..timing import timed_phase
from .generation import EvaluationError, progress_bar
from .hf_backend import HFBackend
from .loglik import LOGLIK_METHOD, LoglikUnsupported, loglik_context, loglik_record
from .metrics import compute_metrics, prediction_record, qualitative_examples
from .models import (
    display_path,
    is_adapter_dir,
    adapter_fingerprint,
    eval_dir,
    loglik_path,
    predictions_path,
    resolve_eval_model,
    resolve_eval_models,
)
from .openai_backend import OpenAIBackend

log = logging.getLogger(__name__)


def make_backend(cfg: Config):
    """Return the backend named by ``eval.backend`` (nothing is loaded until it is needed)."""
    if cfg.eval.backend == "hf":
        return HFBackend(cfg)
    if cfg.eval.backend == "openai":
        return OpenAIBackend(cfg)
    raise ValueError(f"eval.backend must be 'hf' or 'openai', got {cfg.eval.backend!r}")


def _read_cache(path: Path, force: bool) -> dict[str, dict[str, Any]]:
    """Return the records of a predictions / log-likelihood file by ``input_hash`` (empty when forced or unreadable)."""
    if force or not path.is_file():
        return {}
    try:
        records = read_jsonl(path)
    except Exception as exc:  # a damaged cache is recomputed, and said so
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
        return {}
    return {r["input_hash"]: r for r in records if isinstance(r, dict) and r.get("input_hash")}


def _loglik_records(
    cfg: Config, spec, backend, rows: list[dict[str, Any]], model_key: dict[str, Any], force: bool
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Return ``(records, None)`` for the log-likelihood metric, cached per item like predictions, or ``(None, why)``."""
    ll_key = {**model_key, "method": LOGLIK_METHOD}
    ll_hashes = [inputs_key({**ll_key, "context": loglik_context(row)}) for row in rows]
    ll_file = loglik_path(cfg, spec.name)
    ll_cache = _read_cache(ll_file, force)
    ll_missing = [i for i, h in enumerate(ll_hashes) if h not in ll_cache]
    scores: dict[int, list[float]] = {}
    if ll_missing:
        try:
            scores = dict(zip(ll_missing, backend.loglik(spec, [rows[i] for i in ll_missing])))
        except LoglikUnsupported as exc:
            log.warning("%s: log-likelihood accuracy unavailable: %s", spec.name, exc)
            return None, str(exc)
    records = []
    for i, row in enumerate(rows):
        values = scores[i] if i in scores else [ll_cache[ll_hashes[i]]["logprobs"][letter] for letter in LETTERS]
        records.append(loglik_record(row, values, model=spec.name, input_hash=ll_hashes[i]))
    write_jsonl(ll_file, records)
    return records, None


def evaluate_model(cfg: Config, name: str, backend=None, force: bool = False, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return ``{"predictions", "loglik", "loglik_error", "generated", "reused"}`` for one model, writing its files.

    ``name`` is an entry of ``eval.models``. Predictions whose input hash (model and adapter
    fingerprints, rendered prompt, generation settings) is already in ``predictions_<name>.jsonl``
    are reused; the others are generated. ``extracted``/``correct``/``format_ok`` are always
    recomputed from the stored response, so an improved extractor applies to cached responses.
    """
    spec = resolve_eval_model(cfg, name)
    rows = rows if rows is not None else load_run_questions(cfg, "eval")
    backend = backend or make_backend(cfg)
    fingerprint = None
    if spec.adapter is not None:
        if is_adapter_dir(spec.adapter):
            fingerprint = adapter_fingerprint(spec.adapter)
        else:
            log.warning(
                "%s: adapter %s is not on this machine (served by %s): cached predictions cannot tell a "
                "retrained adapter from the old one; use force=True after retraining",
                spec.name, spec.adapter, cfg.eval.base_url,
            )
    model_key = {
        "settings": backend.settings(),
        "adapter": fingerprint,
        "served": backend.served_name(spec) if isinstance(backend, OpenAIBackend) else None,
    }
    gen_key = {**model_key, "max_new_tokens": cfg.eval.max_new_tokens, "decoding": "greedy"}
    prompts = [backend.prompt_key(row) for row in rows]
    hashes = [inputs_key({**gen_key, "prompt": p}) for p in prompts]

    # ---- generation, saved after every chunk so that an interrupted run loses one batch at most
    pred_file = predictions_path(cfg, spec.name)
    cache = _read_cache(pred_file, force)
    missing = [i for i, h in enumerate(hashes) if h not in cache]
    generated: dict[int, dict[str, Any]] = {}

    def save() -> list[dict[str, Any]]:
        records = []
        for i, row in enumerate(rows):
            out = generated.get(i) or cache.get(hashes[i])
            if out is None:
                continue
            records.append(prediction_record(
                row, out.get("response"),
                n_new_tokens=out.get("n_new_tokens"), finish_reason=out.get("finish_reason"),
                model=spec.name, input_hash=hashes[i],
            ))
        write_jsonl(pred_file, records)
        return records

    failed, first_error = 0, None
    if missing:
        log.info("%s: generating %d of %d answers (%d cached)", spec.name, len(missing), len(rows), len(rows) - len(missing))
        # Longest prompts first: batches of similar lengths, and an out-of-memory error shows up at once.
        order = sorted(missing, key=lambda i: -backend.prompt_length(prompts[i]))
        chunk = backend.chunk_size()
        bar = progress_bar(len(order), f"génération {spec.name}")
        try:
            for start in range(0, len(order), chunk):
                part = order[start : start + chunk]
                try:
                    outs = backend.generate(spec, [rows[i] for i in part], [prompts[i] for i in part], progress=False)
                    generated.update(zip(part, outs))
                except EvaluationError as exc:
                    generated.update({part[k]: out for k, out in exc.partial.items()})
                    failed += len(part) - len(exc.partial)
                    first_error = first_error or exc.first_error
                save()
                bar.update(len(part))
        finally:
            bar.close()
    predictions = save()
    if failed:
        raise EvaluationError(
            f"{spec.name}: {failed} of {len(missing)} requests failed; first error: {first_error}. "
            f"The {len(predictions)} answers obtained are saved in {pred_file}; re-run to retry the rest."
        )

    loglik, loglik_error = _loglik_records(cfg, spec, backend, rows, model_key, force) if cfg.eval.loglik else (None, None)
    return {
        "name": spec.name,
        "adapter": display_path(cfg, spec.adapter),
        "adapter_fingerprint": model_key["adapter"],
        "predictions": predictions,
        "loglik": loglik,
        "loglik_error": loglik_error,
        "generated": len(generated),
        "reused": len(rows) - len(generated),
    }


@timed_phase("evaluate")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Evaluate every model of ``eval.models``; write predictions, metrics, qualitative examples and figures; return the metrics.

    All adapters are checked before any model is loaded. Cached predictions are reused unless
    ``force``. The returned mapping is ``metrics.json`` plus ``outputs`` (paths written) and
    ``generated`` / ``reused`` counts per model.
    """
    from ..plots import evaluation as eval_plots

    specs = resolve_eval_models(cfg)
    rows = load_run_questions(cfg, "eval")
    if not rows:
        raise ValueError(f"{layout.questions_file(cfg.run_dir, 'eval')} holds no question")
    backend = make_backend(cfg)
    results = {}
    for name, spec in zip(cfg.eval.models, specs):
        results[spec.name] = evaluate_model(cfg, name, backend=backend, force=force, rows=rows)
    metrics = compute_metrics(cfg, results, rows)
    metrics["settings"] = phase_settings(cfg, "evaluate")  # what this phase used (the report checks config.json against it)
    eval_dir(cfg)
    metrics_file = write_summary(layout.metrics_file(cfg.run_dir), EvalMetrics.from_dict(metrics))
    qualitative = qualitative_examples(cfg, rows, {n: r["predictions"] for n, r in results.items()})
    qualitative_file = write_json_atomic(layout.qualitative_file(cfg.run_dir), qualitative)
    figures = eval_plots.make_figures(cfg, metrics, {n: r["predictions"] for n, r in results.items()})
    summary = dict(metrics)
    summary["generated"] = {n: r["generated"] for n, r in results.items()}
    summary["reused"] = {n: r["reused"] for n, r in results.items()}
    summary["outputs"] = {
        "metrics": str(metrics_file),
        "qualitative": str(qualitative_file),
        "predictions": {n: str(predictions_path(cfg, n)) for n in results},
        "figures": [str(p) for p in figures],
    }
    return summary


__all__ = [
    "evaluate_model",
    "make_backend",
    "run_phase",
]
