"""Paths of the ``analyses`` phase inside a run directory (next to :mod:`dasd_utils.layout`'s)."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def analyses_dir(run_dir) -> Path:
    """``<run>/analyses``: one folder per stage-2 variant, the results and the manifest."""
    return Path(run_dir) / "analyses"


def variant_dir(run_dir, name: str) -> Path:
    """``<run>/analyses/<variant>``: a small run folder (``das/stage2_sft.jsonl``, ``sft/``, ``eval/``)."""
    return analyses_dir(run_dir) / layout.safe_name(name)


def results_file(run_dir) -> Path:
    return analyses_dir(run_dir) / "results.json"


def manifest_file(run_dir) -> Path:
    return analyses_dir(run_dir) / "manifest.json"


def provenance_file(run_dir) -> Path:
    """Sentences of the distilled model's evaluation answers with P_T, P_S, P_D and their provenance."""
    return analyses_dir(run_dir) / "provenance.jsonl"


def comparison_figure(run_dir) -> Path:
    return layout.figure(run_dir, "analyses_das_vs_random.png")


def provenance_figure(run_dir) -> Path:
    return layout.figure(run_dir, "analyses_provenance.png")
