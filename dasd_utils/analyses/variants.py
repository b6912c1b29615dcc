"""Train and evaluate the stage-2 variants with the pipeline's own SFT and evaluation code.

Each variant lives in ``<run>/analyses/<variant>/``, laid out as a small run folder:
``das/stage2_sft.jsonl`` (its training set), ``sft/stage1`` (a link to the run's stage-1
adapter), ``sft/stage2`` (its adapter, trained by :func:`dasd_utils.sft.train_stage`) and
``eval/predictions_stage2.jsonl`` (by :func:`dasd_utils.evaluation.evaluate_model`). The same
recipe (the run's ``sft`` settings, ``sft.lr_stage2``, the same seed) serves every variant, and
each keeps the SFT phase's own reuse: a variant whose data, parent adapter and settings did not
change is not retrained, and its cached predictions are not regenerated.

The DAS variant *is* the run's stage 2: when the run's stage-2 adapter was trained on the
current ``das/stage2_sft.jsonl`` from the current stage-1 adapter, it and its predictions are
reused instead of training it again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import config as config_mod
from .. import evaluation, layout, sft
from ..data import write_jsonl
from .paths import variant_dir

log = logging.getLogger(__name__)


@dataclass
class Variant:
    """One stage-2 training set and where its adapter and predictions live."""

    name: str
    records: list[dict[str, Any]]
    seed: int | None = None
    #: True when the run's own stage-2 adapter and predictions stand for this variant.
    main_run: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    #: SFT-ready examples written as they are (mixed policy); None: built from ``records`` (teacher records).
    examples: list[dict[str, Any]] | None = None
    #: The adapter this variant's training starts from; None: the run's stage-1 adapter.
    parent: Path | None = None
    #: Config overrides of this variant's training (e.g. ``{"sft.epochs": 1.0}``).
    overrides: dict[str, Any] = field(default_factory=dict)


#: The variants' adapters exist only on this machine: they are evaluated in process, without the
#: log-likelihood metric (the comparison uses the generative accuracy).
EVAL_SETTINGS = {"eval.loglik": False, "eval.backend": "hf"}


def variant_config(cfg, name: str):
    """Return the run's config pointed at ``analyses/<name>/`` (same recipe, evaluated in process)."""
    return config_mod.replace(cfg, **{"paths.run_dir": str(variant_dir(cfg.run_dir, name)), **EVAL_SETTINGS})


def _link(link: Path, target: Path) -> None:
    """Make ``link`` a symbolic link to the directory ``target`` (replacing a link elsewhere)."""
    target = target.resolve()
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(target, target_is_directory=True)


def main_stage2_current(cfg) -> bool:
    """Return True when the run's stage-2 adapter was trained on the current DAS set and stage-1 adapter."""
    try:
        return sft.reusable_manifest(cfg, 2) is not None
    except FileNotFoundError:
        return False


def prepare(cfg, variant: Variant) -> Any:
    """Write the variant's training set and link its parent adapter as its ``sft/stage1``; return its config.

    The parent is the run's stage-1 adapter, or ``variant.parent`` (the mixed-policy variants
    continue from the stage-2 adapter: their "stage 2" is then a third training).
    """
    from .sampling import sft_examples

    vcfg = config_mod.replace(variant_config(cfg, variant.name), **variant.overrides)
    examples = variant.examples if variant.examples is not None else sft_examples(variant.records, cfg)
    write_jsonl(layout.sft_examples(vcfg.run_dir, 2), examples)
    _link(layout.sft_stage_dir(vcfg.run_dir, 1), variant.parent or layout.sft_stage_dir(cfg.run_dir, 1))
    return vcfg


def train(cfg, variant: Variant, force: bool = False) -> dict[str, Any]:
    """Train (or reuse) the variant's stage-2 adapter from the run's stage-1 adapter; return its manifest."""
    if variant.main_run:
        variant.manifest = dict(sft.read_manifest(cfg, 2) or {}, reused=True)
    else:
        variant.manifest = sft.train_stage(prepare(cfg, variant), 2, force=force)
    return variant.manifest


def evaluate(cfg, variants: Sequence[Variant], rows: list[dict[str, Any]], force: bool = False) -> dict[str, dict[str, Any]]:
    """Return ``{variant: evaluate_model result}``: greedy answers of every variant on the same items."""
    base_cfg = config_mod.replace(cfg, **EVAL_SETTINGS)
    backend = evaluation.make_backend(base_cfg)
    out = {}
    for v in variants:
        in_run = v.main_run and cfg.eval.backend == "hf"  # the run's own cached stage-2 predictions
        vcfg = base_cfg if in_run else variant_config(cfg, v.name)
        if v.main_run and not in_run:  # the run was evaluated by a server: answer here, from the run's adapter
            _link(layout.sft_stage_dir(vcfg.run_dir, 2), layout.sft_stage_dir(cfg.run_dir, 2))
        out[v.name] = evaluation.evaluate_model(vcfg, "stage2", backend=backend, force=force and not in_run, rows=rows)
    return out


def adapter_dir(cfg, variant: Variant) -> Path:
    return layout.sft_stage_dir(cfg.run_dir if variant.main_run else variant_dir(cfg.run_dir, variant.name), 2)


__all__ = ["Variant", "adapter_dir", "evaluate", "main_stage2_current", "prepare", "train", "variant_config"]
