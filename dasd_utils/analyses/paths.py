"""Paths of the ``analyses`` phase inside a run directory (next to :mod:`dasd_utils.layout`'s).

``analyses/<variant>/`` is a small run folder per stage-2 variant; ``analyses/results.json`` the
comparison, verdict and provenance summary; ``analyses/provenance.jsonl`` the scored sentences of
the distilled model's answers (P_T, P_S, P_D, provenance); ``analyses/manifest.json`` the reuse key.
"""

from __future__ import annotations

from pathlib import Path

from .. import layout

FILES = {"results": "results.json", "manifest": "manifest.json", "provenance": "provenance.jsonl"}
FIGURES = {"comparison": "analyses_das_vs_random.png", "provenance": "analyses_provenance.png"}


def analyses_dir(run_dir) -> Path:
    return Path(run_dir) / "analyses"


def variant_dir(run_dir, name: str) -> Path:
    return analyses_dir(run_dir) / layout.safe_name(name)


def results_file(run_dir) -> Path:
    return analyses_dir(run_dir) / FILES["results"]


def manifest_file(run_dir) -> Path:
    return analyses_dir(run_dir) / FILES["manifest"]


def provenance_file(run_dir) -> Path:
    return analyses_dir(run_dir) / FILES["provenance"]


def comparison_figure(run_dir) -> Path:
    return layout.figure(run_dir, FIGURES["comparison"])


def provenance_figure(run_dir) -> Path:
    return layout.figure(run_dir, FIGURES["provenance"])
