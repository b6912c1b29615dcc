"""The ``local`` teacher backend: a Hugging Face causal LM generating in-process, with logprobs.

Batched sampling with ``model.generate`` at the stage's temperature. For every sampled token the
record holds ``logprob`` = log p(token | prefix) under the model's **raw distribution, before
temperature scaling** (and before top-p). Why: DAS compares the teacher's probability of a
sentence with the student's probability of the same text computed by teacher forcing at
temperature 1, so both sides must be the models' own distributions; temperature is a sampling
choice, not a property of the model. It is also what OpenAI-compatible servers such as vLLM return
by default (raw logprobs), so local and API records mean the same thing.

Token strings are built by incremental decoding so that ``"".join(tokens) == content`` exactly: a
token that ends in the middle of a UTF-8 character gets the empty string and the token that
completes the character carries it. Every token also gets its raw ``bytes``.

The demo's stand-in teacher (SmolLM2-135M-Instruct) is helped with few-shot worked examples, the
gold answer as a hint (STaR-style rationalization) and best-of-n sampling; see
:func:`teacher_messages`. The student never sees any of that: later phases rebuild the student's
context from ``question_id`` with :func:`dasd_utils.prompts.build_messages`.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any, Callable, Mapping, Sequence

from ..config import Config
from ..prompts import format_question
from ..token_recovery import is_byte_level, token_bytes

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- prompts
#: Hand-written worked examples in the course's format. The questions are invented for this
#: project (they are not CommonsenseQA items, so none is in the evaluation items or the demo's
#: training items); answers use different letters so that the model copies the format, not a letter.
FEW_SHOT_EXAMPLES: tuple[dict[str, Any], ...] = (
    {
        "question": "Where would you keep a carton of milk so that it stays cold?",
        "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["pantry", "refrigerator", "oven", "mailbox", "bookshelf"]},
        "answerKey": "B",
        "response": (
            "<reasoning>\n"
            "Milk spoils when it gets warm, so it must be kept cold. A refrigerator is the appliance "
            "made to keep food cold. A pantry and a bookshelf stay at room temperature, an oven heats "
            "food, and a mailbox is not a place for food. So the refrigerator is the right place.\n"
            "</reasoning>\n"
            "Final Answer: B"
        ),
    },
    {
        "question": "If you drop a glass on a hard stone floor, what is most likely to happen to the glass?",
        "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["it grows", "it melts", "it shatters", "it sings", "it floats"]},
        "answerKey": "C",
        "response": (
            "<reasoning>\n"
            "Glass is hard but brittle, and a stone floor does not give way, so the impact breaks the "
            "glass into pieces: it shatters. A glass cannot grow or sing, it only melts in great heat, "
            "and it cannot float on a floor. So the glass shatters.\n"
            "</reasoning>\n"
            "Final Answer: C"
        ),
    },
    {
        "question": "What do most people do when they feel very tired late at night?",
        "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["go to sleep", "run a marathon", "paint the house", "eat breakfast", "start a new job"]},
        "answerKey": "A",
        "response": (
            "<reasoning>\n"
            "Being tired means the body needs rest, and late at night is the usual time to rest. "
            "Running a marathon or painting the house needs energy, breakfast is eaten in the "
            "morning, and nobody starts a new job at night. So most people go to sleep.\n"
            "</reasoning>\n"
            "Final Answer: A"
        ),
    },
)


def hint_text(row: Mapping[str, Any]) -> str:
    """Return the gold-answer hint appended to the stand-in teacher's question (never the student's)."""
    letter = row["answerKey"]
    option = dict(zip(row["choices"]["label"], row["choices"]["text"])).get(letter, "")
    return (
        f"\n\nHint: the correct answer is {letter} ({option}). Explain briefly why it is right and the "
        f"others are wrong, without mentioning the hint, then end with 'Final Answer: {letter}'."
    )


def teacher_messages(
    row: Mapping[str, Any], system_prompt: str, few_shot: int = 0, gold_hint: bool = False
) -> list[dict[str, str]]:
    """Return the messages sent to a local teacher: system, ``few_shot`` worked examples, the question.

    With ``gold_hint`` the question (and each example) carries the gold answer, as in STaR's
    rationalization; the response is then an explanation of a known answer.
    """
    if few_shot > len(FEW_SHOT_EXAMPLES):
        raise ValueError(f"teacher.local_few_shot={few_shot} but only {len(FEW_SHOT_EXAMPLES)} worked examples exist")
    messages = [{"role": "system", "content": system_prompt}]
    for example in FEW_SHOT_EXAMPLES[:few_shot]:
        user = format_question(example) + (hint_text(example) if gold_hint else "")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": example["response"]}]
    messages.append({"role": "user", "content": format_question(row) + (hint_text(row) if gold_hint else "")})
    return messages


# ----------------------------------------------------------------------------- token strings
def token_strings(tokenizer, ids: Sequence[int]) -> tuple[list[str], str]:
    """Return (one string per token, the decoded text) with ``"".join(strings) == text`` when possible.

    Incremental decoding over a short window (prefix/read offsets, as streaming servers do): a
    token's string is the text its addition appends; a token that leaves an incomplete UTF-8
    character gets "" and the next one carries the character. If the window method disagrees
    with the full decode (exotic normalisers), full-prefix decoding is used; if that also fails
    the strings are returned as they are and the caller flags ``tokens_match_content`` False.
    """
    ids = [int(i) for i in ids]

    def decode(chunk: Sequence[int]) -> str:
        return tokenizer.decode(list(chunk), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    text = decode(ids)
    pieces: list[str] = []
    prefix_offset = read_offset = 0
    for i in range(len(ids)):
        prefix_text = decode(ids[prefix_offset:read_offset])
        new_text = decode(ids[prefix_offset : i + 1])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd") and new_text.startswith(prefix_text):
            pieces.append(new_text[len(prefix_text) :])
            prefix_offset, read_offset = read_offset, i + 1
        else:
            pieces.append("")
    if "".join(pieces) == text:
        return pieces, text
    # Slow path: decode every prefix (quadratic, but only for tokenizers the window method misreads).
    pieces, emitted = [], ""
    for i in range(len(ids)):
        prefix = decode(ids[: i + 1])
        if prefix.startswith(emitted) and not prefix.endswith("\ufffd"):
            pieces.append(prefix[len(emitted) :])
            emitted = prefix
        else:
            pieces.append("")
    if pieces and emitted != text and text.startswith(emitted):
        pieces[-1] += text[len(emitted) :]
    return pieces, text


# ----------------------------------------------------------------------------- generation
class _RawLogprobRecorder:
    """A logits processor that records log p(sampled token) under the *raw* logits of each step.

    It runs first in the processor list (``generate`` is given a fresh GenerationConfig without
    repetition penalties or other processors before it), so it sees the model's logits before
    temperature and top-p. At step t it stores the log-softmax; at step t+1 it reads the token
    that was sampled from it (the last column of ``input_ids``). Only one step is kept in memory,
    unlike ``output_logits=True`` which keeps batch x steps x vocabulary floats.
    """

    def __init__(self) -> None:
        self.previous = None
        self.steps: list[Any] = []

    def __call__(self, input_ids, scores):
        import torch

        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens):
        import torch

        if self.previous is None:
            return None
        self.steps.append(self.previous.gather(1, last_tokens[:, None]).squeeze(1))
        return torch.stack(self.steps, dim=1)


class _EndOfTurnGate:
    """A logits processor that forbids the end-of-turn tokens (runs after the recorder).

    Used with stop strings ``Final Answer: A`` ... ``E``: a tiny stand-in often ends its turn
    after one sentence; forbidding that makes it write its answer line, after which generation
    stops. The recorded logprobs come from the recorder, before this gate, so they stay the
    model's own probabilities.
    """

    def __init__(self, banned_ids: Sequence[int]) -> None:
        self.banned = sorted(set(int(i) for i in banned_ids))

    def __call__(self, input_ids, scores):
        if self.banned:
            scores[:, self.banned] = float("-inf")
        return scores


#: A shared prompt prefix (system prompt + few-shot examples) shorter than this is run with each batch.
MIN_SHARED_PREFIX = 32

ANSWER_STOP_STRINGS = tuple(f"Final Answer: {letter}" for letter in "ABCDE")


class LocalTeacher:
    """A local HF causal LM used as the teacher (loaded on first use)."""

    #: Grow the key/value cache in place (:mod:`dasd_utils.kvcache`) instead of concatenating at
    #: every step; same tokens and logprobs, less copying. False: transformers' DynamicCache.
    growing_cache: bool = True

    def __init__(self, cfg: Config, model_label: str) -> None:
        self.cfg = cfg
        self.model_label = model_label
        self.model = None
        self.tokenizer = None

    def load(self) -> None:
        if self.model is not None:
            return
        from ..models import load_model

        t0 = time.perf_counter()
        self.model, self.tokenizer = load_model(
            self.cfg.teacher.model, self.cfg, dtype=self.cfg.teacher.local_dtype, device=self.cfg.teacher.local_device
        )
        self.tokenizer.padding_side = "left"
        self._byte_level = is_byte_level(self.tokenizer)
        self._prefix_caches: dict[str, Any] = {}
        log.info("local teacher %s loaded in %.1f s", self.model_label, time.perf_counter() - t0)

    def _stop_ids(self) -> list[int]:
        ids = set()
        for token in (self.tokenizer.eos_token, "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            if token and token in self.tokenizer.get_vocab():
                ids.add(self.tokenizer.convert_tokens_to_ids(token))
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in eos if isinstance(eos, (list, tuple)) else [eos]:
            if value is not None:
                ids.add(int(value))
        return sorted(ids)

    def generate(self, requests: Sequence[Any], on_result: Callable[[Any, dict[str, Any]], None]) -> None:
        """Generate every request in batches and call ``on_result(request, raw_result)`` for each one."""
        self.load()
        batch_size = max(1, self.cfg.teacher.local_batch_size)
        # Similar prompt lengths in one batch waste less padding.
        ordered = sorted(requests, key=lambda r: len(r.messages[-1]["content"]))
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            try:
                results = self._generate_batch(batch)
            except Exception as exc:  # one bad batch (e.g. out of memory) must not lose the others
                log.exception("local teacher batch failed")
                results = [{"error": f"{type(exc).__name__}: {exc}"} for _ in batch]
            for request, result in zip(batch, results):
                on_result(request, result)

    def _prefix_cache(self, messages: Sequence[Mapping[str, str]]) -> tuple[list[int], Any] | None:
        """Return (token ids, KV cache) of the prompt part shared by all requests, or None.

        The system prompt and the few-shot examples are the same for every question: computing
        their keys and values once instead of once per question divides the prompt cost by about
        four on the demo (the cache is copied for each batch).
        """
        from ..kvcache import prefix_cache

        if len(messages) < 2:
            return None
        text = self.tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False)
        if text in self._prefix_caches:
            return self._prefix_caches[text]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        entry = None
        if len(ids) >= MIN_SHARED_PREFIX:
            entry = (ids, prefix_cache(self.model, ids, self.model.device))
        self._prefix_caches[text] = entry
        return entry

    def _encode(self, batch: Sequence[Any]) -> tuple[dict[str, Any], Any]:
        """Return (model inputs, cache or None) for a batch, reusing the shared prefix's KV cache when possible.

        The cache has room for the batch's prompt and ``max_tokens`` new tokens (see ``growing_cache``).

        With a cached prefix the layout is ``[prefix][padding][question]``: the padding sits after
        the shared prefix (masked out; positions come from the attention mask), so every row
        continues the same cached keys and values. Without one, plain left padding.
        """
        import torch

        from ..kvcache import growing_cache, repeat_cache

        tok, device = self.tokenizer, self.model.device
        # A continuation (mixed-policy distillation) is the same prompt followed by the answer's
        # beginning: the model goes on from the last character of ``prefill``.
        prompts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) + (getattr(r, "prefill", None) or "")
                   for r in batch]
        full = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        prefix = self._prefix_cache(batch[0].messages)
        if prefix is not None and all(r.messages[:-1] == batch[0].messages[:-1] for r in batch):
            ids, cache = prefix
            n = len(ids)
            if all(f[:n] == ids and len(f) > n for f in full):
                suffixes = [f[n:] for f in full]
                width = max(len(s) for s in suffixes)
                pad = tok.pad_token_id
                input_ids = [ids + [pad] * (width - len(s)) + s for s in suffixes]
                mask = [[1] * n + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
                if self.growing_cache:
                    batch_cache = growing_cache(self.model, width + batch[0].max_tokens, prefix=cache, batch=len(batch))
                else:
                    batch_cache = repeat_cache(cache, len(batch))
                enc = {"input_ids": torch.tensor(input_ids, device=device), "attention_mask": torch.tensor(mask, device=device)}
                return enc, batch_cache
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        fresh = growing_cache(self.model, batch[0].max_tokens) if self.growing_cache else None
        return dict(enc), fresh

    def _generate_batch(self, batch: Sequence[Any]) -> list[dict[str, Any]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tok, model = self.tokenizer, self.model
        temperature = float(batch[0].temperature)
        enc, cache = self._encode(batch)
        stop_ids = self._stop_ids()
        sample = temperature > 0
        force_answer = bool(self.cfg.teacher.local_force_answer)
        gen_cfg = GenerationConfig(
            stop_strings=list(ANSWER_STOP_STRINGS) if force_answer else None,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=self.cfg.teacher.local_top_p if sample else None,
            top_k=0 if sample else None,
            max_new_tokens=batch[0].max_tokens,
            eos_token_id=stop_ids,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
        # Reproducible sampling: the seed depends on the configured seed and on the batch's requests.
        seed = (self.cfg.teacher.seed or 0) + zlib.crc32("".join(r.request_hash for r in batch).encode())
        torch.manual_seed(seed % (2**31))
        recorder = _RawLogprobRecorder()
        processors = [recorder]
        extra: dict[str, Any] = {"cache": cache} if cache is not None else {}
        if force_answer:
            special = set(stop_ids) | {i for i in (tok.all_special_ids or []) if i is not None}
            processors.append(_EndOfTurnGate(special))
            extra["tokenizer"] = tok  # needed by stop_strings
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, **extra, generation_config=gen_cfg, logits_processor=LogitsProcessorList(processors))
        latency = time.perf_counter() - t0
        sequences = out[:, enc["input_ids"].shape[1] :]
        logprobs = recorder.finish(sequences[:, -1]) if sequences.shape[1] else None
        stop = set(stop_ids)
        prompt_tokens = [int(n) for n in enc["attention_mask"].sum(dim=1).tolist()]
        results = []
        for row, request in enumerate(batch):
            ids = sequences[row].tolist()
            end = next((i for i, t in enumerate(ids) if t in stop), None)
            content_ids = ids[:end] if end is not None else ids
            pieces, content = token_strings(tok, content_ids)
            if end is None and force_answer and content.rstrip().endswith(ANSWER_STOP_STRINGS):
                finish_reason = "stop"  # stopped by a stop string, like an API's `stop`
            else:
                finish_reason = "stop" if end is not None else "length"
            values = logprobs[row, : len(content_ids)].tolist() if logprobs is not None else []
            tokens = [
                {"token": piece, "logprob": float(lp), "bytes": token_bytes(tok, tid, self._byte_level), "id": int(tid)}
                for piece, lp, tid in zip(pieces, values, content_ids)
            ]
            n_generated = len(content_ids) + (1 if end is not None else 0)
            results.append(
                {
                    "content": content,
                    "reasoning": None,
                    "tokens": tokens,
                    "logprobs_note": None,
                    "finish_reason": finish_reason,
                    "usage": {
                        "prompt_tokens": prompt_tokens[row],
                        "completion_tokens": n_generated,
                        "total_tokens": prompt_tokens[row] + n_generated,
                    },
                    # Batched: every response of a batch shares its wall time.
                    "latency_s": round(latency, 4),
                    "response_model": self.model_label,
                    "attempts": 1,
                    "seed": seed % (2**31),
                    "error": None,
                }
            )
        return results


__all__ = ["FEW_SHOT_EXAMPLES", "LocalTeacher", "hint_text", "teacher_messages", "token_strings"]
