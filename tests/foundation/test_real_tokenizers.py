"""The real tokenizer fixtures load and behave like the models' own (byte-level BPE, templates)."""

import pytest


def test_gptoss_tokenizer_is_o200k_harmony(gptoss_tokenizer):
    ids = gptoss_tokenizer.encode("<|channel|>final<|message|>Hi", add_special_tokens=False)
    pieces = gptoss_tokenizer.convert_ids_to_tokens(ids)
    assert "<|channel|>" in pieces and "<|message|>" in pieces
    assert gptoss_tokenizer.convert_tokens_to_ids("<|return|>") == 200002
    # A character split into several byte tokens decodes to U+FFFD piece by piece.
    emoji_ids = gptoss_tokenizer.encode("🦀", add_special_tokens=False)
    assert len(emoji_ids) > 1
    assert all(gptoss_tokenizer.decode([i]) == "\ufffd" for i in emoji_ids)
    assert gptoss_tokenizer.decode(emoji_ids) == "🦀"


def test_qwen3_tokenizer_hybrid_template(qwen3_tokenizer):
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    text = qwen3_tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<think>" in text  # the npm file carries Qwen3's hybrid template
    assert qwen3_tokenizer.eos_token == "<|im_end|>"


def test_instruct_2507_template_has_no_think_block(qwen3_tokenizer):
    from support.real_tokenizers import qwen3_instruct_2507_template

    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    text = qwen3_tokenizer.apply_chat_template(messages, tokenize=False, chat_template=qwen3_instruct_2507_template)
    assert text == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    with pytest.raises(KeyError):
        from support.real_tokenizers import tokenizer_dir

        tokenizer_dir("nope")
