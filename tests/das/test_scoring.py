"""Batched student teacher forcing against a straightforward per-example reference."""

from __future__ import annotations

import numpy as np
import pytest
from support.das_records import make_response

from dasd_utils.prompts import build_messages
from dasd_utils.scoring import (
    EncodedExample,
    batched_token_logprobs,
    chat_prompt,
    encode_for_scoring,
    length_sorted_batches,
    reference_token_logprobs,
    shared_prefix_length,
)

QUESTIONS = [
    {
        "id": f"q{i}", "question": q, "question_concept": c,
        "choices": {"label": list("ABCDE"), "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]},
        "answerKey": "ABCDE"[i % 5],
    }
    for i, (q, c) in enumerate([
        ("Who is likely to be excited about a crab?", "crab"),
        ("Where would you find a crab?", "crab"),
        ("What does a crab do when scared?", "fear"),
        ("Why is the café crème 3.5 € ?", "café"),
        ("Is 🦀 an emoji?", "emoji"),
    ])
]


def _contents():
    out = [make_response(q, i) for i, q in enumerate(QUESTIONS)]
    out.append("\n\nStarts with blank lines. Final Answer: A")  # joint tokenization would merge "\n" + "\n\n"
    out.append(" Starts with a space.   Repeated  spaces. Final Answer: B")
    return out


def _messages():
    qs = QUESTIONS + QUESTIONS[:2]
    return [build_messages(q) for q in qs]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dasd_utils.models import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tokenizer


def test_template_response_boundary_never_merges_tokens(tiny):
    _, tokenizer = tiny
    contents, messages = _contents(), _messages()
    examples = encode_for_scoring(tokenizer, messages, contents)
    merged_somewhere = False
    for ex, msgs, content in zip(examples, messages, contents):
        prompt = chat_prompt(tokenizer, msgs)
        assert prompt.endswith("assistant\n")  # the generation prompt is there
        assert ex.prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        # Response offsets are offsets into the content itself and start at its first character.
        assert ex.offsets[0, 0] == 0 and ex.offsets[-1, 1] == len(content)
        assert tokenizer.decode(ex.response_ids) == content
        joint = tokenizer(prompt + content, add_special_tokens=False)["input_ids"]
        if joint[: len(ex.prompt_ids)] != ex.prompt_ids:
            merged_somewhere = True
    # The check is meaningful: a joint tokenization does merge across the boundary for one of them.
    assert merged_somewhere


@pytest.fixture(scope="module")
def references(tiny):
    model, tokenizer = tiny
    examples = encode_for_scoring(tokenizer, _messages(), _contents())
    return examples, [reference_token_logprobs(model, ex) for ex in examples]


@pytest.mark.parametrize("batch_size, chunk_tokens", [(1, 1024), (3, 7), (8, 64), (16, 1)])
@pytest.mark.model
def test_batched_matches_the_per_example_reference_in_fp32(tiny, references, batch_size, chunk_tokens):
    model, tokenizer = tiny
    examples, refs = references
    batched = batched_token_logprobs(model, examples, batch_size=batch_size, chunk_tokens=chunk_tokens,
                                     pad_token_id=tokenizer.pad_token_id, progress=False)
    assert len(batched) == len(examples)
    for ex, got, ref in zip(examples, batched, refs):
        assert got.shape == (len(ex.response_ids),) and got.dtype == np.float32
        assert np.max(np.abs(got - ref)) < 1e-4
        assert np.all(got <= 0)


@pytest.mark.model
def test_shared_prefix_is_run_once_and_gives_the_same_scores(tiny, references):
    model, tokenizer = tiny
    examples, refs = references
    prefix = shared_prefix_length(examples)
    # The chat template + the course's system prompt: a long prefix common to every example.
    assert prefix >= 50 and all(ex.prompt_ids[:prefix] == examples[0].prompt_ids[:prefix] for ex in examples)
    assert prefix < min(len(ex.prompt_ids) for ex in examples)
    without = batched_token_logprobs(model, examples, batch_size=4, pad_token_id=tokenizer.pad_token_id,
                                     progress=False, reuse_prefix=False)
    for got, ref in zip(without, refs):
        assert np.max(np.abs(got - ref)) < 1e-4
    # Different system prompts share almost nothing: the prefix cache is skipped, results still exact.
    other = encode_for_scoring(tokenizer, [build_messages(QUESTIONS[0], "Be brief."), build_messages(QUESTIONS[1])],
                               _contents()[:2])
    assert shared_prefix_length(other) < 16
    for got, ex in zip(batched_token_logprobs(model, other, batch_size=2, progress=False,
                                              pad_token_id=tokenizer.pad_token_id), other):
        assert np.max(np.abs(got - reference_token_logprobs(model, ex))) < 1e-4
    assert shared_prefix_length([]) == 0


@pytest.mark.model
def test_padding_token_choice_does_not_change_scores(tiny):
    model, tokenizer = tiny
    examples = encode_for_scoring(tokenizer, _messages(), _contents())
    a = batched_token_logprobs(model, examples, batch_size=8, pad_token_id=tokenizer.pad_token_id, progress=False)
    b = batched_token_logprobs(model, examples, batch_size=8, pad_token_id=5, progress=False)
    for x, y in zip(a, b):
        assert np.max(np.abs(x - y)) < 1e-5


def test_bf16_scores_stay_close_to_fp32(tiny):
    import torch

    model, tokenizer = tiny
    examples = encode_for_scoring(tokenizer, _messages()[:3], _contents()[:3])
    ref = batched_token_logprobs(model, examples, batch_size=3, pad_token_id=tokenizer.pad_token_id, progress=False)
    half = model.to(torch.bfloat16)
    try:
        got = batched_token_logprobs(half, examples, batch_size=3, pad_token_id=tokenizer.pad_token_id, progress=False)
    finally:
        model.to(torch.float32)
    for x, y in zip(got, ref):
        assert x.dtype == np.float32
        assert np.mean(np.abs(x - y)) < 0.05


def test_length_sorted_batches():
    assert length_sorted_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError):
        length_sorted_batches([1], 0)


def test_edge_cases(tiny):
    model, _ = tiny
    empty = EncodedExample([1, 2], [], np.zeros((0, 2), dtype=np.int64))
    assert batched_token_logprobs(model, [empty], progress=False)[0].shape == (0,)
    with pytest.raises(ValueError, match="empty prompt"):
        batched_token_logprobs(model, [EncodedExample([], [3], np.array([[0, 1]]))], progress=False)


@pytest.mark.model
def test_batched_matches_reference_on_smollm2(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dasd_utils.models import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ensure_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    # Four examples of different lengths (one starting with blank lines): padding and chunking both happen.
    pick = [0, 3, 4, 5]
    examples = encode_for_scoring(tokenizer, [_messages()[i] for i in pick], [_contents()[i] for i in pick])
    batched = batched_token_logprobs(model, examples, batch_size=4, chunk_tokens=128,
                                     pad_token_id=tokenizer.pad_token_id, progress=False)
    worst = 0.0
    for ex, got in zip(examples, batched):
        worst = max(worst, float(np.max(np.abs(got - reference_token_logprobs(model, ex)))))
    assert worst < 1e-4, worst
