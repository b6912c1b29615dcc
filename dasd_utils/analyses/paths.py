"""Paths of the ``analyses`` phase, named after :mod:`dasd_utils.layout` (which holds every run path).

``analyses/<variant>/`` is a small run folder per stage-2 variant; ``analyses/results.json`` the
comparison, verdicts, provenance and mixed-policy summaries; ``analyses/provenance.jsonl`` the
scored sentences of the distilled model's answers (P_T, P_S, P_D, provenance);
``analyses/mixed_policy/`` the mixed-policy data; ``analyses/manifest.json`` the reuse key.
"""

from __future__ import annotations

from pathlib import Path

from .. import layout

FIGURES = {"comparison": "analyses_das_vs_random.png", "provenance": "analyses_provenance.png"}

analyses_dir = layout.analyses_dir
results_file = layout.analyses_results
manifest_file = layout.analyses_manifest
provenance_file = layout.analyses_provenance
provenance_teacher_file = layout.analyses_provenance_teacher


def variant_dir(run_dir, name: str) -> Path:
    return layout.analyses_variant_dir(run_dir, name)


def comparison_figure(run_dir) -> Path:
    return layout.figure(run_dir, FIGURES["comparison"])


def provenance_figure(run_dir) -> Path:
    return layout.figure(run_dir, FIGURES["provenance"])
