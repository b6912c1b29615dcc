"""Helpers for the DAS tests (no tests here): a second, different tokenizer standing in for the
teacher's, synthetic teacher records with known logprobs, and a tiny run directory."""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

TRAINING_TEXT = [
    "The question asks who is likely to be excited about a crab. Option A. fish market is a place.",
    "A fishmonger sells fish and seafood, so he would be interested in crabs as a product.",
    "Therefore the most appropriate choice is C. Final Answer: C",
    "Café, naïve, résumé: accents are common in French words. It costs 3.5 euros, e.g. cheap.",
]


def byte_level_table() -> dict[str, int]:
    """Return the inverse of GPT-2's byte-to-printable-character table (character -> byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


@lru_cache(maxsize=1)
def teacher_tokenizer():
    """Return a small byte-level BPE tokenizer trained in-process (different from the student's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(TRAINING_TEXT * 4, trainer)
    return tok


def teacher_tokens(content: str, logprob_of=None, with_bytes: bool = True) -> list[dict]:
    """Return API-style tokens (``token``, ``logprob``, ``bytes``) for ``content`` from the teacher tokenizer.

    Like the OpenAI API, a token holding part of a multi-byte character has a ``token`` string
    with a replacement character, and its exact ``bytes``. ``logprob_of(i, start, end)`` gives
    each token's logprob (default: log 0.5).
    """
    table = byte_level_table()
    enc = teacher_tokenizer().encode(content)
    out = []
    for i, (piece, (a, b)) in enumerate(zip(enc.tokens, enc.offsets)):
        raw = bytes(table[c] for c in piece)
        lp = logprob_of(i, a, b) if logprob_of else math.log(0.5)
        out.append({"token": raw.decode("utf-8", errors="replace"), "logprob": lp,
                    "bytes": list(raw) if with_bytes else None})
    assert b"".join(bytes(t["bytes"] or []) for t in out) == content.encode("utf-8") or not with_bytes
    return out


def teacher_record(question: dict, stage: int, content: str | None, tokens, ok: bool = True, sample: int = 0) -> dict:
    """Return a teacher record in the format of docs/artifacts.md."""
    request_hash = hashlib.sha256(f"{question['id']}/{stage}/{sample}".encode()).hexdigest()
    joined = "".join(t["token"] for t in tokens) if tokens else None
    return {
        "question_id": question["id"], "stage": stage, "temperature": 0.3 if stage == 1 else 0.9,
        "model": "synthetic-teacher (stand-in)", "request_hash": request_hash, "messages": [],
        "content": content, "reasoning": None, "tokens": tokens, "finish_reason": "stop", "usage": {},
        "latency_s": 0.0, "error": None, "tokens_match_content": joined == content if tokens else False,
        "mean_token_prob": None,
        "quality": {"ok": ok, "reason": None if ok else "wrong_answer", "answer": question["answerKey"], "detail": ""},
    }


RESPONSE_TEMPLATES = [
    "<reasoning> The question asks about {concept}. Option A. {a} is a place, e.g. a shop.\n"
    "The price is 3.5 euros — café crème 🤖.\n\n- {c} fits best.\n</reasoning>\nFinal Answer: {key}",
    "<reasoning>\nWe compare the options.  {b} is wrong!\nIs {c} right? Yes.\n</reasoning>\nFinal Answer: {key}",
    "<reasoning> Only one choice works. Therefore the answer is {key}. </reasoning> Final Answer: {key}",
]


def make_response(question: dict, variant: int) -> str:
    texts = question["choices"]["text"]
    return RESPONSE_TEMPLATES[variant % len(RESPONSE_TEMPLATES)].format(
        concept=question.get("question_concept") or "it", a=texts[0], b=texts[1], c=texts[2], key=question["answerKey"]
    )


def write_teacher_file(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build_synthetic_run(cfg, n_questions: int | None = None) -> dict:
    """Write data/ and teacher/stage{1,2}.jsonl for ``cfg`` (data phase + synthetic teacher); return facts.

    Stage 1: every question answered once (quality ok), with a varying per-token logprob so that
    sentences get different P_T. Stage 2: best-of-2 samples (first rejected by quality for
    question 0, so the second is used), one record without logprobs and one whose tokens do not
    reproduce the content (both must be counted as unscorable).
    """
    from dasd_utils import data

    data.run_phase(cfg)
    questions = data.load_run_questions(cfg, "train")
    if n_questions is not None:
        questions = questions[:n_questions]

    def lp(i, a, b):
        return math.log(0.95 if (i // 7) % 2 == 0 else 0.35)

    stage1, stage2 = [], []
    for k, q in enumerate(questions):
        content = make_response(q, k)
        stage1.append(teacher_record(q, 1, content, teacher_tokens(content, lp)))
    for k, q in enumerate(questions):
        content = make_response(q, k + 1)
        if k == 0:
            stage2.append(teacher_record(q, 2, "Final Answer: A", teacher_tokens("Final Answer: A"), ok=False))
            stage2.append(teacher_record(q, 2, content, teacher_tokens(content, lp), sample=1))
        elif k == 1:
            stage2.append(teacher_record(q, 2, content, None))
        elif k == 2:
            bad = teacher_tokens(content, lp, with_bytes=False)
            bad[0] = dict(bad[0], token="X" + bad[0]["token"])
            stage2.append(teacher_record(q, 2, content, bad))
        else:
            stage2.append(teacher_record(q, 2, content, teacher_tokens(content, lp)))
            # A second quality-kept sample of the same question is ignored (first one wins).
            stage2.append(teacher_record(q, 2, content + " ", teacher_tokens(content + " ", lp), sample=1))
    write_teacher_file(cfg.run_dir / "teacher" / "stage1.jsonl", stage1)
    write_teacher_file(cfg.run_dir / "teacher" / "stage2.jsonl", stage2)
    return {"questions": questions, "stage1": stage1, "stage2": stage2}
