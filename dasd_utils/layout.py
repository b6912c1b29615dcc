"""The run directory's layout: every path a phase reads or writes, in one place.

`docs/artifacts.md` describes these files; `tests/foundation/test_layout.py` checks that every path listed
there comes from this module. Functions take the run directory (``cfg.run_dir``) so that code
which only knows a run folder (the report, the notebooks) uses the same names as the phases.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

STAGES = (1, 2)
#: Models the evaluation compares, and the SFT stage folder each adapter lives in.
EVAL_MODELS = ("base", "stage1", "stage2")
STAGE_ADAPTERS = {"stage1": "stage1", "stage2": "stage2"}

CONFIG_FILE = "config.json"
TIMINGS_FILE = "timings.json"
#: Written next to the runs (not in one) by notebook 01's set-up on Colab / Kaggle: the repository
#: URL, profile and run it used, read by the next notebooks' set-up before the repository is cloned.
NOTEBOOK_SETTINGS_FILE = "notebook_settings.json"


class MissingPhaseOutput(FileNotFoundError):
    """A file an earlier phase writes is missing: that phase has not run on this run directory yet.

    ``phase`` names the phase to run first (``data``, ``generate``, ``das``, ``train``,
    ``evaluate``, ``analyses``, ``report``; None when no phase writes it) and ``stage`` the SFT
    stage when it matters, so that each front door (the command line, the notebooks) can say what
    to run in its own terms.
    """

    def __init__(self, path: str | os.PathLike, phase: str | None, stage: int | None = None,
                 detail: str | None = None) -> None:
        self.path = Path(path)
        self.phase = phase
        self.stage = stage
        super().__init__(detail or f"{self.path} not found: run the '{phase}' phase first (python -m dasd_utils {phase} ...)")

    def __str__(self) -> str:  # FileNotFoundError's own str() would read "None" without an errno
        return self.args[0]


def check_stage(stage: int) -> int:
    """Return ``stage`` when it is 1 or 2, else raise ValueError."""
    if stage not in STAGES:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    return stage


def _run(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir)


def config_file(run_dir) -> Path:
    return _run(run_dir) / CONFIG_FILE


def timings_file(run_dir) -> Path:
    return _run(run_dir) / TIMINGS_FILE


def figures_dir(run_dir) -> Path:
    return _run(run_dir) / "figures"


def figure(run_dir, name: str) -> Path:
    return figures_dir(run_dir) / name


# data -----------------------------------------------------------------------------------------
def data_dir(run_dir) -> Path:
    return _run(run_dir) / "data"


def questions_file(run_dir, which: str) -> Path:
    """``data/train.jsonl`` or ``data/eval.jsonl``."""
    if which not in ("train", "eval"):
        raise ValueError(f"which must be 'train' or 'eval', got {which!r}")
    return data_dir(run_dir) / f"{which}.jsonl"


def data_summary(run_dir) -> Path:
    return data_dir(run_dir) / "summary.json"


# teacher --------------------------------------------------------------------------------------
def teacher_dir(run_dir) -> Path:
    return _run(run_dir) / "teacher"


def teacher_records(run_dir, stage: int) -> Path:
    return teacher_dir(run_dir) / f"stage{check_stage(stage)}.jsonl"


def teacher_archive(run_dir, stage: int) -> Path:
    return teacher_dir(run_dir) / "archive" / f"stage{check_stage(stage)}.jsonl"


def teacher_summary(run_dir) -> Path:
    return teacher_dir(run_dir) / "summary.json"


# das ------------------------------------------------------------------------------------------
def das_dir(run_dir) -> Path:
    return _run(run_dir) / "das"


def das_records(run_dir, stage: int) -> Path:
    """Per example: sentences with spans, P_T, P_S, type, ratio and keep decision."""
    return das_dir(run_dir) / f"stage{check_stage(stage)}.jsonl"


def sft_examples(run_dir, stage: int) -> Path:
    """The SFT-ready examples DAS writes and the SFT phase reads (``das/stage{N}_sft.jsonl``)."""
    return das_dir(run_dir) / f"stage{check_stage(stage)}_sft.jsonl"


def das_summary(run_dir) -> Path:
    """Per stage: scored, unscorable per reason, kept, statistics (``summaries.DasSummary``)."""
    return das_dir(run_dir) / "summary.json"


def das_manifest(run_dir) -> Path:
    """The DAS phase's reuse key and per-stage scoring keys."""
    return das_dir(run_dir) / "manifest.json"


