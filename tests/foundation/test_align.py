"""Token-to-character alignment with two different tokenizers, and sentence probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.das_records import teacher_tokens

from dasd_utils.align import UnscorableError, assign_tokens, sentence_probability, sentence_stats
from dasd_utils.token_recovery import teacher_token_spans
from dasd_utils.config import DASConfig
from dasd_utils.das import score_example
from dasd_utils.prompts import build_messages
from dasd_utils.scoring import encode_for_scoring, response_token_spans
from dasd_utils.segment import sentence_spans

QUESTION = {
    "id": "q1", "question": "Who is likely to be excited about a crab?", "question_concept": "crab",
    "choices": {"label": list("ABCDE"), "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]},
    "answerKey": "C",
}

TRICKY_TEXTS = [
    "<reasoning> Le café   coûte 3.5 € — très cher! Option A. fish market is a place, e.g. a shop.\n\n"
    "B. pet shop: no.  C. fishmongers 🦀 sell crabs 🤖.\n</reasoning>\nFinal Answer: C",
    "<reasoning>\nÉlève naïve : « Ça va ? » Oui.\n- A. first\n- B. second\n1. 2.75 is a decimal.\n</reasoning> Final Answer: B",
    "Plain text without tags. It ends here... Really?   Yes!\n\n\nFinal Answer: A",
    "<reasoning>😀😀 emoji first. Then accents: àéîõü.\tTabs\tand  spaces.</reasoning>\nFinal Answer: E",
]


# --------------------------------------------------------------------------- teacher spans
def test_teacher_spans_from_token_strings():
    content = "The crab is C. Final Answer: C"
    toks = teacher_tokens(content)
    spans = teacher_token_spans(content, toks)
    assert spans.method == "text"
    assert "".join(content[a:b] for a, b in zip(spans.starts, spans.ends)) == content
    assert np.allclose(spans.logprobs, math.log(0.5))


def test_teacher_spans_fall_back_to_bytes_for_split_characters():
    content = "Crabs 🦀 and café 🤖."
    toks = teacher_tokens(content)
    assert "".join(t["token"] for t in toks) != content, "the emoji is split across tokens (replacement chars)"
    spans = teacher_token_spans(content, toks)
    assert spans.method == "bytes"
    split = [(int(a), int(b)) for a, b, t in zip(spans.starts, spans.ends, toks) if "\ufffd" in t["token"]]
    crab, robot = content.index("🦀"), content.index("🤖")
    # Every piece of a split emoji gets the span of that whole (one-character) emoji.
    assert split and set(split) == {(crab, crab + 1), (robot, robot + 1)}
    # Every token span is a slice of the content, in order, and together they cover it.
    assert spans.starts[0] == 0 and spans.ends[-1] == len(content)
    assert np.all(np.diff(spans.starts) >= 0)


def test_teacher_tokens_that_do_not_reproduce_the_content_are_unscorable():
    content = "Crabs 🦀 are tasty."
    # Issue 10: "\ufffd" pieces without bytes used to be unscorable; they are now matched against
    # the content's bytes (each piece gets the whole emoji), and a text they cannot cover still fails.
    toks = teacher_tokens(content, with_bytes=False)
    spans = teacher_token_spans(content, toks)
    assert spans.method == "located" and "matched" in spans.note
    crab = content.index("🦀")
    assert [(int(a), int(b)) for a, b, t in zip(spans.starts, spans.ends, toks) if "\ufffd" in t["token"]] \
        and all((int(a), int(b)) == (crab, crab + 1) for a, b, t in zip(spans.starts, spans.ends, toks) if "\ufffd" in t["token"])
    with pytest.raises(UnscorableError) as err:
        teacher_token_spans(content.replace("🦀", "é"), toks)  # 2 bytes cannot hold 4 pieces
    assert err.value.reason == "tokens_mismatch"
    toks = teacher_tokens(content)
    toks[1] = dict(toks[1], bytes=[120])
    with pytest.raises(UnscorableError) as err:
        teacher_token_spans(content, toks)
    assert err.value.reason == "tokens_mismatch"
    with pytest.raises(UnscorableError) as err:
        teacher_token_spans("Other text.", teacher_tokens(content))
    assert err.value.reason == "tokens_mismatch"


@pytest.mark.parametrize("tokens", [None, []])
def test_missing_logprobs_are_unscorable(tokens):
    with pytest.raises(UnscorableError) as err:
        teacher_token_spans("Some text.", tokens)
    assert err.value.reason == "no_logprobs"


@pytest.mark.parametrize("bad", [None, float("nan"), "x", 0.5, True])
def test_invalid_logprobs_are_unscorable(bad):
    toks = teacher_tokens("Some text.")
    toks[0] = dict(toks[0], logprob=bad)
    with pytest.raises(UnscorableError) as err:
        teacher_token_spans("Some text.", toks)
    assert err.value.reason == "invalid_logprob"


# --------------------------------------------------------------------------- token -> sentence rule
def test_token_to_sentence_rule_for_straddling_markup_and_whitespace_tokens():
    content = "It is A.Then C.\n\n<reasoning> Done. Ok.\n"
    sentences = [(0, 8), (8, 15), (29, 34), (35, 38)]  # "It is A.", "Then C.", "Done.", "Ok."
    assert [content[a:b] for a, b in sentences] == ["It is A.", "Then C.", "Done.", "Ok."]
    tokens = ["It", " is", " A", ".Th", "en", " C", ".\n\n", "<reason", "ing>", " Do", "ne. Ok", ".\n"]
    ends = np.cumsum([len(t) for t in tokens])
    starts = ends - np.array([len(t) for t in tokens])
    assert "".join(tokens) == content
    got = assign_tokens([a for a, _ in sentences], [b for _, b in sentences], starts, ends)
    # ".Th" straddles sentences 0 and 1: the first one; "<reason"/"ing>" overlap no sentence;
    # "ne. Ok" straddles 2 and 3: sentence 2.
    assert got.tolist() == [0, 0, 0, 0, 1, 1, 1, -1, -1, 2, 2, 3]
    # Whitespace between sentences belongs to no sentence; markup glued to text follows the text.
    assert assign_tokens([0, 5], [4, 9], np.array([4]), np.array([5])).tolist() == [-1]
    assert assign_tokens([12], [17], np.array([0]), np.array([14])).tolist() == [0]
    # An empty token belongs to nothing.
    assert assign_tokens([0], [4], np.array([2]), np.array([2])).tolist() == [-1]


def test_sentence_probability_is_the_geometric_mean():
    assert sentence_probability([math.log(0.9), math.log(0.4)]) == pytest.approx(0.6)
    assert sentence_probability([math.log(0.25)] * 5) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        sentence_probability([])
    counts, means = sentence_stats(np.array([0, 0, -1, 1]), np.log([0.9, 0.4, 0.01, 0.5]), 3)
    assert counts.tolist() == [2, 1, 0]
    assert np.exp(means[:2]) == pytest.approx([0.6, 0.5]) and math.isnan(means[2])


def _naive_assignment(content, sentences, starts, ends):
    """Per-character reference of the token-to-sentence rule (first sentence overlapped)."""
    out = []
    for a, b in zip(starts, ends):
        idx = -1
        for c in range(a, b):
            hits = [k for k, s in enumerate(sentences) if s.start <= c < s.end]
            if hits:
                idx = hits[0]
                break
        out.append(idx)
    return out


@pytest.fixture(scope="module")
def student_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.mark.parametrize("content", TRICKY_TEXTS)
def test_two_tokenizers_align_on_characters(content, student_tokenizer):
    sentences = sentence_spans(content)
    assert sentences[-1].text.startswith("Final Answer")
    # Teacher: a byte-level BPE trained in-process; student: SmolLM2's tokenizer, in its chat context.
    teacher = teacher_token_spans(content, teacher_tokens(content))
    example = encode_for_scoring(student_tokenizer, [build_messages(QUESTION)], [content])[0]
    s_starts, s_ends = response_token_spans(example)
    assert len(s_starts) == len(example.response_ids) > 0
    for starts, ends in ((teacher.starts, teacher.ends), (s_starts, s_ends)):
        got = assign_tokens([s.start for s in sentences], [s.end for s in sentences], starts, ends)
        assert got.tolist() == _naive_assignment(content, sentences, starts, ends)
        for k, s in enumerate(sentences):
            owned = [(a, b) for a, b, g in zip(starts, ends, got) if g == k]
            assert owned, f"sentence {s.text!r} owns no token"
            covered = set()
            for a, b in owned:
                covered.update(range(a, b))
            missing = [c for c in range(s.start, s.end) if c not in covered and not content[c].isspace()]
            assert not missing, f"characters {missing} of {s.text!r} are not covered by its own tokens"


@pytest.mark.parametrize("content", TRICKY_TEXTS)
def test_sentence_p_teacher_from_known_logprobs(content, student_tokenizer):
    sentences = sentence_spans(content)
    target = {k: 0.3 + 0.6 * k / max(len(sentences) - 1, 1) for k in range(len(sentences))}
    enc_offsets = []

    def logprob_of(i, a, b):
        enc_offsets.append((a, b))
        return math.log(0.5)

    toks = teacher_tokens(content, logprob_of)
    spans = teacher_token_spans(content, toks)
    owner = _naive_assignment(content, sentences, spans.starts, spans.ends)
    for tok, k in zip(toks, owner):
        # Tokens outside any sentence get an extreme value: it must not leak into any P_T.
        tok["logprob"] = math.log(target[k]) if k >= 0 else math.log(1e-6)
    spans = teacher_token_spans(content, toks)
    example = encode_for_scoring(student_tokenizer, [build_messages(QUESTION)], [content])[0]
    s_starts, s_ends = response_token_spans(example)
    student_lp = np.full(len(s_starts), math.log(0.2))
    result = score_example(content, sentences, spans.starts, spans.ends, spans.logprobs, s_starts, s_ends,
                           student_lp, DASConfig())
    assert result["n_merged_sentences"] == 0
    assert [s["p_teacher"] for s in result["sentences"]] == pytest.approx([target[k] for k in range(len(sentences))], abs=1e-12)
    assert all(s["p_student"] == pytest.approx(0.2) for s in result["sentences"])
    assert [s["text"] for s in result["sentences"]] == [s.text for s in sentences]
