"""Prompt formatting and answer / reasoning extraction on realistic model responses."""

from __future__ import annotations

import pytest

from dasd_utils.config import COURSE_SYSTEM_PROMPT
from dasd_utils.prompts import (
    build_messages,
    build_sft_example,
    extract_answer,
    extract_reasoning,
    final_answer_letters,
    format_question,
    has_final_answer_format,
)

CRAB = {
    "id": "a588407ecaecf0f30c2241c30b470fe2",
    "question": "Who is likely to be excited about a crab?",
    "question_concept": "crab",
    "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]},
    "answerKey": "C",
}

CRAB_USER_MESSAGE = (
    "Question: Who is likely to be excited about a crab?\n"
    "\n"
    "Options:\n"
    "A. fish market\n"
    "B. pet shop\n"
    "C. fishmongers\n"
    "D. intertidal zone\n"
    "E. obesity"
)


def test_format_question_exact_text():
    assert format_question(CRAB) == CRAB_USER_MESSAGE


def test_build_messages_system_then_user():
    messages = build_messages(CRAB)
    assert messages == [
        {"role": "system", "content": COURSE_SYSTEM_PROMPT},
        {"role": "user", "content": CRAB_USER_MESSAGE},
    ]
    custom = build_messages(CRAB, "Answer briefly.")
    assert custom[0] == {"role": "system", "content": "Answer briefly."}


def test_build_sft_example_appends_the_response():
    response = "<reasoning>People sell crabs.</reasoning>\nFinal Answer: C"
    messages = build_sft_example(CRAB, response)
    assert messages[:2] == build_messages(CRAB)
    assert messages[2] == {"role": "assistant", "content": response}


def test_system_prompt_asks_for_the_parsed_format():
    # The format the parser expects is the one the prompt asks for.
    assert "<reasoning>...</reasoning>" in COURSE_SYSTEM_PROMPT
    assert "Final Answer: X" in COURSE_SYSTEM_PROMPT


COURSE_STAGE2_RESPONSE = (
    "<reasoning> The question asks for a \u201cwho\u201d that would be excited about a crab. Among the options, "
    "only a living entity that could have a reaction to a crab is a person. The fish market, pet shop, and "
    "intertidal zone are places or environments, not entities that can be excited. \u201cObesity\u201d is a "
    "condition, not a person. The only plausible answer is a fishmonger, who sells fish and seafood and would "
    "likely be interested in crabs as a product. Therefore, the most appropriate choice is C. </reasoning> "
    "Final Answer: C"
)

# (response, expected letter or None). Realistic outputs of gpt-oss, Qwen and small models.
EXTRACT_CASES = [
    # the format asked for, and its usual decorations
    ("<reasoning>Crabs are sold by fishmongers.</reasoning>\nFinal Answer: C", "C"),
    (COURSE_STAGE2_RESPONSE, "C"),
    ("Final Answer: (C)", "C"),
    ("**Final Answer:** C.", "C"),
    ("**Final Answer: C**", "C"),
    ("**Final Answer**: B", "B"),
    ("Final Answer: **E**", "E"),
    ("FINAL ANSWER: D", "D"),
    ("Final Answer:A", "A"),
    ("Final Answer - B", "B"),
    ("Final answer is D", "D"),
    ("Final Answer: [E]", "E"),
    ("Final Answer: `C`", "C"),
    ("Final Answer: Option C", "C"),
    ("Final Answer: Choice B", "B"),
    ("### Final Answer\nC", "C"),
    # lower case and trailing option text
    ("final answer: c", "C"),
    ("Final Answer: e.", "E"),
    ("Final Answer: c) fishmongers", "C"),
    ("Final Answer: C. fishmongers", "C"),
    ("Final Answer: C (fishmongers).", "C"),
    ("Final Answer: D, intertidal zone", "D"),
    ("**Final Answer: C \u2013 fishmongers**", "C"),
    ("Final Answer: A. Fish market", "A"),
    # LaTeX
    ("Final answer: \\boxed{C}", "C"),
    ("Final Answer: $\\boxed{B}$", "B"),
    ("Therefore the answer is $\\boxed{D}$.", "D"),
    # gpt-oss: a separate analysis channel leaking into the text, then the answer
    ("analysisThe user asks about a crab. Fishmongers sell crabs.assistantfinalFinal Answer: C", "C"),
    # letters mentioned while reasoning, then one final answer
    ("<reasoning>A is a place, B is a place, D is a zone and E is a condition; C remains.</reasoning>\nFinal Answer: C", "C"),
    ("<reasoning>At first glance the answer is A, but a market cannot be excited.</reasoning>\nFinal Answer: C", "C"),
    ("<reasoning>Draft: Final Answer: A. No: a market is a place, not a person.</reasoning>\nFinal Answer: C", "C"),
    ("The answer is B. Wait, reconsider.\nFinal Answer: C", "C"),
    ("Final Answer: E\n\nExplanation: A and B are places.", "E"),
    ("Final Answer: C\n\nFinal Answer: C", "C"),  # repeated, consistent
    # the prompt's own template echoed back, then a real answer
    ("I must end with 'Final Answer: X' where X is the letter.\n<reasoning>Sellers of crabs.</reasoning>\nFinal Answer: C", "C"),
    # without a "Final Answer" marker (lenient mode only)
    ("The correct answer is (E) obesity.", "E"),
    ("Answer: D", "D"),
    # two conflicting final answers, hedges: no single clear letter
    ("Final Answer: A\nFinal Answer: B", None),
    ("<reasoning>Hard to say.</reasoning>\nFinal Answer: C\nFinal Answer: D", None),
    ("Final Answer: C or D", None),
    ("Final Answer: C/D", None),
    ("Final answer: (B) or (E)", None),
    ("**Final Answer: C** or **D**", None),
    # refusals and non-answers
    ("I'm sorry, but I can't help with that.", None),
    ("I cannot determine the answer from the options given.", None),
    ("The answer is a matter of opinion.", None),
    ("", None),
    ("   \n", None),
    (None, None),
    ("Final Answer:", None),
    # the template itself, unfilled
    ("Final Answer: X", None),
    # words, not letters
    ("Final Answer: a fishmonger", None),  # the article "a", not option A
    ("Final Answer: an intertidal zone", None),
    ("Final Answer: Fishmongers", None),
    ("Final Answer: Bank", None),
    ("Final Answer: I think so", None),
    # a letter outside A-E
    ("Final Answer: F", None),
    # truncated before the answer (max_tokens reached)
    ("<reasoning>The fish market sells crabs, and fishmongers", None),
]


