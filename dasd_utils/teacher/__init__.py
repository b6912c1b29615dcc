"""Phase 3, the teacher: generation with logprobs, cached, resumable and fault-tolerant.

Two backends behind one interface (``teacher.backend``):

* ``openai`` (:mod:`~dasd_utils.teacher.api`): any OpenAI-compatible endpoint (Infomaniak as in
  the course, vLLM, SGLang, OpenRouter...), concurrent, with retries;
* ``local`` (:mod:`~dasd_utils.teacher.local`): a Hugging Face model in-process (the demo's
  stand-in teacher, SmolLM2-135M-Instruct, with few-shot examples, a gold hint and best-of-n).

Each request gives one record in ``<run>/teacher/stage{1,2}.jsonl`` (format: docs/artifacts.md,
"Teacher records"), appended and fsync'ed as soon as its response arrives (the files are handled
by :mod:`~dasd_utils.teacher.store`). Resuming:

* a request is identified by :func:`request_hash` (model, messages, temperature, max_tokens,
  sample index, seed and backend options); a completed record (``error`` null) is never sent again;
* a failed record is retried on the next run;
* records whose hash no longer matches the configuration (changed prompt, model, temperature...)
  are moved to ``teacher/archive/stage{N}.jsonl`` and never served for the new configuration (they
  are served again if that configuration comes back);
* reading deduplicates by hash (a completed record beats a failed one; among equals the last
  complete line wins) and skips a torn last line, so a SIGKILL loses at most the requests in flight.

The quality verdict (:func:`dasd_utils.quality.check_response`) is recomputed on every run from
the stored content, so a changed quality setting applies without re-sending anything. With
best-of-n, ``kept`` marks the first sample of a question that passes the filter: later phases use
:func:`load_kept`.

The openai backend sends the first request of each stage alone and checks the endpoint with
it before the others go out (:class:`~dasd_utils.teacher.api.Preflight`: auth, model,
content, logprobs alignable on the content, reasoning field, ``max_tokens``); its verdict is
printed and kept in the stage summary (``preflight``).

Front doors: :func:`run_phase` (both stages, summary, figure; ``python -m dasd_utils generate``;
raises :class:`TeacherIncompleteError` after writing everything when requests failed, so the
command exits non-zero and says to re-run) and :func:`generate_stage` (one stage, for the notebook).

The package, module by module (each imports only the ones above it in this list):

* :mod:`~dasd_utils.teacher.requests`: what is asked (:class:`TeacherRequest`, its hash);
* :mod:`~dasd_utils.teacher.harmony`: gpt-oss's harmony format as vLLM renders it, and a continuation read back;
* :mod:`~dasd_utils.teacher.records`: the quality verdict and the stored record of an answer;
* :mod:`~dasd_utils.teacher.store`: the record files (tolerant reads, compaction, archive, lock);
* :mod:`~dasd_utils.teacher.local`: the local backend (the demo's stand-in teacher);
* :mod:`~dasd_utils.teacher.responses`: parsing an OpenAI-compatible chat completion;
* :mod:`~dasd_utils.teacher.api`: the OpenAI-compatible backend (concurrency, retries, preflight);
* :mod:`~dasd_utils.teacher.prompt_logprobs`: the teacher's probabilities of a given answer (vLLM's
  ``prompt_logprobs``), for the analyses;
* :mod:`~dasd_utils.teacher.raw_completions`: the harmony route on ``/v1/completions`` (P_T of given
  text, continuations of the student's text), for the analyses;
* :mod:`~dasd_utils.teacher.routes`: which route the analyses take (local, chat, harmony), decided
  from the model, the server's rendering checked;
* :mod:`~dasd_utils.teacher.phase`: one stage, both stages, the summary and figure, and the check of a
  new run's endpoint (:func:`check_endpoint`, notebook 01).
"""

from .phase import (
    TeacherIncompleteError,
    check_endpoint,
    generate_stage,
    kept_sft_examples,
    make_backend,
    run_phase,
    send_requests,
    summarize_stage,
)
from .records import QualityJudge, finalize_record
from .requests import (
    STAND_IN_SUFFIX,
    TeacherRequest,
    build_requests,
    continuation_requests,
    model_label,
    request_hash,
    samples_per_question,
    stage_temperature,
)
from .store import TeacherError, archive_path, backup_if_corrupt, load_kept, load_records, read_records, stage_path

__all__ = [
    "QualityJudge",
    "STAND_IN_SUFFIX",
    "TeacherError",
    "TeacherIncompleteError",
    "TeacherRequest",
    "archive_path",
    "backup_if_corrupt",
    "build_requests",
    "check_endpoint",
    "continuation_requests",
    "finalize_record",
    "generate_stage",
    "kept_sft_examples",
    "load_kept",
    "load_records",
    "make_backend",
    "model_label",
    "read_records",
    "request_hash",
    "run_phase",
    "samples_per_question",
    "send_requests",
    "stage_path",
    "stage_temperature",
    "summarize_stage",
]
