"""The harmony path of a real vLLM, served the tiny scripted gpt-oss (``tools/tiny_gptoss.py``).

The model's greedy answer is scripted: analysis "Le café — c’est bon 🦀." (the crab is three
o200k tokens), then final "Final Answer: A". These facts feed the project's harmony route.
"""

from __future__ import annotations

import pytest
from support.vllm_cases import GIVEN_ANSWER, RAW_HARMONY_PROMPT

pytestmark = pytest.mark.real_vllm

ANALYSIS = "Le café — c’est bon 🦀."
FINAL = "Final Answer: A"
# what vLLM returns in logprobs.content for that answer: every token of the harmony stream
STREAM = f"<|channel|>analysis<|message|>{ANALYSIS}<|end|><|start|>assistant<|channel|>final<|message|>{FINAL}<|return|>"
CHANNEL, MESSAGE, END, START = 200005, 200008, 200007, 200006
ASSISTANT, FINAL_WORD = 173781, 17196


def _ok(record: dict) -> dict:
    assert record["status"] == 200, f"{record['case']}: HTTP {record['status']}: {record['response']}"
    return record["response"]


def test_chat_splits_reasoning_and_content(live):
    """The analysis channel comes back as ``message.reasoning``, the final channel as ``content``."""
    message = _ok(live("gptoss_chat_logprobs"))["choices"][0]["message"]
    assert message["reasoning"] == ANALYSIS
    assert message["content"] == FINAL
    assert "reasoning_content" not in message


def test_chat_logprobs_cover_the_whole_harmony_stream(live):
    """logprobs.content: channel markers, analysis, final text and the trailing ``<|return|>``, one entry per token."""
    response = _ok(live("gptoss_chat_logprobs"))
    choice = response["choices"][0]
    entries = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == STREAM
    assert len(entries) == len(choice["token_ids"]) == response["usage"]["completion_tokens"]
    assert entries[-1]["token"] == "<|return|>" and choice["finish_reason"] == "stop"
    markers = [e["token"] for e in entries if e["token"].startswith("<|")]
    assert markers == ["<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|channel|>", "<|message|>", "<|return|>"]


def test_split_character_on_the_harmony_path_is_empty_pieces_too(live):
    """On the harmony path too a split character reads "" with bytes [] then the whole text; never "\\ufffd"."""
    entries = _ok(live("gptoss_chat_logprobs"))["choices"][0]["logprobs"]["content"]
    assert not any("\ufffd" in e["token"] for e in entries)
    crab = [i for i, e in enumerate(entries) if e["token"] == " 🦀"][0]
    assert [e["token"] for e in entries[crab - 2 : crab + 1]] == ["", "", " 🦀"]
    assert entries[crab - 2]["bytes"] == entries[crab - 1]["bytes"] == []
    assert bytes(entries[crab]["bytes"]).decode("utf-8") == " 🦀"


def test_token_ids_mode_on_the_harmony_path(live):
    """``return_tokens_as_token_ids`` there: ``token_id:N`` for every token, markers included, and the decoded text's bytes."""
    plain = _ok(live("gptoss_chat_logprobs"))["choices"][0]
    entries = _ok(live("gptoss_chat_token_ids"))["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == [f"token_id:{i}" for i in plain["token_ids"]]
    assert [e["bytes"] for e in entries] == [e["bytes"] for e in plain["logprobs"]["content"]]


def test_continue_final_message_is_ignored(live):
    """Same prompt tokens with and without ``continue_final_message``/``add_generation_prompt: false``."""
    with_flags = _ok(live("gptoss_chat_prompt_logprobs_continue"))
    without = _ok(live("gptoss_chat_prompt_logprobs_plain"))
    assert with_flags["prompt_token_ids"] == without["prompt_token_ids"]
    assert with_flags["usage"]["prompt_tokens"] == without["usage"]["prompt_tokens"]


def test_given_answer_is_rendered_as_a_closed_final_message(live, tiny_tokenizer):
    """The last assistant message becomes ``<|channel|>final<|message|>ANSWER<|end|>``, then a new ``<|start|>assistant``; no analysis before it."""
    response = _ok(live("gptoss_chat_prompt_logprobs_continue"))
    ids = response["prompt_token_ids"]
    answer = tiny_tokenizer.encode(GIVEN_ANSWER, add_special_tokens=False)
    tail = [CHANNEL, FINAL_WORD, MESSAGE, *answer, END, START, ASSISTANT]
    assert ids[-len(tail):] == tail
    assert ids[-len(tail) - 2 : -len(tail)] == [START, ASSISTANT]
    # one max_tokens=1 step of a new message: harmony cannot parse it, the raw marker is the content
    assert response["choices"][0]["message"]["content"] == "<|channel|>"
    # prompt_logprobs cover it, the prompt's token first, as on chat-template models
    entries = response["prompt_logprobs"]
    assert entries[0] is None and len(entries) == len(ids)
    assert all(list(e)[0] == str(i) for i, e in zip(ids[1:], entries[1:]))


def test_raw_harmony_completion_continues_the_analysis(live):
    """``/v1/completions`` with a hand-rendered harmony prompt: special tokens parsed, the analysis continued, the final written."""
    response = _ok(live("gptoss_completions_raw_harmony"))
    choice = response["choices"][0]
    # completions put prompt_logprobs in the choice (chat: at the top level)
    assert "prompt_logprobs" not in response
    prompt_entries = choice["prompt_logprobs"]
    assert prompt_entries[0] is None
    ids = [int(next(iter(entry))) for entry in prompt_entries[1:]]
    assert ids[-5:-2] == [CHANNEL, 35644, MESSAGE], "markers in the prompt text are special tokens"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"][0] == "<|start|>"
    generated = " — c’est bon 🦀.<|end|><|start|>assistant<|channel|>final<|message|>Final Answer: A"
    # echo + skip_special_tokens false: the prompt, then the continuation with its markers; the
    # stop token <|return|> is not in the text but is the last logprob token
    assert choice["text"] == RAW_HARMONY_PROMPT + generated
    assert logprobs["tokens"][-1] == "<|return|>" and choice["finish_reason"] == "stop"
    assert len(logprobs["tokens"]) == len(prompt_entries) + 19, "echo: the prompt's tokens, then the 19 generated"
    text = choice["text"] + "<|return|>"
    for token, offset in zip(logprobs["tokens"], logprobs["text_offset"]):
        assert text[offset : offset + len(token)] == token


def test_raw_harmony_completion_with_default_skip_special_tokens(live):
    """Default ``skip_special_tokens``: markers leave the text but not logprobs, whose offsets then no longer match the text."""
    choice = _ok(live("gptoss_completions_raw_harmony_skip"))["choices"][0]
    assert choice["text"] == " — c’est bon 🦀.assistantfinalFinal Answer: A"
    logprobs = choice["logprobs"]
    assert "<|end|>" in logprobs["tokens"]
    mismatched = [
        token for token, offset in zip(logprobs["tokens"], logprobs["text_offset"])
        if choice["text"][offset : offset + len(token)] != token
    ]
    assert mismatched, "offsets now match the text: the raw route may drop skip_special_tokens=false"


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    from support import vllm_tier

    return AutoTokenizer.from_pretrained(str(vllm_tier.tiny_gptoss_dir()))
