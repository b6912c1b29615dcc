"""Mixed-policy distillation (DASD paper, sections 5 and 6.4.2): the teacher finishes the student's diverging answers.

1. **The student answers again.** The distilled student (the DAS variant's stage-2 adapter)
   answers every question of the stage-2 pool (the training questions with a quality-kept
   high-temperature teacher answer), greedily as at evaluation, each answer capped at
   ``analyses.mixed_length_cap`` (1.5) times the teacher's answer to the same question, both
   counted in student tokens (:func:`regenerate`, cached).
2. **Divergence.** An answer diverges when the cap cut it off or its final answer is wrong or
   missing (:func:`divergence`).
3. **Cut and continue.** A diverging answer is kept up to a random word end past the middle of
   its reasoning (before any "Final Answer"; :func:`cut_point`, seeded per question), and the
   teacher continues that text (:func:`dasd_utils.teacher.continuation_requests`), by the route
   :func:`dasd_utils.teacher.routes.decide` picks from the model:

   * ``local``: the local teacher reads its usual prompt followed by the prefix;
   * ``chat`` (a chat-template model): the prefix as a final assistant message with vLLM's
     ``continue_final_message``;
   * ``harmony`` (gpt-oss): a raw prompt on ``/v1/completions`` (:mod:`dasd_utils.teacher.raw_completions`),
     rendered as the teacher's stage-2 request was (same day, same reasoning effort), with the
     prefix left open in the channel the training target uses: the analysis channel for
     ``teacher.reasoning_source=analysis`` (the prefix without its ``<reasoning>`` tag), else the
     final channel after the analysis the teacher wrote for that question in stage 2.

   The training answer is the prefix followed by the continuation, joined exactly (on the harmony
   route with an open analysis: the analysis' continuation, ``</reasoning>`` and the final
   message's "Final Answer" line), and the quality filter judges that joined text.
   A continuation that comes back as a **new turn** (a non-empty reasoning field on the chat
   route; on the harmony route a ``<|start|>`` other than the one final message that ends an
   analysis) is never trained on, and is counted.
4. **One more training.** The kept mixed answers and the off-policy examples (the DAS-kept
   stage-2 set) train ``analyses.mixed_epochs`` more epoch(s) from the stage-2 adapter with the
   stage-2 recipe; with ``analyses.mixed_masked`` a second variant leaves the student's prefix
   out of the loss (the paper's Table 5 found that worse). Both are evaluated with the others.

An API teacher's first continuation is checked before the others are sent
(:func:`continuation_problem`): a server that refuses the parameters or starts a new answer
instead of continuing stops this analysis with :class:`MixedPolicyUnavailable`, naming what is
missing, and the other analyses go on.

**Where this departs from the paper** (said in notebook 08 and the report): divergence also
counts complete answers whose final answer is wrong or missing (the paper: cut off by the
length cap only; that paper-faithful subset is counted apart, :func:`summarize`); the student
regenerates greedily, as at evaluation; every question of the pool is regenerated, including
those whose off-policy example is already in the training set; and the comparison with DAS
alone is not at equal training (one more epoch): only the control isolates the mixed answers.
"""

from __future__ import annotations

import logging
import math
import random
import re
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import layout, reuse
from ..data import read_jsonl, write_jsonl
from ..devices import free_memory
from ..hashing import adapter_sha256
from ..prompts import build_messages, build_sft_example, extract_answer

log = logging.getLogger(__name__)

_FINAL_ANSWER = re.compile(r"final\s*answer", re.IGNORECASE)
#: The answer format's opening tag: a continuation that writes it again has started a new answer.
OPENING = "<reasoning>"


class MixedPolicyUnavailable(RuntimeError):
    """The teacher cannot continue an answer it is given (no assistant prefill)."""


# ----------------------------------------------------------------------------- the rules
def length_cap(teacher_tokens: int, factor: float) -> int:
    """Return the student's token budget for a question: ``factor`` times the teacher's answer, rounded up."""
    return max(1, math.ceil(factor * teacher_tokens))