@pytest.mark.parametrize("response, expected", EXTRACT_CASES, ids=[f"case{i:02d}" for i in range(len(EXTRACT_CASES))])
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_the_table_is_large_and_varied():
    assert len(EXTRACT_CASES) >= 30
    assert sum(expected is None for _, expected in EXTRACT_CASES) >= 10
    assert {expected for _, expected in EXTRACT_CASES} == {"A", "B", "C", "D", "E", None}


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<reasoning>Fishmongers sell crabs.</reasoning>\nFinal Answer: C", True),
        ("**Final Answer:** (c).", True),
        ("Final Answer: C or D", False),
        ("Final Answer: A\nFinal Answer: B", False),
        # lenient conclusions are answers but not the requested format
        ("The answer is C.", False),
        ("Answer: D", False),
        ("\\boxed{C}", False),
        ("I'm sorry, I can't answer.", False),
        ("", False),
        (None, False),
    ],
)
def test_has_final_answer_format(response, expected):
    assert has_final_answer_format(response) is expected


def test_strict_mode_ignores_weak_conclusions():
    assert extract_answer("The answer is C.") == "C"
    assert extract_answer("The answer is C.", strict=True) is None
    assert extract_answer("The answer is B. Final Answer: C", strict=True) == "C"


def test_final_answer_letters_in_order():
    assert final_answer_letters("Final Answer: B ... Final Answer: d.") == ["B", "D"]
    assert final_answer_letters("Final Answer: C or E") == ["C", "E"]
    assert final_answer_letters("no marker here") == []
    assert final_answer_letters(None) == []


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<reasoning>Fishmongers sell crabs.</reasoning>\nFinal Answer: C", "Fishmongers sell crabs."),
        ("<reasoning>\n  Line one.\n  Line two.\n</reasoning>Final Answer: C", "Line one.\n  Line two."),
        ("< Reasoning >Upper-case tags.</ REASONING >", "Upper-case tags."),
        # missing closing tag: up to the Final Answer line
        ("<reasoning>Fishmongers sell crabs.\nFinal Answer: C", "Fishmongers sell crabs."),
        ("<reasoning>Fishmongers sell crabs.\n**Final Answer:** C", "Fishmongers sell crabs."),
        # missing closing tag and no answer (truncated): to the end
        ("<reasoning>Fishmongers sell crabs and", "Fishmongers sell crabs and"),
        # no reasoning block at all
        ("Final Answer: C", None),
        ("", None),
        (None, None),
        ("<reasoning></reasoning>\nFinal Answer: C", ""),
    ],
)
def test_extract_reasoning(response, expected):
    assert extract_reasoning(response) == expected


def test_extract_reasoning_keeps_a_final_answer_mentioned_mid_line():
    # Only a line that starts with "Final Answer" ends an unclosed block.
    text = "<reasoning>I will write the Final Answer after eliminating A and B.\nFinal Answer: C"
    assert extract_reasoning(text) == "I will write the Final Answer after eliminating A and B."
