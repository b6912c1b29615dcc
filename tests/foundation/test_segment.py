"""Sentences as character spans: what counts as a sentence in a reasoning response."""

from __future__ import annotations

import pytest

from support.answer_samples import ANSWERS, COURSE_ANSWER

from dasd_utils.segment import SEGMENTERS, sentence_spans

SEGS = pytest.mark.parametrize("segmenter", SEGMENTERS)


def texts(text, segmenter="pysbd"):
    spans = sentence_spans(text, segmenter)
    for s in spans:
        assert text[s.start : s.end] == s.text, "a span must be an exact slice of the response"
        assert s.text == s.text.strip(), "spans are trimmed"
    starts = [s.start for s in spans]
    assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(spans, spans[1:])), "spans are ordered, disjoint"
    return [s.text for s in spans]


@SEGS
def test_reasoning_tags_are_not_sentences_and_final_answer_is_its_own(segmenter):
    text = "<reasoning> The question asks who. A fishmonger sells crabs. </reasoning>\nFinal Answer: C"
    assert texts(text, segmenter) == ["The question asks who.", "A fishmonger sells crabs.", "Final Answer: C"]
    spans = sentence_spans(text, segmenter)
    assert [s.final_answer for s in spans] == [False, False, True]


@SEGS
def test_final_answer_split_from_preceding_text_on_the_same_line(segmenter):
    assert texts("So it is C. Final Answer: C", segmenter) == ["So it is C.", "Final Answer: C"]
    assert [s.final_answer for s in sentence_spans("So it is C. Final Answer: C", segmenter)] == [False, True]
    # Issue 10 item 5: mid-line, the marker forces no boundary (it used to split "Thus C" off).
    assert texts("Thus C **Final Answer:** C", segmenter) == ["Thus C **Final Answer:** C"]
    # A closing tag glued to the final line is a hard boundary too.
    assert texts("<reasoning>Only C works.</reasoning> Final Answer: C", segmenter) == ["Only C works.", "Final Answer: C"]


@SEGS
def test_option_letters_abbreviations_and_decimals_do_not_end_sentences(segmenter):
    text = "Option A. fish market is a place, e.g. a shop, and 3.5 kg is heavy. Dr. Smith agrees."
    assert texts(text, segmenter) == [
        "Option A. fish market is a place, e.g. a shop, and 3.5 kg is heavy.",
        "Dr. Smith agrees.",
    ]


@SEGS
def test_lines_and_lists_are_sentences_blank_lines_and_rules_are_not(segmenter):
    text = "<reasoning>\nOptions:\nA. fish market\n(B) pet shop\n- the crab\n\n---\n1. first point.\n</reasoning>"
    assert texts(text, segmenter) == ["Options:", "A. fish market", "(B) pet shop", "- the crab", "1. first point."]


@SEGS
def test_questions_exclamations_and_ellipses(segmenter):
    assert texts("Is it A? No! It is C.", segmenter) == ["Is it A?", "No!", "It is C."]
    out = texts("Wait... it is C.  Really.", segmenter)
    assert out[-1] == "Really." and "".join(out).replace(" ", "") == "Wait...itisC.Really."


@SEGS
def test_fragments_are_merged_not_lost(segmenter):
    # A label alone before its text (the segmenter may split "A." off) joins the next sentence;
    # a symbol-only fragment joins the previous one.
    out = texts("It is fine. ** And then C.", segmenter)
    assert "".join(out).replace(" ", "") == "Itisfine.**AndthenC."
    assert all(any(ch.isalnum() for ch in s) for s in out)


@SEGS
def test_accents_emoji_and_repeated_spaces_keep_exact_offsets(segmenter):
    text = "Le café   est crème 🤖.  Ça coûte 3,5 €!\nFinal Answer: B"
    out = texts(text, segmenter)
    assert out[0] == "Le café   est crème 🤖."
    assert out[-1] == "Final Answer: B"


def test_pysbd_and_regex_agree_on_the_course_example():
    text = COURSE_ANSWER
    a, b = texts(text, "pysbd"), texts(text, "regex")
    assert a == b
    assert len(a) == 7 and a[-1] == "Final Answer: C"


