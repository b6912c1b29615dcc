"""Notebook helpers: the set-up cell, what the notebooks show, and their worked examples.

* :mod:`~dasd_utils.notebook.setup`: Colab, Kaggle or local Jupyter; installation, Google Drive,
  the GPU check, the run's single configuration; :class:`~dasd_utils.notebook.setup.NotebookStop`;
* :mod:`~dasd_utils.notebook.cloud`: notebook 01's settings carried to the next notebooks, and
  Kaggle's attached runs; :mod:`~dasd_utils.notebook.stops`: the pipeline's expected errors as
  French stops without a traceback; :mod:`~dasd_utils.notebook.checks`: the teacher check of notebook 01;
* :mod:`~dasd_utils.notebook.display`: the run's configuration, each phase's counts as tables,
  figures, the report inline (re-exported here: ``from dasd_utils import notebook as nb``);
* :mod:`~dasd_utils.notebook.examples`: the method's steps shown on the run's own files (the DAS
  rule, the loss mask, the McNemar tables...).

Nothing in the pipeline imports this package: it only reads what the phases wrote, and calls the
phases' own functions.
"""

from .display import (
    CONFIG_LABELS,
    course_table,
    das_table,
    deliver_report,
    featured_label,
    featured_missing_message,
    featured_question,
    french_table,
    loss_table,
    object_table,
    qualitative,
    report_summary,
    sft_facts,
    sft_table,
    show_config,
    show_featured_prompt,
    show_figure,
    show_report,
    stand_in_banner,
    student_notes,
    teacher_example,
    teacher_table,
)
from .checks import check_teacher
from .setup import NotebookStop, load_notebook_config, project_root, relative, resolve_run_dir, setup_notebook
from .stops import install_stop_handler, notebook_message

__all__ = [
    "CONFIG_LABELS", "NotebookStop", "check_teacher", "course_table", "das_table", "deliver_report", "featured_label",
    "featured_missing_message", "featured_question", "french_table", "install_stop_handler", "load_notebook_config",
    "loss_table", "notebook_message", "object_table", "project_root", "qualitative", "relative", "report_summary",
    "resolve_run_dir", "setup_notebook", "sft_facts", "sft_table", "show_config", "show_featured_prompt", "show_figure",
    "show_report", "stand_in_banner", "student_notes", "teacher_example", "teacher_table",
]
