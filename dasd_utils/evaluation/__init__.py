"""Phase 7: evaluate the base student and its LoRA adapters on the evaluation questions.

Two metrics per model, on the same items:

* **generative accuracy** (the course's metric): the model sees the training context (system
  prompt + question through the student's chat template, generation prompt added), answers by
  greedy decoding, and the letter is read with :func:`dasd_utils.prompts.extract_answer`.
  ``format_ok`` says whether the response ends with one clear ``Final Answer: X``.
* **log-likelihood multiple-choice accuracy**, lm-evaluation-harness's ``commonsense_qa`` task:
  no chat template, no system prompt, zero-shot; the raw text below is scored and the letter
  whose continuation (``" A"`` ... ``" E"``) has the highest total log-probability is the
  prediction (the harness's ``acc``). No generation is needed, so it is fast::

      Question: Who is likely to be excited about a crab?
      A. fish market
      B. pet shop
      C. fishmongers
      D. intertidal zone
      E. obesity
      Answer:

Accuracies carry Wilson 95% intervals; every pair of models is compared on the same items with
McNemar's exact test (two-sided binomial on the items where exactly one of the two is right),
with Holm-adjusted p-values across the pairs. See :mod:`dasd_utils.stats`.

Backends: ``hf`` (default) loads the base weights once and switches PEFT adapters in place
(``disable_adapter`` for the base model); decoding is a plain greedy loop with a key/value cache
in which finished answers leave the batch and the chat prefix shared by every prompt (template +
system prompt) is computed once (:func:`generate_greedy`). ``openai`` sends the same chat
messages to any OpenAI-compatible server at temperature 0, e.g. on a GPU::

    vllm serve Qwen/Qwen3-4B-Instruct-2507 --enable-lora --max-lora-rank 16         --lora-modules stage1=runs/<run>/sft/stage1 stage2=runs/<run>/sft/stage2
    python -m dasd_utils evaluate --profile colab --run-dir runs/<run>         --set eval.backend=openai --set eval.base_url=http://localhost:8000/v1

(the base model is requested under ``student.model``, each adapter under its name; override with
``eval.served_models``). The server applies the chat template itself, so it must serve the
training tokenizer; each request carries ``chat_template_kwargs: {"enable_thinking": false}``
(``eval.enable_thinking``: Qwen3's hybrid template in the non-thinking mode the hf backend
renders; null sends nothing); the log-likelihood metric needs ``/completions`` with ``echo`` and
``logprobs`` (vLLM has them) and is reported as unavailable otherwise, never guessed.

Outputs (``runs/<run>/eval/``, see docs/artifacts.md): ``predictions_<model>.jsonl``,
``loglik_<model>.jsonl``, ``metrics.json``, ``qualitative.json``, and three figures. A re-run
reuses every prediction whose inputs (model and adapter fingerprints, prompt, generation
settings) are unchanged, so it gives the same numbers without generating again.

Where each part lives: :mod:`.models` (which models, fingerprints, file names),
:mod:`.generation` (greedy batched decoding), :mod:`.loglik` (log-likelihood scoring),
:mod:`.hf_backend` and :mod:`.openai_backend` (the two backends), :mod:`.metrics` (numbers,
tables, qualitative examples) and :mod:`.phase` (the prediction cache and ``run_phase``).
"""

from __future__ import annotations

from . import generation, hf_backend, loglik, metrics, models, openai_backend, phase
from .generation import (
    MIN_SHARED_PREFIX,
    EvaluationError,
    chat_prefix_ids,
    generate_greedy,
    greedy_batch,
    render_chat_prompt,
)
from .hf_backend import HFBackend
from .loglik import (
    LOGLIK_CONTINUATIONS,
    LOGLIK_METHOD,
    LoglikUnsupported,
    continuation_token_ids,
    loglik_context,
    loglik_record,
    loglik_scores,
)
from .metrics import (
    compare_models,
    comparisons_table,
    compute_metrics,
    metrics_table,
    model_metrics,
    prediction_record,
    qualitative_examples,
)
from .models import (
    STAGE_ADAPTERS,
    AdapterMissing,
    EvalModel,
    adapter_fingerprint,
    base_fingerprint,
    eval_dir,
    loglik_path,
    predictions_path,
    resolve_eval_model,
    resolve_eval_models,
)
from .openai_backend import OpenAIBackend
from .phase import evaluate_model, make_backend, run_phase

__all__ = [
    "AdapterMissing",
    "EvalModel",
    "EvaluationError",
    "HFBackend",
    "LOGLIK_CONTINUATIONS",
    "LOGLIK_METHOD",
    "LoglikUnsupported",
    "OpenAIBackend",
    "STAGE_ADAPTERS",
    "adapter_fingerprint",
    "base_fingerprint",
    "chat_prefix_ids",
    "compare_models",
    "comparisons_table",
    "compute_metrics",
    "continuation_token_ids",
    "eval_dir",
    "evaluate_model",
    "generate_greedy",
    "greedy_batch",
    "loglik_context",
    "loglik_path",
    "loglik_record",
    "loglik_scores",
    "make_backend",
    "metrics_table",
    "model_metrics",
    "prediction_record",
    "predictions_path",
    "qualitative_examples",
    "render_chat_prompt",
    "resolve_eval_model",
    "resolve_eval_models",
    "run_phase",
]
