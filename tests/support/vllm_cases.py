"""The requests the real-vLLM tier sends, and the recorder of their raw answers as fixtures.

Each case is one HTTP request to one of the tier's two servers (``smollm2``: the demo's
SmolLM2-135M-Instruct, a chat-template model; ``gptoss``: the tiny scripted gpt-oss, a harmony
model). ``tests/real_vllm/test_vllm_*.py`` send them live and check what the project relies on;
this script stores the exact request and answer in ``tests/fixtures/vllm/<case>.json``, the
reference for the fake server (``tests/fake_openai_server.py``) and the docs:

    python tests/support/vllm_cases.py --smollm2-url http://127.0.0.1:8011/v1 \\
        --gptoss-url http://127.0.0.1:8012/v1 [--out tests/fixtures/vllm]

Standard library only. Answers are deterministic (temperature 0, ``seed``), but ``id``,
``created`` and the gpt-oss prompt (harmony's system message carries today's date) vary.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"

# SmolLM2 repeats this sentence exactly (greedy): "é", "û", "€", "—", "’" are whole tokens of its
# byte-level BPE, and " 😀" is two tokens, the first holding the space and 3 of the emoji's 4 bytes.
MULTIBYTE_SENTENCE = "Le café coûte 2 € — c’est l’été 😀."
REPEAT = [{"role": "user", "content": f"Repeat exactly this sentence and nothing else: {MULTIBYTE_SENTENCE}"}]
# The provenance route's shape: the question, then the given answer as the final assistant message.
GIVEN_ANSWER = "Le café — c’est bon 😀."
WITH_ANSWER = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say something about coffee."},
    {"role": "assistant", "content": GIVEN_ANSWER},
]
# lm-evaluation-harness's commonsense_qa prompt (the OpenAI evaluation backend's log-likelihood request).
LOGLIK_PROMPT = "Question: Where do you keep the café crème?\nA. fridge\nB. shelf\nC. car\nD. bed\nE. sea\nAnswer: A"
# A harmony conversation rendered by hand, left open inside the analysis channel (the raw route).
RAW_HARMONY_PROMPT = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Reasoning: low\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    "<|start|>user<|message|>Say something about coffee.<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>Le café"
)
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}

#: name -> (server, endpoint, body without "model", what it shows)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "smollm2_chat_logprobs": ("smollm2", "chat/completions", {
        "messages": REPEAT, "temperature": 0, "seed": 0, "max_tokens": 40, "logprobs": True, "top_logprobs": 1,
    }, "chat logprobs of a chat-template model: '' pieces with bytes [], <|im_end|> appended, message.reasoning"),
    "smollm2_chat_token_ids": ("smollm2", "chat/completions", {
        "messages": REPEAT, "temperature": 0, "seed": 0, "max_tokens": 40, "logprobs": True, "top_logprobs": 1,
        "return_tokens_as_token_ids": True,
    }, "return_tokens_as_token_ids: token 'token_id:N', bytes = the decoded text's"),
    "smollm2_chat_prompt_logprobs": ("smollm2", "chat/completions", {
        "messages": WITH_ANSWER, "temperature": 0, "max_tokens": 1, "prompt_logprobs": 1, "return_token_ids": True,
        **CONTINUE,
    }, "the provenance route: top-level prompt_logprobs (first null, prompt token first), prompt_token_ids"),
    "smollm2_chat_continue_and_generation_prompt": ("smollm2", "chat/completions", {
        "messages": WITH_ANSWER, "max_tokens": 1, "continue_final_message": True, "add_generation_prompt": True,
    }, "both flags true: 400"),
    "smollm2_chat_template_kwargs": ("smollm2", "chat/completions", {
        "messages": REPEAT, "temperature": 0, "seed": 0, "max_tokens": 8,
        "chat_template_kwargs": {"enable_thinking": False},
    }, "the evaluation backend's chat_template_kwargs, accepted by a template without the variable"),
    "smollm2_completions_echo": ("smollm2", "completions", {
        "prompt": LOGLIK_PROMPT, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0,
    }, "the evaluation backend's log-likelihood request: echo with prompt token logprobs and text offsets"),
    "smollm2_completions_echo_max0": ("smollm2", "completions", {
        "prompt": LOGLIK_PROMPT, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0,
    }, "echo with max_tokens 0: the prompt alone"),
    "smollm2_completions_echo_token_ids": ("smollm2", "completions", {
        "prompt": LOGLIK_PROMPT, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0,
        "return_token_ids": True,
    }, "echo with return_token_ids: the prompt leaves the text but not logprobs (offsets count it)"),
    "gptoss_chat_logprobs": ("gptoss", "chat/completions", {
        "messages": REPEAT, "temperature": 0, "seed": 0, "max_tokens": 64, "logprobs": True, "top_logprobs": 1,
        "return_token_ids": True,
    }, "chat logprobs of a harmony model: channel markers, analysis and final tokens, <|return|>, split character"),
    "gptoss_chat_token_ids": ("gptoss", "chat/completions", {
        "messages": REPEAT, "temperature": 0, "seed": 0, "max_tokens": 64, "logprobs": True, "top_logprobs": 1,
        "return_tokens_as_token_ids": True,
    }, "return_tokens_as_token_ids on the harmony path"),
    "gptoss_chat_prompt_logprobs_continue": ("gptoss", "chat/completions", {
        "messages": WITH_ANSWER, "temperature": 0, "max_tokens": 1, "prompt_logprobs": 1, "return_token_ids": True,
        **CONTINUE,
    }, "the provenance route on gpt-oss: the answer rendered in the final channel, then <|end|><|start|>assistant"),
    "gptoss_chat_prompt_logprobs_plain": ("gptoss", "chat/completions", {
        "messages": WITH_ANSWER, "temperature": 0, "max_tokens": 1, "prompt_logprobs": 1, "return_token_ids": True,
    }, "the same request without continue_final_message / add_generation_prompt: same prompt tokens"),
    "gptoss_completions_raw_harmony": ("gptoss", "completions", {
        "prompt": RAW_HARMONY_PROMPT, "temperature": 0, "max_tokens": 40, "logprobs": 1, "echo": True,
        "prompt_logprobs": 1, "skip_special_tokens": False,
    }, "the raw harmony route: a hand-rendered prompt open in the analysis channel, special tokens kept"),
    "gptoss_completions_raw_harmony_skip": ("gptoss", "completions", {
        "prompt": RAW_HARMONY_PROMPT, "temperature": 0, "max_tokens": 40, "logprobs": 1, "return_token_ids": True,
    }, "the same with the default skip_special_tokens: markers dropped from the text, not from logprobs"),
}


def get_json(url: str, timeout: float = 30.0) -> Any:
    """Return the decoded JSON of ``GET url``."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def served_model(base_url: str) -> str:
    """Return the first model name a server lists at ``/models``."""
    return get_json(f"{base_url}/models")["data"][0]["id"]


