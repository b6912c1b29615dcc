"""Phase 4, Divergence-Aware Sampling (DAS): which teacher responses teach the student something.

For every quality-kept teacher response (one per question and stage, see
:func:`select_records`):

1. the response is cut into sentences, as character spans (:mod:`dasd_utils.segment`);
2. each sentence gets the teacher's probability ``P_T`` from the API logprobs (teacher tokenizer)
   and the student's ``P_S`` from teacher forcing in the student's own chat context (student
   tokenizer), both aligned on characters (:mod:`dasd_utils.align`, :mod:`dasd_utils.scoring`);
   ``P = exp(mean token logprob)`` over the sentence's tokens;
3. each sentence is a *teacher*, *shared* or *student* sentence (:func:`classify_sentences`);
4. an example is kept when its share of teacher sentences is above ``das.keep_ratio_threshold``.

Where each part lives:

* :mod:`.rules` — the rules a student reads: sentence types, provenance, the keep rule;
* :mod:`.example` — the scoring of one example (token-to-sentence assignment, merges, labels);
* :mod:`.stage` — one stage: record selection, the student model, sharding across processes;
* :mod:`.phase` — the phase: reuse (:mod:`dasd_utils.reuse`), outputs, summary, figures, and
  the provenance analysis under a distilled adapter.
"""

from __future__ import annotations

from ..layout import STAGES
from ..segment import sentence_spans
from .example import merge_groups, reclassify, score_example
from .phase import (
    DAS_FORMAT_VERSION,
    das_path,
    load_das_records,
    make_figures,
    provenance_analysis,
    run_phase,
    scoring_inputs,
    sft_path,
    sft_rows,
    summarize_stage,
)
from .rules import (
    PROVENANCE_TYPES,
    SENTENCE_TYPES,
    THRESHOLD_TOLERANCE,
    classify_sentence,
    classify_sentences,
    keep_example,
    provenance,
    ratio_without_final,
    teacher_sentence_ratio,
)
from .stage import (
    das_dir,
    load_scoring_model,
    process_state,
    score_stage,
    select_records,
    target_judge,
    target_rejected,
    teacher_path,
)

__all__ = [
    "DAS_FORMAT_VERSION",
    "PROVENANCE_TYPES",
    "SENTENCE_TYPES",
    "STAGES",
    "THRESHOLD_TOLERANCE",
    "classify_sentence",
    "classify_sentences",
    "das_dir",
    "das_path",
    "keep_example",
    "load_das_records",
    "load_scoring_model",
    "make_figures",
    "process_state",
    "provenance",
    "provenance_analysis",
    "ratio_without_final",
    "reclassify",
    "run_phase",
    "score_example",
    "score_stage",
    "scoring_inputs",
    "select_records",
    "sentence_spans",
    "sft_path",
    "sft_rows",
    "summarize_stage",
    "target_judge",
    "target_rejected",
    "teacher_path",
    "teacher_sentence_ratio",
]
