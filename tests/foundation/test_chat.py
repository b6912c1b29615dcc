"""One rendering for SFT, DAS scoring and evaluation (issue 10 item 4), with the real tokenizers.

Every SFT example must be exactly ``prompt + response + end-of-turn (+ the template's tail)``,
where ``prompt`` is the very text DAS scoring and evaluation give the student; only the response
and the end-of-turn token are supervised. Checked with SmolLM2's tokenizer, the real Qwen3
tokenizer with its hybrid template (which writes an empty ``<think>`` block before the last
assistant answer) and with Qwen3-4B-Instruct-2507's template (which does not).
"""

from __future__ import annotations

import copy

import pytest
from support.answer_samples import ANSWERS
from support.real_tokenizers import qwen3_instruct_2507_template

from dasd_utils import sft
from dasd_utils.chat import ChatTemplateError, generation_prompt, render_turn, turn_layout
from dasd_utils.config import COURSE_SYSTEM_PROMPT
from dasd_utils.data import load_split
from dasd_utils.evaluation import chat_prefix_ids, render_chat_prompt
from dasd_utils.prompts import build_messages, build_sft_example
from dasd_utils.scoring import chat_prompt, encode_for_scoring

THINK = "<think>\n\n</think>\n\n"
ROWS = load_split("bundled", "validation")[:4]
RESPONSES = [a for a, _ in ANSWERS[:4]] + [
    "\n\nStarts with blank lines. Final Answer: A",  # Qwen3's hybrid template strips these newlines
    " Starts with a space. 🦀 crabs, “quotes”, café. Final Answer: B",
]


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def qwen3_2507_tokenizer(qwen3_tokenizer):
    tok = copy.deepcopy(qwen3_tokenizer)
    tok.chat_template = qwen3_instruct_2507_template
    return tok


@pytest.fixture(params=["smollm2", "qwen3_hybrid", "qwen3_instruct_2507"])
def student_tokenizer(request, smollm2_tokenizer, qwen3_tokenizer, qwen3_2507_tokenizer):
    return request.param, {
        "smollm2": smollm2_tokenizer, "qwen3_hybrid": qwen3_tokenizer, "qwen3_instruct_2507": qwen3_2507_tokenizer,
    }[request.param]


def _pairs():
    return [(row, response) for row in ROWS for response in RESPONSES[:3]] + [(ROWS[0], r) for r in RESPONSES[3:]]


def test_sft_scoring_and_evaluation_share_one_rendering(student_tokenizer):
    name, tok = student_tokenizer
    pairs = _pairs()
    encoded = encode_for_scoring(tok, [build_messages(row) for row, _ in pairs], [resp for _, resp in pairs])
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    for (row, response), scored in zip(pairs, encoded):
        out = sft.tokenize_sft_example(tok, build_sft_example(row, response))
        ids, labels, n_prompt = out["input_ids"], out["labels"], out["prompt_len"]
        eval_prompt = render_chat_prompt(tok, row, COURSE_SYSTEM_PROMPT)
        assert eval_prompt == chat_prompt(tok, build_messages(row))
        eval_ids = tok(eval_prompt, add_special_tokens=False)["input_ids"]
        # SFT example = the evaluation prompt's tokens + the scored response tokens + <|im_end|> + "\n".
        assert ids[:n_prompt] == eval_ids == scored.prompt_ids
        assert ids[n_prompt : out["response_end"]] == scored.response_ids + [eot]
        assert tok.decode(ids[out["response_end"] :]) == "\n"
        # Supervised: exactly the response and one end-of-turn token, nothing of the prompt.
        supervised = [t for t, label in zip(ids, labels) if label != -100]
        assert supervised == scored.response_ids + [eot]
        assert tok.decode(supervised) == response + "<|im_end|>"
        assert all(label == -100 for label in labels[:n_prompt] + labels[out["response_end"] :])
        # The evaluation's shared prefix cache starts every prompt.
        assert eval_ids[: len(chat_prefix_ids(tok, COURSE_SYSTEM_PROMPT))] == chat_prefix_ids(tok, COURSE_SYSTEM_PROMPT)
        if name == "qwen3_hybrid":
            assert eval_prompt.endswith("<|im_start|>assistant\n" + THINK) and out["assistant_prefix"] == THINK
            assert "<think>" not in tok.decode(supervised)
        else:
            assert eval_prompt.endswith("<|im_start|>assistant\n") and out["assistant_prefix"] == ""
            assert eval_prompt == tok.apply_chat_template(build_messages(row), tokenize=False, add_generation_prompt=True)
        assert not out["prompt_mismatch"]
        # The template's own whole-conversation rendering agrees, except where it rewrites the answer.
        assert out["response_rewritten"] == (name == "qwen3_hybrid" and response.startswith("\n"))


def test_hybrid_template_prompt_is_its_non_thinking_generation_prompt(qwen3_tokenizer):
    messages = build_messages(ROWS[0])
    no_thinking = qwen3_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert generation_prompt(qwen3_tokenizer, messages) == no_thinking
    layout = turn_layout(qwen3_tokenizer, messages)
    assert layout.assistant_prefix == THINK and layout.end_of_turn == "<|im_end|>" and layout.tail == "\n"


def test_build_dataset_counts_rewritten_responses_and_records_the_prefix(qwen3_tokenizer, caplog):
    records = [{"messages": build_sft_example(ROWS[0], r)} for r in RESPONSES]
    with caplog.at_level("WARNING", logger="dasd_utils.sft"):
        dataset, stats = sft.build_sft_dataset(records, qwen3_tokenizer, None)
    assert stats.n_examples == len(RESPONSES) and stats.n_response_rewritten == 1
    assert stats.assistant_prefix == THINK and "rewrites the assistant's text" in caplog.text
    supervised = sum(sum(1 for label in row if label != -100) for row in dataset["labels"])
    assert supervised == stats.n_supervised_tokens == sum(
        len(qwen3_tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in RESPONSES
    )


@pytest.mark.parametrize(
    "template, message",
    [
        # The answer is rewritten even for a plain probe: no faithful rendering exists.
        ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "does not write the assistant's text"),
        # Text between the answer and the end-of-turn token.
        ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }} <|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "between the assistant's text and the end-of-turn"),
        # A past assistant header that neither extends nor is extended by the generation prompt.
        ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>model\n{% endif %}", "generation prompt ends with"),
        # No end-of-turn token at all.
        ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}assistant: {% endif %}", "end-of-turn"),
    ],
)
def test_templates_without_one_rendering_stop_with_an_error_naming_the_template(qwen3_tokenizer, template, message):
    tok = copy.deepcopy(qwen3_tokenizer)
    tok.chat_template = template
    messages = build_sft_example(ROWS[0], RESPONSES[0])
    for call in (
        lambda: sft.tokenize_sft_example(tok, messages),
        lambda: chat_prompt(tok, messages[:2]),
        lambda: render_chat_prompt(tok, ROWS[0], COURSE_SYSTEM_PROMPT),
    ):
        with pytest.raises(ChatTemplateError, match=message) as info:
            call()
        assert "the chat template of" in str(info.value) and "sha256" in str(info.value)


def test_render_turn_needs_an_assistant_answer(qwen3_tokenizer):
    with pytest.raises(ValueError, match="assistant"):
        render_turn(qwen3_tokenizer, build_messages(ROWS[0]))
    with pytest.raises(ValueError, match="end-of-turn token"):
        sft.tokenize_sft_example(qwen3_tokenizer, build_sft_example(ROWS[0], "Stop here<|im_end|> then go on."))