# sft ------------------------------------------------------------------------------------------
def sft_stage_dir(run_dir, stage: int) -> Path:
    """The stage's LoRA adapter, tokenizer, train log and manifest."""
    return _run(run_dir) / "sft" / f"stage{check_stage(stage)}"


def sft_manifest(run_dir, stage: int) -> Path:
    """Written last: its presence marks a finished stage (``summaries.SftManifest``)."""
    return sft_stage_dir(run_dir, stage) / "manifest.json"


def sft_train_log(run_dir, stage: int) -> Path:
    """The trainer's log records (loss, learning rate, step)."""
    return sft_stage_dir(run_dir, stage) / "train_log.jsonl"


def sft_checkpoints(run_dir, stage: int) -> Path:
    """Checkpoints of an unfinished stage (removed once its adapter is saved)."""
    return sft_stage_dir(run_dir, stage) / "checkpoints"


# evaluation -----------------------------------------------------------------------------------
def eval_dir(run_dir) -> Path:
    """Predictions, log-likelihood scores, metrics and qualitative examples."""
    return _run(run_dir) / "eval"


def safe_name(name: str) -> str:
    """A model name as a file-name part (other characters become ``_``; never empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def predictions_file(run_dir, name: str) -> Path:
    """One record per evaluation question for model ``name`` (``base``, ``stage1``...)."""
    return eval_dir(run_dir) / f"predictions_{safe_name(name)}.jsonl"


def loglik_file(run_dir, name: str) -> Path:
    """The log-likelihood of each answer letter, per question, for model ``name``."""
    return eval_dir(run_dir) / f"loglik_{safe_name(name)}.jsonl"


def metrics_file(run_dir) -> Path:
    """Accuracies with intervals and paired tests (``summaries.EvalMetrics``)."""
    return eval_dir(run_dir) / "metrics.json"


def qualitative_file(run_dir) -> Path:
    """The featured and random examples the notebook and the report show."""
    return eval_dir(run_dir) / "qualitative.json"


# analyses (notebook 08) ----------------------------------------------------------------------
def analyses_dir(run_dir) -> Path:
    """The ``analyses`` phase: one small run folder per stage-2 variant, results, provenance."""
    return _run(run_dir) / "analyses"


def analyses_variant_dir(run_dir, name: str) -> Path:
    """A variant's own run folder (``das/stage2_sft.jsonl``, ``sft/``, ``eval/``)."""
    return analyses_dir(run_dir) / safe_name(name)


def analyses_results(run_dir) -> Path:
    """The comparison, verdicts, provenance and mixed-policy summaries (read by the report)."""
    return analyses_dir(run_dir) / "results.json"


def analyses_manifest(run_dir) -> Path:
    """The reuse key of the analyses phase."""
    return analyses_dir(run_dir) / "manifest.json"


def analyses_provenance(run_dir) -> Path:
    """The scored sentences (P_T, P_S, P_D, provenance) of the distilled model's answers."""
    return analyses_dir(run_dir) / "provenance.jsonl"


def analyses_provenance_teacher(run_dir) -> Path:
    """The teacher's own answers to the evaluation questions, whose analysis P_T of gpt-oss's final channel follows."""
    return analyses_dir(run_dir) / "provenance_teacher.jsonl"


def mixed_policy_dir(run_dir) -> Path:
    """Mixed-policy distillation's data: the student's new answers, the teacher's continuations, the items."""
    return analyses_dir(run_dir) / "mixed_policy"


def mixed_student_answers(run_dir) -> Path:
    """The distilled student's new answers to the pool's training questions (with their reuse manifest beside)."""
    return mixed_policy_dir(run_dir) / "student_answers.jsonl"


def mixed_continuations(run_dir) -> Path:
    """The teacher's continuations of the diverging answers (teacher records with a ``prefill``)."""
    return mixed_policy_dir(run_dir) / "continuations.jsonl"


def mixed_items(run_dir) -> Path:
    """One record per pool question: the student's answer, divergence, cut point, continuation, verdict."""
    return mixed_policy_dir(run_dir) / "items.jsonl"


# report ---------------------------------------------------------------------------------------
def report_dir(run_dir) -> Path:
    return _run(run_dir) / "report"


def student_notes(run_dir) -> Path:
    """The student's own discussion kept next to the run (``notes_etudiant.md``): the report includes it."""
    return _run(run_dir) / "notes_etudiant.md"


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations", "os", "re", "Path")]