def divergence(answer: Mapping[str, Any]) -> str | None:
    """Return why the student's answer diverges (``cut_off``, ``no_answer``, ``wrong_answer``), or None."""
    if answer["cut_off"]:
        return "cut_off"
    if answer.get("answer") is None:
        return "no_answer"
    return "wrong_answer" if answer["answer"] != answer["gold"] else None


def cut_point(text: str, rng: random.Random) -> int | None:
    """Return a random word end strictly past the middle of the answer's reasoning, or None when there is none.

    The reasoning is the text before its first "Final Answer" (all of it when there is none), so
    the student's (wrong) conclusion is never kept. A word end is a position whose character is
    white space and whose previous one is not: the prefix ends on a whole word.
    """
    match = _FINAL_ANSWER.search(text)
    body = (text[: match.start()] if match else text).rstrip()
    ends = [i for i in range(len(body) // 2 + 1, len(body)) if body[i].isspace() and not body[i - 1].isspace()]
    return rng.choice(ends) if ends else None


def item_rng(seed: int, question_id: str) -> random.Random:
    """Return the random generator of one question's cut (the same seed and question: the same cut)."""
    return random.Random(f"mixed-policy:{seed}:{question_id}")


def continuation_problem(prefill: str, record: Mapping[str, Any] | None) -> str | None:
    """Return why a teacher record does not continue ``prefill`` (refused, empty, a new answer), or None."""
    if record is None:
        return "no answer was received"
    if record.get("error") is not None:
        error = str(record["error"])
        if error.startswith("HTTP 4"):
            return f"the endpoint refused the continuation request ({error})"
        return f"the continuation request failed ({error})"
    route = record.get("route") or {}
    if route.get("problem"):  # the harmony route read the raw text: a new turn, a tool call, markers stripped
        return str(route["problem"])
    if (record.get("reasoning") or "").strip():
        # The model thought again before answering: it started a new turn (vLLM ignores
        # continue_final_message for harmony models) instead of continuing the text it was given.
        return "new turn: the answer carries a reasoning field (the server started a new answer)"
    content = record.get("content") or ""
    if not content.strip():
        return "the endpoint returned an empty continuation"
    head = content.lstrip()
    if OPENING in prefill and OPENING in content:
        return f"new turn: the endpoint started a new answer (its text opens {OPENING} again) instead of continuing the one it was given"
    start = prefill.lstrip()[:40]
    if len(start) >= 10 and head.startswith(start):
        return "new turn: the endpoint wrote the given beginning again instead of continuing it"
    return None


# ----------------------------------------------------------------------------- 1. the student answers again
def regenerate(cfg, pool: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]], adapter: Path,
               force: bool = False) -> list[dict[str, Any]]:
    """Return the distilled student's capped greedy answer to each pool question (cached with its inputs)."""
    from .. import config as config_mod
    from ..evaluation.generation import chat_prefix_ids, generate_greedy, render_chat_prompt
    from ..evaluation.hf_backend import HFBackend
    from ..evaluation.models import EvalModel
    from .variants import EVAL_SETTINGS

    backend = HFBackend(config_mod.replace(cfg, **EVAL_SETTINGS))
    tok = backend.tokenizer
    todo = [(rec, rows[rec["question_id"]]) for rec in pool if rec["question_id"] in rows]
    teacher_tokens = [len(tok(rec["content"], add_special_tokens=False)["input_ids"]) for rec, _ in todo]
    caps = [length_cap(n, cfg.analyses.mixed_length_cap) for n in teacher_tokens]
    path = layout.mixed_student_answers(cfg.run_dir)
    manifest = path.with_name("student_answers_manifest.json")
    key = reuse.inputs_key({
        "adapter": adapter_sha256(adapter), "questions": [[rec["question_id"], rec["content"]] for rec, _ in todo],
        "cap": cfg.analyses.mixed_length_cap, "system_prompt": cfg.system_prompt, "backend": backend.settings(),
        "batch_size": cfg.eval.batch_size,
    })
    if reuse.reusable(manifest, key, [path], force) is not None:
        return read_jsonl(path)
    prompts = [render_chat_prompt(tok, row, cfg.system_prompt) for _, row in todo]
    with backend.activate(EvalModel("mixed_student", Path(adapter))) as model:
        outputs = generate_greedy(model, tok, prompts, max(caps, default=1), cfg.eval.batch_size,
                                  desc="politique mixte : l'élève distillé répond", prefix_ids=chat_prefix_ids(tok, cfg.system_prompt))
    del model, backend  # the teacher and the next trainings load their own models (a T4 holds one at a time)
    free_memory()
    answers = []
    for (rec, row), n_teacher, cap, out in zip(todo, teacher_tokens, caps, outputs):
        stopped = out["finish_reason"] == "stop"
        ids = out["token_ids"][:-1] if stopped else out["token_ids"]
        text = tok.decode(ids[:cap], skip_special_tokens=True)
        cut_off = not stopped or len(ids) > cap
        answers.append({
            "question_id": rec["question_id"], "gold": row.get("answerKey"), "teacher_tokens": n_teacher,
            "cap_tokens": cap, "student_tokens": min(len(ids), cap), "cut_off": cut_off, "text": text,
            "answer": None if cut_off else extract_answer(text),
        })
    write_jsonl(path, answers)
    reuse.save_manifest(manifest, key)
    return answers


