"""Evaluation with the in-process Hugging Face backend on a tiny random model and tiny LoRA adapters."""

from __future__ import annotations

import json
import shutil

import pytest

from dasd_utils import cli, data, evaluation
from dasd_utils.config import COURSE_SYSTEM_PROMPT, load_config
from dasd_utils.data import load_split, read_jsonl
from dasd_utils.evaluation import (
    AdapterMissing,
    EvalModel,
    HFBackend,
    generate_greedy,
    loglik_context,
    loglik_scores,
    render_chat_prompt,
)


@pytest.fixture(scope="module")
def varied_model_dir(tmp_path_factory, smollm2_dir):
    """A tiny random Llama whose greedy outputs vary from token to token.

    With the usual 0.02 initialisation a 2-layer random model repeats one token forever, which
    would make "batched equals unbatched" pass even with broken padding; weights drawn with a
    larger scale give varied continuations that wrong padding visibly changes.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dasd_utils.models import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ensure_pad_token(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.5,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("varied_model")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _make_adapter(model_dir, out_dir, seed):
    """Save a LoRA adapter with random A and B (init_lora_weights=False), so it is not a no-op."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, varied_model_dir):
    root = tmp_path_factory.mktemp("adapters")
    return [_make_adapter(varied_model_dir, root / f"adapter{k}", seed=k) for k in (1, 2)]


@pytest.fixture(scope="module")
def rows():
    return [dict(r, split="validation", index=i) for i, r in enumerate(load_split("bundled", "validation")[:7])]


@pytest.fixture(scope="module")
def model_and_tokenizer(varied_model_dir):
    from dasd_utils.models import load_model

    return load_model(str(varied_model_dir), dtype="fp32", device="cpu")