def test_empty_and_markup_only():
    assert sentence_spans("") == []
    assert sentence_spans(None) == []
    assert sentence_spans("<reasoning>\n</reasoning>\n---") == []


def test_unknown_segmenter_is_a_clear_error():
    with pytest.raises(ValueError, match="segmenter"):
        sentence_spans("Hello.", "nltk")


@SEGS
def test_a_lone_option_letter_ends_a_sentence_only_when_it_is_not_a_label(segmenter):
    # pysbd alone would keep "... is C. Therefore ..." as one sentence.
    assert texts("So the answer is C. Therefore it fits.", segmenter) == ["So the answer is C.", "Therefore it fits."]
    assert texts("The answer is C. “Crab” fits.", segmenter) == ["The answer is C.", "“Crab” fits."]
    assert texts("B. Pet shop is wrong. I pick (D). Then E.", segmenter) == ["B. Pet shop is wrong.", "I pick (D).", "Then E."]
    assert texts("Options A. and B. are wrong.", segmenter) == ["Options A. and B. are wrong."]


# --------------------------------------------------------------------------- issue 10 item 5
@SEGS
def test_final_answer_in_prose_is_not_a_boundary(segmenter):
    text = "<reasoning>Only C names people. So the final answer is C.</reasoning>\nFinal Answer: C"
    assert texts(text, segmenter) == ["Only C names people.", "So the final answer is C.", "Final Answer: C"]
    assert [s.final_answer for s in sentence_spans(text, segmenter)] == [False, False, True]
    assert texts("Hiding is natural, so the final answer is B.", segmenter) == ["Hiding is natural, so the final answer is B."]
    # At the start of a line (after markdown) or right after </reasoning>, it is the final line.
    for text in ("It is D.\n**Final Answer:** D", "It is D.\n- final answer: D", "<reasoning>It is D.</reasoning>Final Answer: D"):
        spans = sentence_spans(text, segmenter)
        assert [s.text for s in spans][0] == "It is D." and spans[-1].final_answer and len(spans) == 2


@SEGS
def test_markdown_option_labels_are_not_sentences_of_their_own(segmenter):
    assert texts("- **A. fish market** – a place, not a person.", segmenter) == ["- **A. fish market** – a place, not a person."]
    assert texts("Thus the answer is **C. bank**. It fits.", segmenter) == ["Thus the answer is **C. bank**.", "It fits."]
    assert texts("**Step 1.** Identify the emotion. **Step 2.** Name it.", segmenter) == [
        "**Step 1.** Identify the emotion.", "**Step 2.** Name it.",
    ]
    # A label line is a heading: it joins the sentence it introduces (the span holds the line break).
    assert texts("The correct choice:\n**C. Fishmongers**\nThey handle crabs.", segmenter) == [
        "The correct choice:", "**C. Fishmongers**\nThey handle crabs.",
    ]
    assert texts("- **D) intertidal zone**:\nCrabs live there.\nB)\npet shop", segmenter) == [
        "- **D) intertidal zone**:\nCrabs live there.", "B)\npet shop",
    ]
    # ... but never the final-answer line: then it joins the previous sentence.
    text = "Only C fits.\n**C. Fishmongers**\nFinal Answer: C"
    assert texts(text, segmenter) == ["Only C fits.\n**C. Fishmongers**", "Final Answer: C"]
    # Plain list items stay sentences (rule 2).
    assert texts("Options:\nA. fish market\nB. pet shop", segmenter) == ["Options:", "A. fish market", "B. pet shop"]


@SEGS
def test_tiny_fragments_join_a_neighbour(segmenter):
    assert texts("It is C.\nC\nFinal Answer: C", segmenter) == ["It is C.\nC", "Final Answer: C"]
    assert texts("C\nIt is C.", segmenter) == ["C\nIt is C."]
    assert texts("No!\nIt is C.", segmenter) == ["No!", "It is C."]  # two letters: a sentence


@SEGS
def test_realistic_answers_sentence_counts(segmenter):
    for content, expected in ANSWERS:
        spans = sentence_spans(content, segmenter)
        assert len(texts(content, segmenter)) == expected, content
        assert [s.final_answer for s in spans] == [False] * (expected - 1) + [True], content
