"""The quality filter: one test per rejection reason, and the reason is always given."""

from __future__ import annotations

import pytest

from dasd_utils.config import QualityConfig
from dasd_utils.quality import REASONS, QualityVerdict, check_response, repeated_ngram_ratio

GOOD = (
    "<reasoning>The question asks who would be excited about a crab. A fish market and a pet shop are "
    "places, the intertidal zone is a habitat and obesity is a condition. Fishmongers sell seafood and "
    "would welcome a fine crab.</reasoning>\nFinal Answer: C"
)


def words_counter(text: str) -> int:
    """A stand-in token counter: one token per whitespace-separated word."""
    return len(text.split())


def test_good_response_is_kept():
    verdict = check_response(GOOD, "C", count_tokens=words_counter, max_context=2048,
                             count_response_tokens=words_counter, max_new_tokens=512)
    assert verdict == QualityVerdict(ok=True, reason=None, answer="C", detail="")
    assert verdict.to_dict() == {"ok": True, "reason": None, "answer": "C", "detail": ""}


@pytest.mark.parametrize("content", [None, "", "   \n\t "])
def test_empty(content):
    verdict = check_response(content, "C")
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "empty", None)


def test_too_short():
    text = "Final Answer: C"  # a valid answer, but 15 characters < 30
    verdict = check_response(text, "C")
    assert (verdict.ok, verdict.reason) == (False, "too_short")
    assert verdict.answer == "C"  # still recorded, for the statistics
    assert "15 < 30" in verdict.detail


def test_too_short_threshold_is_configurable():
    text = "<reasoning>Sells crabs.</reasoning>\nFinal Answer: C"
    assert check_response(text, "C").ok
    verdict = check_response(text, "C", QualityConfig(min_chars=len(text) + 1))
    assert verdict.reason == "too_short"


@pytest.mark.parametrize(
    "content",
    [
        "<reasoning>The crab would interest fishmongers, I believe, more than anyone.</reasoning>",
        "<reasoning>Fishmongers sell crabs, so they are the ones to be excited.</reasoning>\nFinal Answer: C or D",
        "<reasoning>Fishmongers sell crabs.</reasoning>\nFinal Answer: A\nFinal Answer: C",
        "I'm sorry, but I can't help with that request about crabs.",
        # a lenient conclusion is not the requested format
        "Fishmongers sell crabs, therefore the answer is C.",
    ],
)
def test_no_final_answer(content):
    verdict = check_response(content, "C")
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "no_final_answer", None)


def test_wrong_answer_rejected_by_default():
    verdict = check_response(GOOD.replace("Final Answer: C", "Final Answer: A"), "C")
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "wrong_answer", "A")
    assert verdict.detail == "answer A != gold C"


def test_wrong_answer_kept_when_correctness_is_not_required():
    # The course filtered on format only; require_correct=False reproduces it.
    verdict = check_response(GOOD.replace("Final Answer: C", "Final Answer: A"), "C", QualityConfig(require_correct=False))
    assert verdict.ok and verdict.answer == "A"


def test_no_gold_means_no_correctness_check():
    assert check_response(GOOD, None).ok


def test_repetitive():
    loop = "The crab is sold at the fish market by the fishmonger. " * 12
    content = f"<reasoning>{loop}</reasoning>\nFinal Answer: C"
    assert repeated_ngram_ratio(content, 8) > 0.3
    verdict = check_response(content, "C")
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "repetitive", "C")
    assert "8-grams repeated" in verdict.detail


def test_repeated_ngram_ratio_values():
    assert repeated_ngram_ratio("one two three", 8) == 0.0  # shorter than an n-gram
    distinct = " ".join(f"w{i}" for i in range(40))
    assert repeated_ngram_ratio(distinct, 8) == 0.0
    # "a b c d" x 4 with n=2: 15 bigrams, 4 distinct -> 11 repeats
    assert repeated_ngram_ratio("a b c d " * 4, 2) == pytest.approx(11 / 15)
    assert not check_response(GOOD, "C").reason  # ordinary reasoning is not flagged


def test_repetition_threshold_is_configurable():
    text = GOOD.replace("Fishmongers sell", "Fishmongers sell seafood. Fishmongers sell seafood. Fishmongers sell")
    ratio = repeated_ngram_ratio(text, 3)
    assert 0 < ratio < 0.3
    assert check_response(text, "C", QualityConfig(repetition_ngram=3)).ok
    assert check_response(text, "C", QualityConfig(repetition_ngram=3, repetition_max_ratio=ratio / 2)).reason == "repetitive"