@pytest.mark.model
def test_batched_greedy_generation_equals_unbatched(model_and_tokenizer, rows):
    model, tokenizer = model_and_tokenizer
    prompts = [render_chat_prompt(tokenizer, row, COURSE_SYSTEM_PROMPT) for row in rows]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert len(set(lengths)) >= 4, "prompts of one length would not exercise the padding"
    assert prompts[0].startswith("<|im_start|>system\n") and prompts[0].endswith("<|im_start|>assistant\n")
    batched = generate_greedy(model, tokenizer, prompts, max_new_tokens=12, batch_size=4, progress=False)
    single = [generate_greedy(model, tokenizer, [p], max_new_tokens=12, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == single
    assert len({b["response"] for b in batched}) == len(prompts)
    assert all(b["finish_reason"] in ("stop", "length") for b in batched)
    # the shared chat prefix, run once and reused, changes nothing but the cost
    prefix = evaluation.chat_prefix_ids(tokenizer, COURSE_SYSTEM_PROMPT)
    assert len(prefix) >= 50 and all(tokenizer(p, add_special_tokens=False)["input_ids"][: len(prefix)] == prefix for p in prompts)
    with_prefix = generate_greedy(model, tokenizer, prompts, 12, batch_size=4, progress=False, prefix_ids=prefix)
    single_prefix = [generate_greedy(model, tokenizer, [p], 12, 1, progress=False, prefix_ids=prefix)[0] for p in prompts]
    assert with_prefix == batched and single_prefix == batched


def test_loglik_scores_match_an_unpadded_reference(model_and_tokenizer, rows):
    import torch

    model, tokenizer = model_and_tokenizer
    some = rows[:3]
    scores = loglik_scores(model, tokenizer, some, batch_size=2, progress=False)
    for row, got in zip(some, scores):
        context = loglik_context(row)
        n_ctx = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        for letter, value in zip("ABCDE", got):
            ids = tokenizer(context + " " + letter, add_special_tokens=False)["input_ids"]
            assert len(ids) == n_ctx + 1  # " A" .. " E" are single tokens for this tokenizer
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            expected = sum(float(logp[t - 1, ids[t]]) for t in range(n_ctx, len(ids)))
            assert value == pytest.approx(expected, abs=1e-3)


def test_loglik_scores_multi_token_continuations(model_and_tokenizer, rows, monkeypatch):
    """Continuations of several tokens take one pass per letter; still equal to the reference."""
    import torch

    model, tokenizer = model_and_tokenizer
    conts = tuple(f" {letter}) because" for letter in "ABCDE")
    monkeypatch.setattr(evaluation.loglik, "LOGLIK_CONTINUATIONS", conts)
    some = rows[:2]
    scores = loglik_scores(model, tokenizer, some, batch_size=3, progress=False)
    for row, got in zip(some, scores):
        context = loglik_context(row)
        n_ctx = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        for cont, value in zip(conts, got):
            ids = tokenizer(context + cont, add_special_tokens=False)["input_ids"]
            assert len(ids) - n_ctx >= 2
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            expected = sum(float(logp[t - 1, ids[t]]) for t in range(n_ctx, len(ids)))
            assert value == pytest.approx(expected, abs=1e-3)


@pytest.mark.model
def test_adapter_switching_leaves_the_base_model_unchanged(varied_model_dir, adapters, rows, tmp_path):
    from peft import PeftModel

    from dasd_utils.models import load_model

    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={
        "student.model": str(varied_model_dir), "eval.max_new_tokens": 10, "eval.batch_size": 3,
    })
    backend = HFBackend(cfg)
    some = rows[:4]
    prompts = [backend.prompt_key(r) for r in some]
    base, one, two = EvalModel("base", None), EvalModel("a1", adapters[0]), EvalModel("a2", adapters[1])
    base_before = backend.generate(base, some, prompts)
    ll_before = backend.loglik(base, some)
    out_one = backend.generate(one, some, prompts)
    out_two = backend.generate(two, some, prompts)
    assert backend.generate(base, some, prompts) == base_before
    flat = [v for scores in ll_before for v in scores]
    assert [v for scores in backend.loglik(base, some) for v in scores] == pytest.approx(flat, abs=1e-5)
    assert backend.generate(one, some, prompts) == out_one
    assert out_one != base_before and out_two != out_one
    # the adapter switched in place gives what a fresh model with only that adapter gives
    fresh, tokenizer = load_model(str(varied_model_dir), dtype="fp32", device="cpu")
    reference = PeftModel.from_pretrained(fresh, str(adapters[1])).eval()
    assert generate_greedy(reference, tokenizer, prompts, 10, batch_size=3, progress=False) == out_two


@pytest.fixture
def eval_cfg(tmp_path, varied_model_dir, adapters):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={
        "student.model": str(varied_model_dir),
        "data.n_train": 4,
        "data.n_eval": 5,
        "eval.max_new_tokens": 8,
        "eval.batch_size": 2,
        "eval.qualitative_index": 2,
        "eval.n_random_examples": 2,
    })
    data.run_phase(cfg)
    for k, adapter in enumerate(adapters, 1):
        shutil.copytree(adapter, cfg.run_dir / "sft" / f"stage{k}")
    return cfg


