"""The French report, built from a run directory only: Markdown plus a standalone HTML file.

``build_report(run_dir)`` reads the run's files (``config.json``, ``data/summary.json``,
``teacher/summary.json``, ``das/summary.json``, ``sft/stage*/manifest.json``,
``eval/metrics.json``, ``eval/qualitative.json``, ``figures/*.png``; see docs/artifacts.md),
turns them into a context of plain values, and renders ``dasd_utils/templates/rapport.md.j2``
(Jinja2) into ``<run_dir>/report/rapport.md`` (figures referenced relatively) and
``rapport.html`` (figures embedded as base64 data URIs, small CSS, no external file). No number
is written by hand: every figure in the text comes from those files, or is derived from them
(interval widths, a Wilson interval when ``metrics.json`` lacks one). A phase that has not run
leaves its section with a sentence saying so.

Modules: :mod:`.fields` (the typed summaries of :mod:`dasd_utils.summaries` turned into context
values: the only place that reads a phase's fields), :mod:`.format` (French number formats,
Markdown escaping), :mod:`.figures` (which figures, where, with which caption), :mod:`.html`
(Markdown -> safe standalone HTML), :mod:`.files` (tolerant reads), :mod:`.build` (context,
rendering, reuse, the phase).
"""

from .build import (
    INPUT_PATTERNS,
    TEMPLATE_DIR,
    TEMPLATE_NAME,
    build_report,
    collect_context,
    render_markdown,
    report_inputs,
    run_phase,
)
from .fields import (
    DEFAULT_CI_LEVEL,
    MODEL_LABELS,
    REASON_LABELS,
    SIGNIFICANCE_LEVEL,
    UNSCORABLE_LABELS,
    config_facts,
    das_stage,
    eval_comparisons,
    eval_model,
    qualitative_example,
    qualitative_from_predictions,
    qualitative_items,
    sft_stage,
    teacher_stage,
    wilson_interval,
)
from .figures import FIGURE_CAPTIONS, FIGURE_SECTIONS, IMAGE_SIGNATURES, image_mime, inside, run_figures
from .format import (
    display_model,
    fence,
    fmt_ci,
    fmt_duration,
    fmt_g,
    fmt_int,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_sci,
    md_alt,
    md_code,
    md_escape,
)
from .html import CSS, markdown_to_html

__all__ = [
    "CSS", "DEFAULT_CI_LEVEL", "FIGURE_CAPTIONS", "FIGURE_SECTIONS", "IMAGE_SIGNATURES", "INPUT_PATTERNS",
    "MODEL_LABELS", "REASON_LABELS", "SIGNIFICANCE_LEVEL", "TEMPLATE_DIR", "TEMPLATE_NAME", "UNSCORABLE_LABELS",
    "build_report", "collect_context", "config_facts", "das_stage", "display_model", "eval_comparisons", "eval_model",
    "fence", "fmt_ci", "fmt_duration", "fmt_g", "fmt_int", "fmt_num", "fmt_p", "fmt_pct", "fmt_sci", "image_mime",
    "inside", "markdown_to_html", "md_alt", "md_code", "md_escape", "qualitative_example", "qualitative_from_predictions",
    "qualitative_items", "render_markdown", "report_inputs", "run_figures", "run_phase", "sft_stage", "teacher_stage",
    "wilson_interval",
]