def test_too_long_with_a_token_counter():
    n_words = len(GOOD.split())
    verdict = check_response(GOOD, "C", count_tokens=words_counter, max_context=n_words - 1)
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "too_long", "C")
    assert verdict.detail == f"{n_words} tokens > {n_words - 1}"
    assert check_response(GOOD, "C", count_tokens=words_counter, max_context=n_words).ok  # exactly at the limit


def test_too_long_with_a_real_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    from dasd_utils.prompts import build_sft_example

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = {"question": "Who is likely to be excited about a crab?",
           "choices": {"label": list("ABCDE"), "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]}}

    def count_chat_tokens(response: str) -> int:
        # The whole training example (chat template included), as the SFT phase tokenizes it.
        text = tokenizer.apply_chat_template(build_sft_example(row, response), tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    n_tokens = count_chat_tokens(GOOD)
    assert n_tokens > len(tokenizer(GOOD)["input_ids"])  # the prompt counts too
    assert check_response(GOOD, "C", count_tokens=count_chat_tokens, max_context=n_tokens).ok
    assert check_response(GOOD, "C", count_tokens=count_chat_tokens, max_context=n_tokens - 1).reason == "too_long"


def test_context_check_skipped_says_so():
    verdict = check_response(GOOD, "C")
    assert verdict.ok and "not checked" in verdict.detail
    off = check_response(GOOD, "C", QualityConfig(check_student_context=False, check_student_generation=False))
    assert off.ok and off.detail == ""


def test_every_reason_is_reachable_and_listed():
    long_loop = "<reasoning>" + "crab fish market fishmonger seller buyer " * 20 + "</reasoning>\nFinal Answer: C"
    reasons = {
        check_response("", "C").reason,
        check_response("Final Answer: C", "C").reason,
        check_response("<reasoning>No conclusion at all here, sorry.</reasoning>", "C").reason,
        check_response(GOOD, "B").reason,
        check_response(long_loop, "C").reason,
        check_response(GOOD.replace("Fishmongers", "The output format aside, fishmongers"), "C").reason,
        check_response(GOOD, "C", count_tokens=words_counter, max_context=5).reason,
        check_response(GOOD, "C", count_response_tokens=words_counter, max_new_tokens=5).reason,
    }
    assert reasons == set(REASONS)


def test_first_failing_check_is_the_reason():
    # Wrong and repetitive: correctness is checked first, as documented.
    loop = "<reasoning>" + "the crab is sold at the fish market today " * 10 + "</reasoning>\nFinal Answer: A"
    assert check_response(loop, "C").reason == "wrong_answer"
    assert check_response(loop, "C", QualityConfig(require_correct=False)).reason == "repetitive"


# --------------------------------------------------------------------------- format talk, generation length
@pytest.mark.parametrize("talk", [
    "We must answer with <reasoning> tags then the letter.",
    "The user wants Final Answer: X on the last line.",
    "Output format: reasoning first, then the answer.",
    "Follow the required format with the tags.",
])
def test_format_talk_in_the_reasoning_is_rejected(talk):
    text = f"<reasoning>\nFishmongers sell crabs. {talk} So C.\n</reasoning>\nFinal Answer: C"
    verdict = check_response(text, "C")
    assert (verdict.ok, verdict.reason, verdict.answer) == (False, "format_talk", "C")
    assert "the reasoning mentions" in verdict.detail


def test_the_format_itself_and_ordinary_words_are_not_format_talk():
    assert check_response(GOOD, "C").ok  # its own tags and answer line are the format, not talk about it
    plain = GOOD.replace("would welcome", "would, in any format of market, welcome")  # "format" alone: a word
    assert check_response(plain, "C").ok
    assert not check_response(GOOD.replace("fine crab.", "fine crab. Final Answer: C"), "C", QualityConfig()).ok
    assert check_response(GOOD.replace("Fishmongers", "Format tags aside, fishmongers"), "C",
                          QualityConfig(reject_format_talk=False)).ok


def test_longer_than_the_students_generation_budget():
    verdict = check_response(GOOD, "C", count_response_tokens=words_counter, max_new_tokens=10)
    assert (verdict.ok, verdict.reason) == (False, "too_long_to_generate")
    assert f"{words_counter(GOOD)} student tokens > eval.max_new_tokens=10" in verdict.detail
    assert check_response(GOOD, "C", count_response_tokens=words_counter, max_new_tokens=words_counter(GOOD)).ok
    unchecked = check_response(GOOD, "C", count_tokens=words_counter, max_context=2048)
    assert unchecked.ok and unchecked.detail == "generation length not checked (no student tokenizer given)"
    assert check_response(GOOD, "C", QualityConfig(check_student_generation=False)).detail == (
        "context length not checked (no student tokenizer given)")
    assert {"format_talk", "too_long_to_generate"} <= set(REASONS)