# ----------------------------------------------------------------------------- 2-3. divergence, cut, continuation
def cut_items(answers: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Return one item per answer: its divergence and, for a diverging one, the cut and the student's prefix."""
    items = []
    for a in answers:
        item = {key: a[key] for key in ("question_id", "gold", "teacher_tokens", "cap_tokens", "student_tokens", "cut_off")}
        item.update(student_answer=a["answer"], student_text=a["text"], divergence=divergence(a), prefix=None)
        if item["divergence"] is not None:
            cut = cut_point(a["text"], item_rng(seed, a["question_id"]))
            if cut is None:
                item["skipped"] = "no_cut_point"
            else:
                item.update(cut=cut, prefix=a["text"][:cut])
        items.append(item)
    return items


def stage2_answers(run_dir) -> dict[str, dict[str, Any]]:
    """Return, per question of the pool, the teacher's stage-2 record it came from (analysis text, day received)."""
    from .. import teacher
    from .sampling import pool_records

    by_hash = teacher.read_records(layout.teacher_records(run_dir, 2))
    return {r["question_id"]: by_hash[r["request_hash"]] for r in pool_records(run_dir) if r.get("request_hash") in by_hash}


def analysis_prefix(prefix: str) -> str:
    """Return the student's prefix as analysis-channel text: without its opening ``<reasoning>`` tag and that line break."""
    text = prefix.lstrip()
    if text.startswith(OPENING):
        text = text[len(OPENING):]
        text = text[1:] if text.startswith("\n") else text
    return text


def harmony_prompt(cfg, row: Mapping[str, Any], prefix: str, source: Mapping[str, Any] | None):
    """Return the raw prompt continuing ``prefix`` on the harmony route, or a string saying why there is none.

    The conversation is the teacher's stage-2 request rendered as vLLM rendered it that day
    (``source``: the stage-2 teacher record of the question); the prefix stays open in the analysis
    channel (``reasoning_source=analysis``) or in the final channel after the teacher's own analysis.
    """
    from ..teacher.harmony import assistant_turn, reasoning_effort, record_date, render_chat

    date = record_date(source or {})
    if source is None or date is None:
        return "no stage-2 teacher record with its day for this question (the prompt would not be the teacher's)"
    conversation = render_chat(build_messages(row, cfg.system_prompt), date, reasoning_effort(cfg.teacher.extra_body))
    try:
        if cfg.teacher.reasoning_source == "analysis":
            text = analysis_prefix(prefix)
            return assistant_turn(conversation, [("analysis", text, "prefix")]) if text else "empty prefix"
        analysis = (source.get("reasoning") or "").strip()
        if not analysis:
            return "the teacher's stage-2 answer has no analysis to continue after"
        return assistant_turn(conversation, [("analysis", source["reasoning"], None), ("final", prefix, "prefix")])
    except ValueError as exc:  # the student wrote a harmony marker
        return str(exc)


def continuation_setup(cfg, cut: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]],
                       sources: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Any, list[Any], list[Any], Any]:
    """Return (route, requests, the cut items they continue, the backend or None for the default).

    Items the harmony route cannot continue get ``continuation_error`` and no request.
    """
    from .. import teacher
    from ..teacher.routes import decide

    route = decide(cfg)
    if route.kind != "harmony":
        requests = teacher.continuation_requests(cfg, [(rows[i["question_id"]], i["prefix"]) for i in cut])
        return route, requests, list(cut), None
    from ..teacher.raw_completions import HarmonyContinuations, prompt_digest
    from ..teacher.routes import check_rendering

    check_rendering(cfg, lambda problem: _unavailable(cfg, problem, route))
    sources = stage2_answers(cfg.run_dir) if sources is None else sources
    todo, prompts = [], []
    for item in cut:
        prompt = harmony_prompt(cfg, rows[item["question_id"]], item["prefix"], sources.get(item["question_id"]))
        if isinstance(prompt, str):
            item["continuation_error"] = f"not sent: {prompt}"
            continue
        todo.append(item)
        prompts.append(prompt)
    requests = teacher.continuation_requests(
        cfg, [(rows[i["question_id"]], i["prefix"]) for i in todo],
        route_options=[{"route": "harmony", "prompt_sha256": prompt_digest(p.text)} for p in prompts])
    return route, requests, todo, HarmonyContinuations(cfg, {r.request_hash: p for r, p in zip(requests, prompts)})


