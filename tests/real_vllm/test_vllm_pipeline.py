"""The pipeline's command line against a real vLLM serving SmolLM2-135M-Instruct (the colab profile's routes).

Teacher and student are the same model here, so DAS's P_T (from vLLM's logprobs) and P_S (local
teacher forcing) must agree wherever the sampled tokens are the canonical tokenization: a check
that the logprobs land on the right sentences, not only that they exist.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from support import vllm_tier

pytestmark = pytest.mark.real_vllm

N_TRAIN = 6
N_EVAL = 3


def _settings(run_dir: Path, *extra: str) -> list[str]:
    """Return the CLI arguments of a small colab run whose student is the local SmolLM2 (offline DAS)."""
    smollm2_dir = vllm_tier.known_specs()["smollm2"].model_dir
    pairs = [
        "data.source=bundled", "data.train_split=validation", "data.train_offset=50",
        f"data.n_train={N_TRAIN}", f"data.n_eval={N_EVAL}",
        f"student.model={smollm2_dir}", "student.device=cpu", "student.dtype=fp32",
        *extra,
    ]
    args = ["--profile", "colab", "--run-dir", str(run_dir)]
    for pair in pairs:
        args += ["--set", pair]
    return args


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, smollm2, run_cli) -> Path:
    """Return a run directory after ``data``, ``generate`` and ``das`` with SmolLM2 behind vLLM as the teacher."""
    run_dir = tmp_path_factory.mktemp("vllm_teacher") / "run"
    args = _settings(
        run_dir,
        f"teacher.base_url={smollm2.url}", f"teacher.model={smollm2.model}",
        f"teacher.tokenizer={vllm_tier.known_specs()['smollm2'].model_dir}",
        # short answers: 12 requests in ~25 s on one core; SmolLM2 rarely writes the course's
        # format, and its wrong answers still carry logprobs, which is what is checked here
        "teacher.max_tokens=160", "teacher.concurrency=6",
        "quality.require_correct=false", "quality.require_final_answer=false",
    )
    for phase in ("data", "generate", "das"):
        run_cli(phase, *args)
    return run_dir


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_generate_preflight_go_and_every_record_has_logprobs(teacher_run):
    summary = json.loads((teacher_run / "teacher" / "summary.json").read_text())
    for stage in ("stage1", "stage2"):
        numbers = summary["stages"][stage]
        assert numbers["preflight"]["verdict"] == "go", numbers["preflight"]
        assert numbers["failed"] == 0 and numbers["completed"] == N_TRAIN
        assert numbers["with_logprobs"] == N_TRAIN and numbers["without_logprobs"] == 0
        assert numbers["tokens_mismatch"] == 0
        records = _read_jsonl(teacher_run / "teacher" / f"{stage}.jsonl")
        assert len(records) == N_TRAIN
        for record in records:
            assert record["error"] is None and record["tokens"], record.get("logprobs_note")
            assert record["tokens_match_content"] is True


def test_das_scores_every_answer(teacher_run):
    summary = json.loads((teacher_run / "das" / "summary.json").read_text())
    for stage in ("1", "2"):
        assert summary["stages"][stage]["n_unscorable"] == 0, summary["stages"][stage]["unscorable"]
        assert summary["stages"][stage]["scored"] == N_TRAIN


def test_teacher_and_student_probabilities_agree_when_they_are_the_same_model(teacher_run):
    """P_T (vLLM logprobs) vs P_S (local teacher forcing) of the same model: equal on most sentences.

    They differ only where the sampled tokens are not the canonical tokenization of the text
    (both are then right: P_T is the sampled path's probability), so the bound is on the median.
    """
    gaps = [
        abs(sentence["p_teacher"] - sentence["p_student"])
        for stage in (1, 2)
        for record in _read_jsonl(teacher_run / "das" / f"stage{stage}.jsonl")
        for sentence in record["sentences"]
    ]
    assert gaps
    assert statistics.median(gaps) < 1e-3, sorted(gaps)[-5:]
    assert sum(gap < 1e-2 for gap in gaps) >= 0.8 * len(gaps), sorted(gaps)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory, smollm2, run_cli) -> dict[str, Path]:
    """Return the evaluation folders of the base model by the OpenAI backend (vLLM) and by the local hf backend."""
    out = {}
    for backend in ("openai", "hf"):
        run_dir = tmp_path_factory.mktemp(f"vllm_eval_{backend}") / "run"
        args = _settings(
            run_dir, f"eval.backend={backend}", "eval.models=[base]", "eval.max_new_tokens=24",
            f"eval.base_url={smollm2.url}", f"eval.served_models={{base: {smollm2.model}}}",
            # the default, sent as chat_template_kwargs: {enable_thinking: false}
            "eval.enable_thinking=false",
        )
        run_cli("data", *args)
        run_cli("evaluate", *args)
        out[backend] = run_dir / "eval"
    return out


def test_openai_backend_answers_with_chat_template_kwargs(evaluations):
    metrics = json.loads((evaluations["openai"] / "metrics.json").read_text())
    assert metrics["models"]["base"]["n"] == N_EVAL
    predictions = _read_jsonl(evaluations["openai"] / "predictions_base.jsonl")
    assert len(predictions) == N_EVAL and all(p["response"] for p in predictions)
    local = _read_jsonl(evaluations["hf"] / "predictions_base.jsonl")
    # greedy decoding of the same model and template: the same answers (allowing one near-tie flip)
    assert sum(a["response"] == b["response"] for a, b in zip(predictions, local)) >= N_EVAL - 1


def test_openai_backend_loglik_equals_the_local_computation(evaluations):
    """``/v1/completions`` echo log-likelihoods equal the hf backend's teacher forcing of the same model."""
    served = {r["question_id"]: r["logprobs"] for r in _read_jsonl(evaluations["openai"] / "loglik_base.jsonl")}
    local = {r["question_id"]: r["logprobs"] for r in _read_jsonl(evaluations["hf"] / "loglik_base.jsonl")}
    assert served.keys() == local.keys() and len(served) == N_EVAL
    gap = max(abs(served[q][letter] - local[q][letter]) for q in served for letter in served[q])
    assert gap < 1e-3, f"largest difference {gap}"