@pytest.mark.model
def test_end_to_end_evaluation_and_cache(eval_cfg, monkeypatch):
    cfg = eval_cfg
    summary = evaluation.run_phase(cfg)
    out = cfg.run_dir / "eval"
    assert summary["generated"] == {"base": 5, "stage1": 5, "stage2": 5}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_order"] == ["base", "stage1", "stage2"] and metrics["stand_in"] is True
    for name in ("base", "stage1", "stage2"):
        preds = read_jsonl(out / f"predictions_{name}.jsonl")
        assert [p["index"] for p in preds] == [0, 1, 2, 3, 4]
        assert set(preds[0]) >= {"question_id", "index", "response", "extracted", "gold", "correct", "format_ok"}
        m = metrics["models"][name]
        assert m["n"] == 5 and m["correct"] == sum(p["correct"] for p in preds)
        assert m["format_ok"] == sum(p["format_ok"] for p in preds)
        ll = read_jsonl(out / f"loglik_{name}.jsonl")
        assert m["loglik_correct"] == sum(r["correct"] for r in ll) and len(ll) == 5
    assert len(metrics["comparisons"]) == 3
    assert metrics["models"]["stage1"]["adapter_fingerprint"] != metrics["models"]["stage2"]["adapter_fingerprint"]
    qual = json.loads((out / "qualitative.json").read_text())
    assert qual["highlight"]["index"] == 2 and set(qual["highlight"]["answers"]) == {"base", "stage1", "stage2"}
    assert len(qual["random"]) == 2
    for fig in ("eval_accuracy.png", "eval_format.png", "eval_confusion.png"):
        assert (cfg.run_dir / "figures" / fig).stat().st_size > 1000

    # a re-run reuses every prediction and log-likelihood, loads no model, and gives the same file
    before = (out / "metrics.json").read_bytes()
    with monkeypatch.context() as patch:
        def forbidden(*args, **kwargs):
            raise AssertionError("a cached evaluation must not run the model")

        for method in ("_load_base", "generate", "loglik"):
            patch.setattr(HFBackend, method, forbidden)
        again = evaluation.run_phase(cfg)
    assert again["generated"] == {"base": 0, "stage1": 0, "stage2": 0}
    assert (out / "metrics.json").read_bytes() == before

    # the CLI is the same function
    assert cli.main([
        "evaluate", "--profile", "demo", "--run-dir", str(cfg.run_dir),
        "--set", f"student.model={cfg.student.model}", "--set", "data.n_eval=5", "--set", "data.n_train=4",
        "--set", "eval.max_new_tokens=8", "--set", "eval.batch_size=2", "--set", "eval.qualitative_index=2",
        "--set", "eval.n_random_examples=2",
    ]) == 0
    assert (out / "metrics.json").read_bytes() == before

    # changed generation settings or a retrained adapter invalidate exactly what they touch
    cfg.eval.max_new_tokens = 6
    changed = evaluation.run_phase(cfg)
    assert changed["generated"] == {"base": 5, "stage1": 5, "stage2": 5}
    _make_adapter(cfg.student.model, cfg.run_dir / "sft" / "stage2", seed=7)
    retrained = evaluation.run_phase(cfg)
    assert retrained["generated"] == {"base": 0, "stage1": 0, "stage2": 5}
    assert evaluation.run_phase(cfg, force=True)["generated"] == {"base": 5, "stage1": 5, "stage2": 5}


def test_missing_stage_adapter_is_a_clear_error(eval_cfg):
    shutil.rmtree(eval_cfg.run_dir / "sft" / "stage2")
    with pytest.raises(AdapterMissing, match=r"stage2.*'train' phase"):
        evaluation.run_phase(eval_cfg)
    eval_cfg.eval.models = ["base", "stage1"]
    summary = evaluation.run_phase(eval_cfg)
    assert list(summary["models"]) == ["base", "stage1"]


def test_adapter_path_is_named_by_its_folder(eval_cfg, adapters):
    eval_cfg.eval.models = ["base", str(adapters[0])]
    eval_cfg.eval.loglik = False
    summary = evaluation.run_phase(eval_cfg)
    assert list(summary["models"]) == ["base", "adapter1"]
    assert summary["models"]["adapter1"]["loglik_accuracy"] is None
    assert (eval_cfg.run_dir / "eval" / "predictions_adapter1.jsonl").is_file()