def continue_answers(cfg, items: Sequence[dict[str, Any]], rows: Mapping[str, Mapping[str, Any]], backend=None,
                     sources: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Fill each cut item with the teacher's continuation, the joined answer and its quality verdict (in place).

    With an API teacher whose first continuation is not stored yet, that one is sent alone and
    checked (:func:`continuation_problem`); raises :class:`MixedPolicyUnavailable` when it fails.
    ``sources``: the stage-2 teacher record of each question (the harmony route's conversation;
    default: :func:`stage2_answers`).
    """
    from .. import config as config_mod
    from .. import teacher

    cut = [i for i in items if i.get("prefix")]
    if not cut:
        return
    # The continuations train the student; their logprobs are not used: a server without them is fine here.
    cfg = config_mod.replace(cfg, **{"teacher.require_logprobs": False})
    route, requests, cut, route_backend = continuation_setup(cfg, cut, rows, sources)
    for item in items:
        if item.get("prefix"):
            item["route"] = route.kind
    backend = backend or route_backend or teacher.make_backend(cfg)
    if cfg.teacher.backend == "openai" and requests:
        _check_first(cfg, requests[0], backend, route)
    records = teacher.send_requests(cfg, requests, layout.mixed_continuations(cfg.run_dir), backend=backend,
                                    desc="professeur : continuations")
    for item, request in zip(cut, requests):
        record = records.get(request.request_hash)
        problem = continuation_problem(request.prefill, record)
        item["continuation_error"] = problem
        item["new_turn"] = bool(problem and problem.startswith("new turn"))
        if record is None or record.get("error") is not None:
            continue
        item.update(continuation=record["content"], joined=request.prefill + record["content"],
                    finish_reason=record.get("finish_reason"), quality=record["quality"])
        item["teacher_answer"] = record["quality"].get("answer")
        # A new turn is never trained on, whatever the quality filter says of its text.
        item["used"] = problem is None and bool(record["quality"]["ok"])


def _unavailable(cfg, problem: str, route=None) -> MixedPolicyUnavailable:
    from ..teacher.api import endpoint_host

    if route is not None and route.kind == "harmony":
        need = ("a server that continues a raw harmony prompt on /v1/completions with its special tokens kept "
                "(vLLM serving gpt-oss: skip_special_tokens=false)")
    else:
        need = ("a server that continues a final assistant message (vLLM: continue_final_message=true with "
                "add_generation_prompt=false)")
    return MixedPolicyUnavailable(
        f"teacher at {endpoint_host(cfg.teacher.base_url)}: {problem}. Mixed-policy distillation needs {need}. "
        "Use such a server or the local teacher, or set analyses.mixed_policy=false."
    )


def _check_first(cfg, request, backend, route=None) -> None:
    """Send one continuation request alone and raise MixedPolicyUnavailable when the answer does not continue it."""
    from .. import teacher
    from ..teacher.api import TeacherFatalError

    path = layout.mixed_continuations(cfg.run_dir)
    try:
        first = teacher.send_requests(cfg, [request], path, backend=backend, desc="professeur : continuation (contrôle)")
    except TeacherFatalError as exc:  # the teacher's own preflight stopped at this request (a 4xx, no content...)
        problem = continuation_problem(request.prefill, teacher.read_records(path).get(request.request_hash)) or str(exc)
    else:
        problem = continuation_problem(request.prefill, first.get(request.request_hash))
    if problem is not None:
        raise _unavailable(cfg, problem, route)


def check_teacher(cfg, pool: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]], backend=None) -> None:
    """Return None when the teacher can continue an answer; raise MixedPolicyUnavailable, before any model is loaded, when not.

    The local teacher always can. An API teacher gets one continuation request by its route: its
    own stage-2 answer to the first pool question that has a cut point, cut as a student's answer
    would be (:func:`cut_point`). The answer is judged and not stored: the check asks the
    endpoint configured now, and it trains nothing.
    """
    if cfg.teacher.backend != "openai":
        return
    from .. import config as config_mod
    from ..teacher.api import TeacherFatalError

    cfg = config_mod.replace(cfg, **{"teacher.require_logprobs": False})
    for record in pool:
        row = rows.get(record["question_id"])
        cut = cut_point(record["content"], item_rng(cfg.seed, f"probe:{record['question_id']}")) if row else None
        if cut is None:
            continue
        item = {"question_id": record["question_id"], "prefix": record["content"][:cut]}
        route, requests, _, route_backend = continuation_setup(cfg, [item], rows)
        if not requests:
            raise _unavailable(cfg, str(item.get("continuation_error")), route)
        answers: list[Mapping[str, Any]] = []
        try:
            (backend or route_backend or _backend(cfg)).generate(requests[:1], lambda _, raw: answers.append(raw))
        except TeacherFatalError as exc:  # 401/403/404, or the teacher's own preflight refused the answer
            problem = continuation_problem(item["prefix"], answers[0] if answers else None) or str(exc)
        else:
            problem = continuation_problem(item["prefix"], answers[0] if answers else None)
        if problem is not None:
            raise _unavailable(cfg, problem, route)
        return


def _backend(cfg):
    from .. import teacher

    return teacher.make_backend(cfg)


# ----------------------------------------------------------------------------- 4. training examples, summary
def training_examples(cfg, items: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]],
                      off_policy: Sequence[Mapping[str, Any]], masked: bool = False) -> list[dict[str, Any]]:
    """Return the SFT examples: the off-policy ones, then each kept mixed answer (prefix + continuation).

    ``masked``: every mixed example carries ``mask_prefix_chars`` = the prefix's length, so that
    the student's own text is read but not supervised (:func:`dasd_utils.sft.tokenize_sft_example`).
    """
    out = [dict(r, source="off_policy") for r in off_policy]
    for item in items:
        if not item.get("used"):
            continue
        example = {"question_id": item["question_id"], "stage": 2, "source": "mixed", "prefix_chars": len(item["prefix"]),
                   "messages": build_sft_example(rows[item["question_id"]], item["joined"], cfg.system_prompt)}
        if masked:
            example["mask_prefix_chars"] = len(item["prefix"])
        out.append(example)
    return out


def off_policy_examples(run_dir) -> list[dict[str, Any]]:
    """Return the DAS-kept stage-2 examples (``das/stage2_sft.jsonl``), the off-policy part of the mix."""
    return read_jsonl(layout.sft_examples(run_dir, 2))


def _steps(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Return the counts of the diverging answers' steps: cut, continued, new turns, kept."""
    return {
        "diverging": sum(1 for i in items if i["divergence"] is not None),
        "continued": sum(1 for i in items if i.get("joined") is not None),
        "new_turn": sum(1 for i in items if i.get("new_turn")),
        "used": sum(1 for i in items if i.get("used")),
    }


def summarize(items: Sequence[Mapping[str, Any]], n_off_policy: int) -> dict[str, Any]:
    """Return the counts of each step (divergence, cut, continuation, quality) and the student's share of the kept answers.

    ``paper_subset``: the same counts for the answers that diverge the paper's way only (cut off
    by the length cap), reported on their own.
    """
    used = [i for i in items if i.get("used")]
    continued = [i for i in items if i.get("joined") is not None]
    rejected: dict[str, int] = {}
    for i in continued:
        if not i["quality"]["ok"]:
            rejected[i["quality"]["reason"]] = rejected.get(i["quality"]["reason"], 0) + 1
    shares = [len(i["prefix"]) / len(i["joined"]) for i in used if i["joined"]]
    return {
        "available": True,
        "questions": len(items),
        "complete_and_correct": sum(1 for i in items if i["divergence"] is None),
        "diverging": sum(1 for i in items if i["divergence"] is not None),
        "cut_off": sum(1 for i in items if i["divergence"] == "cut_off"),
        "wrong_or_no_answer": sum(1 for i in items if i["divergence"] in ("wrong_answer", "no_answer")),
        "no_cut_point": sum(1 for i in items if i.get("skipped") == "no_cut_point"),
        "continued": len(continued),
        "continuation_failed": sum(1 for i in items if i.get("prefix") and i.get("joined") is None),
        "not_continuing": sum(1 for i in continued if i.get("continuation_error")),
        # Continuations that came back as a new turn: rejected (counted in not_continuing too, or as failed)
        "new_turn": sum(1 for i in items if i.get("new_turn")),
        "route": next((i["route"] for i in items if i.get("route")), None),
        "paper_subset": _steps([i for i in items if i["divergence"] == "cut_off"]),
        "quality_rejected": dict(sorted(rejected.items())),
        "used": len(used),
        "teacher_correct": sum(1 for i in used if i.get("teacher_answer") == i["gold"]),
        "student_share_chars": float(statistics.fmean(shares)) if shares else None,
        "off_policy": n_off_policy,
        "training_examples": n_off_policy + len(used),
    }


def build(cfg, pool: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]], adapter: Path,
          force: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (items, summary) after the student's new answers, the cuts and the teacher's continuations.

    Writes ``analyses/mixed_policy/items.jsonl``. Raises :class:`MixedPolicyUnavailable` when the
    teacher cannot continue an answer.
    """
    answers = regenerate(cfg, pool, rows, adapter, force=force)
    items = cut_items(answers, cfg.seed)
    continue_answers(cfg, items, rows)
    write_jsonl(layout.mixed_items(cfg.run_dir), items)
    summary = summarize(items, len(off_policy_examples(cfg.run_dir)))
    summary.update(length_cap=cfg.analyses.mixed_length_cap, epochs=cfg.analyses.mixed_epochs,
                   masked_variant=cfg.analyses.mixed_masked)
    return items, summary


__all__ = ["MixedPolicyUnavailable", "OPENING", "analysis_prefix", "build", "check_teacher", "continuation_problem",
           "continuation_setup", "continue_answers", "cut_items", "cut_point", "divergence", "harmony_prompt", "item_rng",
           "length_cap", "off_policy_examples", "regenerate", "stage2_answers", "summarize", "training_examples"]