def post_json(url: str, body: dict[str, Any], timeout: float = 300.0) -> tuple[int, Any]:
    """Return ``(status, decoded JSON)`` of ``POST url`` with a JSON body; an HTTP error's body too."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw.decode("utf-8", "replace")}


def send(case: str, urls: dict[str, str]) -> dict[str, Any]:
    """Return the fixture record of one case: the request as sent, the status and the raw answer."""
    server, endpoint, body, purpose = CASES[case]
    base = urls[server]
    request = {"model": served_model(base), **body}
    status, answer = post_json(f"{base}/{endpoint}", request)
    return {"case": case, "purpose": purpose, "server": server, "endpoint": f"/v1/{endpoint}",
            "request": request, "status": status, "response": answer}


def dumps(value: Any, indent: str = "") -> str:
    """Return ``value`` as JSON, one line per container of scalars: small files that still diff by entry."""
    inline = json.dumps(value, ensure_ascii=False)
    scalars = (str, int, float, bool, type(None))
    if not isinstance(value, (list, dict)) or len(inline) <= 100 or all(
        isinstance(v, scalars) for v in (value.values() if isinstance(value, dict) else value)
    ):
        return inline
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{dumps(v, inner)}" for v in value) + f"\n{indent}]"


def load_fixture(case: str) -> dict[str, Any]:
    """Return a recorded fixture (``tests/fixtures/vllm/<case>.json``)."""
    return json.loads((FIXTURES / f"{case}.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Return 0 after recording every case whose server URL is given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smollm2-url", default=None)
    parser.add_argument("--gptoss-url", default=None)
    parser.add_argument("--out", default=str(FIXTURES))
    parser.add_argument("--vllm-version", default=None, help="written into each fixture")
    args = parser.parse_args(argv)
    urls = {k: v for k, v in (("smollm2", args.smollm2_url), ("gptoss", args.gptoss_url)) if v}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case, (server, *_rest) in CASES.items():
        if server not in urls:
            continue
        record = send(case, urls)
        if args.vllm_version:
            record = {"vllm": args.vllm_version, **record}
        path = out / f"{case}.json"
        path.write_text(dumps(record) + "\n", encoding="utf-8")
        print(f"{path} ({record['status']}, {path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
