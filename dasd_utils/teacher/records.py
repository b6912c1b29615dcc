"""What is stored for each answer: the quality verdict (:class:`QualityJudge`) and the record (:func:`finalize_record`).

The verdict (:func:`dasd_utils.quality.check_response`) is recomputed on every run from the
stored content, so a changed quality setting applies without re-sending anything. The record's
format is described in docs/artifacts.md, "Teacher records".
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from ..config import Config
from ..prompts import extract_answer
from ..quality import check_response, student_token_counters
from .requests import TeacherRequest

log = logging.getLogger(__name__)

_FINAL_ANSWER_SPLIT = re.compile(r"final\s*answer", re.IGNORECASE)


# ----------------------------------------------------------------------------- quality
class QualityJudge:
    """Applies the quality filter with the student's token counter (tokenizer loaded once)."""

    def __init__(self, cfg: Config, tokenizer: Any = None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.context_checked = False
        self.note = ""
        if (cfg.quality.check_student_context or cfg.quality.check_student_generation) and tokenizer is None:
            try:
                from ..models import load_tokenizer

                self.tokenizer = load_tokenizer(cfg.student.model, cfg)
            except Exception as exc:  # noqa: BLE001 - any failure: say so and skip only this check
                self.note = f"student tokenizer unavailable ({type(exc).__name__}), too_long / too_long_to_generate not checked"
                log.warning("quality: %s: %s", self.note, exc)
        self.context_checked = bool(cfg.quality.check_student_context and self.tokenizer is not None)
        self.generation_checked = bool(cfg.quality.check_student_generation and self.tokenizer is not None)
        self._cache: dict[tuple[str, str, str], int] = {}

    def _count(self, what: str, row: Mapping[str, Any], content: str) -> int:
        key = (what, row["id"], content)
        if key not in self._cache:
            example, response = student_token_counters(self.tokenizer, row, self.cfg.system_prompt)
            self._cache[key] = (example if what == "example" else response)(content)
        return self._cache[key]

    def count_tokens(self, row: Mapping[str, Any], content: str) -> int:
        """Return the student's token count of the full training example (chat template included)."""
        return self._count("example", row, content)

    def count_response_tokens(self, row: Mapping[str, Any], content: str) -> int:
        """Return the student's token count of the response alone (what it would have to write)."""
        return self._count("response", row, content)

    def verdict(self, record: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
        """Return the quality verdict for a record (failed requests get reason ``request_failed``)."""
        if record.get("error") is not None:
            return {"ok": False, "reason": "request_failed", "answer": None, "detail": "no response (see error)"}
        counter = (lambda content: self.count_tokens(row, content)) if self.context_checked else None
        response = (lambda content: self.count_response_tokens(row, content)) if self.generation_checked else None
        result = check_response(
            record.get("content"), row.get("answerKey"), self.cfg.quality, counter,
            self.cfg.student.max_context if counter else None,
            response, self.cfg.eval.max_new_tokens if response else None,
        ).to_dict()
        if not self.context_checked and self.note and result["ok"]:
            result["detail"] = self.note
        if result["ok"] and record.get("gold_hint"):
            content = record.get("content") or ""
            # A hinted stand-in must not leak the hint into what the student will imitate ...
            if "hint" in content.lower():
                result.update(ok=False, reason="mentions_hint", detail="the response refers to the gold hint")
            else:
                # ... nor copy the hinted letter after reasoning that concludes something else.
                body = _FINAL_ANSWER_SPLIT.split(content, maxsplit=1)[0]
                concluded = extract_answer(body)
                if concluded is not None and concluded != result["answer"]:
                    result.update(ok=False, reason="inconsistent_answer",
                                  detail=f"reasoning concludes {concluded}, final answer {result['answer']}")
        return result


# ----------------------------------------------------------------------------- record building
def finalize_record(request: TeacherRequest, raw: Mapping[str, Any], judge: QualityJudge) -> dict[str, Any]:
    """Return the stored record for a request and its backend result (confidence, checks, verdict)."""
    tokens = raw.get("tokens")
    content = raw.get("content")
    error = raw.get("error")
    if tokens is not None and content is not None:
        # Located by the backend (exact bytes recovered), or token strings that join to the content.
        match = bool(raw["logprobs_usable"]) if "logprobs_usable" in raw else "".join(t["token"] for t in tokens) == content
        probs = [math.exp(t["logprob"]) for t in tokens]
        mean_prob = sum(probs) / len(probs) if probs else None
    else:
        match, mean_prob = None, None
    note = raw.get("logprobs_note")
    if tokens is None and error is None and note is None:
        note = "no logprobs"
    record = {
        "question_id": request.question_id,
        "question_index": request.row.get("index"),
        "stage": request.stage,
        "sample_index": request.sample_index,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "model": request.model,
        "response_model": raw.get("response_model"),
        "seed": raw.get("seed", request.seed),
        "request_hash": request.request_hash,
        "gold": request.row.get("answerKey"),
        "gold_hint": request.gold_hint,
        "messages": request.messages,
        **({"prefill": request.prefill} if request.prefill is not None else {}),
        # The harmony route (analyses): endpoint, raw prompt and text as received, what was wrong with it.
        **({"route": raw["route"]} if raw.get("route") else {}),
        "content": content,
        "reasoning": raw.get("reasoning"),
        "tokens": tokens,
        "reasoning_tokens": raw.get("reasoning_tokens"),
        "logprobs_note": note if error is None else None,
        "finish_reason": raw.get("finish_reason"),
        "usage": raw.get("usage"),
        "latency_s": raw.get("latency_s"),
        "attempts": raw.get("attempts"),
        "retry_errors": raw.get("retry_errors"),
        "error": error,
        "tokens_match_content": match,
        "mean_token_prob": mean_prob,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record["quality"] = judge.verdict(record, request.row)
    record["kept"] = False  # decided per question once all its samples are known
    return record


__all__ = ["QualityJudge", "finalize_record"]