@pytest.mark.model
def test_smollm2_batched_equals_unbatched_and_stops(smollm2_dir):
    """The demo's real model: same greedy tokens batched or not, answers end at the end-of-turn token."""
    from dasd_utils.models import load_model

    model, tokenizer = load_model(str(smollm2_dir), dtype="fp32", device="cpu")
    rows = load_split("bundled", "validation")[:4]
    prompts = [render_chat_prompt(tokenizer, row, COURSE_SYSTEM_PROMPT) for row in rows]
    prefix = evaluation.chat_prefix_ids(tokenizer, COURSE_SYSTEM_PROMPT)
    batched = generate_greedy(model, tokenizer, prompts, max_new_tokens=48, batch_size=4, progress=False, prefix_ids=prefix)
    single = [generate_greedy(model, tokenizer, [p], max_new_tokens=48, batch_size=1, progress=False)[0] for p in prompts]
    assert [b["token_ids"] for b in batched] == [s["token_ids"] for s in single]
    stopped = [b for b in batched if b["finish_reason"] == "stop"]
    assert stopped and all(b["token_ids"][-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") for b in stopped)
    assert all("<|im_end|>" not in b["response"] for b in batched)


def test_greedy_loop_matches_transformers_generate(model_and_tokenizer, rows):
    """Our decoding loop (with finished rows leaving the batch) gives what model.generate gives."""
    import torch

    from dasd_utils.evaluation import greedy_batch

    model, tokenizer = model_and_tokenizer
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # the random model never picks <|im_end|>: declare stop tokens it does emit, so rows finish early
    prompts = [render_chat_prompt(tokenizer, row, COURSE_SYSTEM_PROMPT) for row in rows[:4]]
    probe = generate_greedy(model, tokenizer, prompts, 10, batch_size=4, progress=False)
    stop_ids = [eos, probe[0]["token_ids"][2], probe[1]["token_ids"][5]]
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        mask = torch.ones_like(ids)
        ours = greedy_batch(model, ids, mask, 10, stop_ids)[0]
        with torch.no_grad():
            ref = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
            )[0, ids.shape[1]:].tolist()
        ref = ref[: next((k + 1 for k, t in enumerate(ref) if t in stop_ids), len(ref))]
        assert ours == ref
    # rows stopping at different steps leave the batch without changing the others
    tokenizer_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, tokenizer_ids))
    ids = torch.full((4, width), tokenizer.pad_token_id)
    mask = torch.zeros((4, width), dtype=torch.long)
    for r, t in enumerate(tokenizer_ids):
        ids[r, width - len(t):] = torch.tensor(t)
        mask[r, width - len(t):] = 1
    batched = greedy_batch(model, ids, mask, 10, stop_ids)
    assert len(batched[0]) == 3 and len(batched[1]) <= 6
    assert batched == [greedy_batch(model, ids[r:r + 1, width - len(t):], mask[r:r + 1, width - len(t):], 10, stop_ids)[0]
                       for r, t in enumerate(tokenizer_ids)]


# --------------------------------------------------------------------------- stopping at the answer line
@pytest.mark.parametrize("text, complete", [
    ("Final Answer: C", False),  # the line is not finished: "C" could still be "Cat"
    ("Final Answer: C\n", True),
    ("**Final Answer:** (b).\n", True),
    ("Final Answer: Bank\n", False),
    ("<reasoning>\nso Final Answer: B\nhmm", False),  # a draft inside the reasoning block
    ("<reasoning>\nA fits.\n</reasoning>\nFinal Answer: A\nThe end", True),
    ("The correct answer is E.\n", False),  # no "Final Answer" marker: the model goes on
])
def test_answer_line_complete(text, complete):
    from dasd_utils.prompts import answer_line_complete

    assert answer_line_complete(text) is complete


@pytest.mark.model
def test_stop_at_answer_ends_each_row_at_its_answer_line(tiny_model_dir, monkeypatch):
    import torch

    from dasd_utils.evaluation import generation
    from dasd_utils.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    prompts = [f"<|im_start|>user\nQuestion {k}<|im_end|>\n<|im_start|>assistant\n" for k in range(3)]
    full = generation.generate_greedy(model, tokenizer, prompts, 12, 3, progress=False)
    # A stand-in rule (the tiny random model writes blank lines): complete at its 4th character.
    def complete(text):
        return len(text or "") >= 4

    monkeypatch.setattr(generation, "answer_line_complete", complete)
    cut = generation.generate_greedy(model, tokenizer, prompts, 12, 3, progress=False, stop_at_answer=True)
    for a, b in zip(full, cut):
        assert b["token_ids"] == a["token_ids"][: len(b["token_ids"])]  # the same tokens, only fewer
        if b["finish_reason"] == "answer":
            assert complete(b["response"]) and not complete(tokenizer.decode(b["token_ids"][:-1], skip_special_tokens=True))
    assert any(b["finish_reason"] == "answer" for b in cut) and sum(b["n_new_tokens"] for b in cut) < sum(
        a["n_new_tokens"] for a in full)
