"""Sentence provenance of the distilled model's own answers (DASD paper, section 4, Figure 6).

The distilled student's answers are its greedy answers to the evaluation questions (the DAS
variant's ``predictions_stage2.jsonl``). Each answer is cut into sentences and every sentence is
scored under three models, with the DAS phase's own code (:func:`dasd_utils.das.score_example`
with ``distilled_logprobs``, :func:`dasd_utils.das.provenance`): the teacher (``P_T``), the
student before distillation (``P_S``, adapter disabled) and the distilled student (``P_D``).
Labels: teacher / boosted / shared / student / other (rules in :mod:`dasd_utils.das.rules`:
this project's reading of the paper).

Then the share of each label among the sentences of correct and of incorrect answers, by
position, two ways: relative (``(k + 0.5) / n`` for sentence ``k`` of ``n``, :data:`N_BINS` bins)
and absolute (the first :data:`FIRST_SENTENCES` sentences, as the paper plots them), each with
and without the final-answer sentence; ``Δ`` = the area between the two curves (correct minus
incorrect; positive: the label is more frequent in correct answers). Descriptive, not a test.

**P_T is conditioned like DAS's, and never on the answer's outcome.** The route
(:func:`dasd_utils.teacher.routes.decide`):

* ``local``: teacher forcing in the local teacher's prompt (its few-shot examples), *without* the
  gold hint the demo's stand-in generated with: a hint would feed the very outcome Δ compares
  (correct or not) into P_T;
* ``harmony`` (gpt-oss behind vLLM): a raw prompt on ``/v1/completions``
  (:mod:`dasd_utils.teacher.raw_completions`), the conversation rendered as the teacher's own
  requests were (:func:`dasd_utils.teacher.routes.check_rendering` compares with the server). With
  ``teacher.reasoning_source=analysis`` DAS read P_T inside the analysis channel: the answer's
  reasoning goes in the analysis channel, its "Final Answer" line in the final channel after it
  (the day of the stage-2 generation in the system message). With ``content`` DAS read the
  final channel after the teacher's own analysis: the answer goes in the final channel after the
  analysis the teacher writes for that evaluation question (one generation per question, stored
  in ``analyses/provenance_teacher.jsonl``, its day in the system message);
* ``chat`` (a chat-template model behind vLLM): ``prompt_logprobs`` of the answer as the last
  assistant message (:mod:`dasd_utils.teacher.prompt_logprobs`).

The first request is a preflight: an endpoint that cannot give prompt log-probabilities
(OpenAI, Infomaniak...) stops the analysis with a message naming the host, what it lacks and the
way out (:class:`ProvenanceUnavailable`), before any model is loaded; never a stand-in P_T.
After it, an answer whose P_T cannot be read is counted unscorable with its reason.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from .. import das
from ..align import TeacherTokens, UnscorableError
from ..config import DASConfig
from ..prompts import build_messages

log = logging.getLogger(__name__)

N_BINS = 5
#: Absolute positions shown: the first this many sentences of each answer (the paper plots sentence indices).
FIRST_SENTENCES = 8
TYPES = das.PROVENANCE_TYPES


class ProvenanceUnavailable(RuntimeError):
    """The teacher cannot score text it did not write (no prompt log-probabilities)."""


def check_teacher(cfg) -> None:
    """Raise ProvenanceUnavailable when the teacher cannot give P_T of the distilled model's text.

    The local teacher always can. An API teacher is asked by its route: on the harmony route the
    server's rendering is compared with the route's, then one prompt-scoring request goes out
    (:func:`dasd_utils.teacher.prompt_logprobs.probe` on the chat route); the server's answers decide.
    """
    if cfg.teacher.backend == "local":
        return
    if cfg.teacher.backend != "openai":
        raise ProvenanceUnavailable(f"teacher.backend={cfg.teacher.backend}: no way to score given text with it; "
                                    "use teacher.backend=local or openai, or analyses.provenance=false")
    from ..teacher.prompt_logprobs import PROBE_ANSWER, PROBE_ROW, PromptLogprobsUnavailable, probe
    from ..teacher.routes import check_rendering, decide

    try:
        if decide(cfg).kind != "harmony":
            probe(cfg)
            return
        from ..teacher.harmony import assistant_turn, reasoning_effort, render_chat
        from ..teacher.raw_completions import HarmonyScorer

        rendering = check_rendering(cfg, ProvenanceUnavailable)
        conversation = render_chat(build_messages(PROBE_ROW, cfg.system_prompt), rendering.get("server_date"),
                                   reasoning_effort(cfg.teacher.extra_body))
        body, _ = answer_parts(PROBE_ANSWER)
        HarmonyScorer(cfg).preflight(assistant_turn(conversation, [("analysis", PROBE_ANSWER[body[0]:body[1]], "body")]))
    except PromptLogprobsUnavailable as exc:
        raise ProvenanceUnavailable(str(exc)) from None


#: How P_T was conditioned, per route (and reasoning source), as results.json records it.
CONDITIONING = {
    "local": "local_prompt_without_gold_hint",
    ("harmony", "analysis"): "analysis_channel_then_final_line",
    ("harmony", "content"): "final_channel_after_teacher_analysis",
    "chat": "chat_template_last_assistant_message",
}


def route_info(cfg) -> dict[str, Any]:
    """Return the route P_T was read by (:func:`dasd_utils.teacher.routes.decide`) and how it was conditioned."""
    from ..teacher.routes import decide

    route = decide(cfg)
    conditioning = CONDITIONING.get(route.kind) or CONDITIONING[(route.kind, cfg.teacher.reasoning_source)]
    return {**route.to_dict(), "conditioning": conditioning, "reasoning_source": cfg.teacher.reasoning_source}


def answer_parts(answer: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """Return the character spans of an answer's reasoning (inside its ``<reasoning>`` tags) and of its "Final Answer"
    line; None for a part it does not have."""
    from ..token_recovery import final_answer_line

    line = final_answer_line(answer)
    end = line[0] if line else len(answer)
    opening = answer.find("<reasoning>", 0, end)
    start = opening + len("<reasoning>") if opening >= 0 else 0
    closing = answer.find("</reasoning>", start, end)
    stop = closing if closing >= 0 else end
    while start < stop and answer[start].isspace():
        start += 1
    while stop > start and answer[stop - 1].isspace():
        stop -= 1
    return ((start, stop) if stop > start else None), line


def generation_day(run_dir) -> str | None:
    """Return the day most stage-2 teacher answers were received (the date vLLM wrote in their system message)."""
    from collections import Counter

    from ..teacher.harmony import record_date
    from .mixed import stage2_answers

    days = Counter(d for d in (record_date(r) for r in stage2_answers(run_dir).values()) if d)
    return days.most_common(1)[0][0] if days else None


def teacher_analyses(cfg, rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the teacher's own answer to each evaluation question (its analysis conditions P_T of a final channel).

    The stage-2 request of each question (same messages, temperature, ``teacher.extra_body``),
    sent once and stored in ``analyses/provenance_teacher.jsonl`` (a re-run sends nothing).
    """
    from .. import config as config_mod
    from .. import teacher
    from ..teacher.api import TeacherFatalError
    from .paths import provenance_teacher_file

    cfg = config_mod.replace(cfg, **{"teacher.require_logprobs": False})  # only the analysis text is used
    requests = teacher.build_requests(cfg, 2, rows)[0]
    try:
        records = teacher.send_requests(cfg, requests, provenance_teacher_file(cfg.run_dir),
                                        desc="provenance : analyses du professeur")
    except TeacherFatalError as exc:
        raise ProvenanceUnavailable(str(exc)) from None
    return {r.question_id: records[r.request_hash] for r in requests if r.request_hash in records}


def _harmony_prompt(cfg, content: str, row: Mapping[str, Any], date: str | None, source: Mapping[str, Any] | None):
    """Return (raw prompt, offset of each scored text in the answer), or the UnscorableError saying why there is none."""
    from ..teacher.harmony import assistant_turn, reasoning_effort, record_date, render_chat

    effort = reasoning_effort(cfg.teacher.extra_body)
    try:
        if cfg.teacher.reasoning_source == "analysis":
            body, line = answer_parts(content)
            if body is None:
                return UnscorableError("no_reasoning", "the answer has no reasoning to read in the analysis channel")
            messages = [("analysis", content[body[0]:body[1]], "body")]
            messages += [("final", content[line[0]:line[1]], "line")] if line else []
            conversation = render_chat(build_messages(row, cfg.system_prompt), date, effort)
            return assistant_turn(conversation, messages), {"body": body[0], "line": line[0] if line else 0}
        analysis = (source or {}).get("reasoning") or ""
        if not analysis.strip() or record_date(source or {}) is None:
            detail = (source or {}).get("error") or "the teacher's answer to this question has no analysis"
            return UnscorableError("no_reasoning", f"no teacher analysis to condition the final channel on ({detail})")
        conversation = render_chat(build_messages(row, cfg.system_prompt), record_date(source), effort)
        lead = len(content) - len(content.lstrip())
        return assistant_turn(conversation, [("analysis", analysis, None), ("final", content.strip(), "answer")]), {"answer": lead}
    except ValueError as exc:  # the answer holds a harmony marker
        return UnscorableError("tokens_mismatch", str(exc))


def _combine(found, offsets) -> TeacherTokens:
    """Return the scored texts' tokens as one TeacherTokens over the answer (offsets shifted, in text order)."""
    import numpy as np

    parts = sorted(found, key=lambda name: offsets[name])
    return TeacherTokens(
        np.concatenate([found[n].starts + offsets[n] for n in parts]).astype(np.int64),
        np.concatenate([found[n].ends + offsets[n] for n in parts]).astype(np.int64),
        np.concatenate([found[n].logprobs for n in parts]), "harmony",
        "; ".join(f"{n}: {found[n].note}" for n in parts if found[n].note) or None)


def harmony_teacher_tokens(cfg, answers: Sequence[tuple[str, Mapping[str, Any]]]) -> list[TeacherTokens | UnscorableError]:
    """Return, per ``(answer text, question row)``, the teacher's tokens over the answer on the harmony route, or why
    it has none (UnscorableError); raise ProvenanceUnavailable when the endpoint cannot give them."""
    from ..teacher.prompt_logprobs import PromptLogprobsUnavailable
    from ..teacher.raw_completions import score_prompts
    from ..teacher.routes import check_rendering

    check_rendering(cfg, ProvenanceUnavailable)
    if cfg.teacher.reasoning_source == "analysis":
        day = generation_day(cfg.run_dir)
        if day is None:
            raise ProvenanceUnavailable("no stage-2 teacher record tells the day of the teacher's generation: the harmony "
                                        "prompt's date (part of P_T's context) is unknown")
        built = [_harmony_prompt(cfg, content, row, day, None) for content, row in answers]
    else:
        sources = teacher_analyses(cfg, [row for _, row in answers])
        built = [_harmony_prompt(cfg, content, row, None, sources.get(row["id"])) for content, row in answers]
    ready = [b for b in built if not isinstance(b, UnscorableError)]
    try:
        scored = iter(score_prompts(cfg, [prompt for prompt, _ in ready]))
    except PromptLogprobsUnavailable as exc:
        raise ProvenanceUnavailable(str(exc)) from None
    out = []
    for item in built:
        if isinstance(item, UnscorableError):
            out.append(item)
            continue
        found = next(scored)
        out.append(found if isinstance(found, UnscorableError) else _combine(found, item[1]))
    return out


def _api_teacher_tokens(cfg, todo) -> list:
    """Return the API teacher's tokens (or UnscorableError) per answer; raise ProvenanceUnavailable after the preflight."""
    from ..teacher.prompt_logprobs import PromptLogprobsUnavailable, teacher_answer_tokens

    try:
        return teacher_answer_tokens(cfg, [(build_messages(row, cfg.system_prompt), content) for _, content, _, row in todo])
    except PromptLogprobsUnavailable as exc:
        raise ProvenanceUnavailable(str(exc)) from None


def _logprobs(model, tokenizer, messages_list, contents, cfg, desc: str):
    from ..scoring import batched_token_logprobs, encode_for_scoring

    examples = encode_for_scoring(tokenizer, messages_list, contents)
    lps = batched_token_logprobs(
        model, examples, batch_size=cfg.das.batch_size, chunk_tokens=cfg.das.logprob_chunk_tokens,
        pad_token_id=tokenizer.pad_token_id, progress=False, desc=desc, reuse_prefix=cfg.das.reuse_prompt_prefix,
    )
    return examples, lps


def score_answers(cfg, predictions: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  adapter: str) -> list[dict[str, Any]]:
    """Return one record per answer: ``question_id``, ``correct`` and its sentences with P_T, P_S, P_D, provenance."""
    from ..scoring import response_token_spans
    from ..segment import sentence_spans
    from ..teacher.local import teacher_messages

    if cfg.teacher.backend not in ("local", "openai"):
        check_teacher(cfg)
    by_id = {r["id"]: r for r in rows}
    answers = [p for p in predictions if p.get("response") and p["question_id"] in by_id]
    records: list[dict[str, Any]] = []
    todo = []
    for p in answers:
        sentences = sentence_spans(p["response"], cfg.das.segmenter)
        rec = {"question_id": p["question_id"], "correct": bool(p["correct"]), "scorable": bool(sentences)}
        records.append(rec)
        if sentences:
            todo.append((rec, p["response"], sentences, by_id[p["question_id"]]))
        else:
            rec["unscorable_reason"] = "no_sentences"
    if not todo:
        return records
    # An API teacher first: its preflight may stop the analysis before any model is loaded.
    api_tokens = None
    if cfg.teacher.backend == "openai":
        from ..teacher.routes import decide

        harmony = decide(cfg).kind == "harmony"
        api_tokens = (harmony_teacher_tokens(cfg, [(t[1], t[3]) for t in todo]) if harmony
                      else _api_teacher_tokens(cfg, todo))
    model, tokenizer = das.load_scoring_model(cfg, distilled_adapter=adapter)
    contents = [t[1] for t in todo]
    student_msgs = [build_messages(t[3], cfg.system_prompt) for t in todo]
    local_teacher = api_tokens is None
    # Never the gold hint, even for the stand-in teacher that generated with it: P_T would then read
    # the very outcome (correct or not) that Δ compares, and lean by construction.
    teacher_msgs = [teacher_messages(t[3], cfg.system_prompt, cfg.teacher.local_few_shot, gold_hint=False)
                    for t in todo] if local_teacher else []
    s_examples, d_lp = _logprobs(model, tokenizer, student_msgs, contents, cfg, "provenance : élève distillé")
    with model.disable_adapter():
        _, s_lp = _logprobs(model, tokenizer, student_msgs, contents, cfg, "provenance : élève")
        if local_teacher and cfg.teacher.model == cfg.student.model:  # the demo: the stand-in teacher is the base student
            t_examples, t_lp = _logprobs(model, tokenizer, teacher_msgs, contents, cfg, "provenance : professeur")
    if local_teacher and cfg.teacher.model != cfg.student.model:
        from ..models import load_model

        teacher, t_tok = load_model(cfg.teacher.model, cfg, dtype=cfg.teacher.local_dtype, device=cfg.teacher.local_device)
        t_examples, t_lp = _logprobs(teacher, t_tok, teacher_msgs, contents, cfg, "provenance : professeur")
        del teacher
    for k, (rec, content, sentences, _) in enumerate(todo):
        s_starts, s_ends = response_token_spans(s_examples[k])
        try:
            if local_teacher:
                t_starts, t_ends = response_token_spans(t_examples[k])
                t_logprobs = t_lp[k]
            elif isinstance(api_tokens[k], UnscorableError):
                raise api_tokens[k]
            else:
                t_starts, t_ends, t_logprobs = api_tokens[k].starts, api_tokens[k].ends, api_tokens[k].logprobs
            scored = das.score_example(content, sentences, t_starts, t_ends, t_logprobs, s_starts, s_ends, s_lp[k],
                                       cfg.das, distilled_logprobs=d_lp[k])
        except UnscorableError as exc:
            rec.update(scorable=False, unscorable_reason=exc.reason)
            continue
        rec["sentences"] = [{key: s[key] for key in ("start", "end", "text", "p_teacher", "p_student", "p_distilled",
                                                      "provenance", "final_answer")} for s in scored["sentences"]]
    return records


def reclassify(records: Sequence[Mapping[str, Any]], cfg: DASConfig | None = None) -> list[list[str]]:
    """Return the provenance labels recomputed from the stored P_T, P_S, P_D of each scorable record."""
    return [das.classify_sentences([s["p_teacher"] for s in r["sentences"]], [s["p_student"] for s in r["sentences"]],
                                   cfg, p_distilled=[s["p_distilled"] for s in r["sentences"]])
            for r in records if r.get("sentences")]


def _shares(counts: Sequence[Sequence[int]]) -> dict[str, list[float | None]]:
    return {t: [(c[i] / sum(c)) if sum(c) else None for c in counts] for i, t in enumerate(TYPES)}


def _kept(sentences: Sequence[Mapping[str, Any]], with_final: bool) -> list[Mapping[str, Any]]:
    return [s for s in sentences if with_final or not s.get("final_answer")]


def position_shares(records: Sequence[Mapping[str, Any]], correct: bool, n_bins: int = N_BINS,
                    with_final: bool = True) -> dict[str, list[float | None]]:
    """Return, per label, its share among the sentences in each relative-position bin (answers of one correctness).

    Sentence ``k`` of ``n`` sits at ``(k + 0.5) / n``; ``with_final=False`` leaves the final-answer
    sentence out (positions are then counted among the others).
    """
    counts = [[0] * len(TYPES) for _ in range(n_bins)]
    for r in records:
        if bool(r.get("correct")) != correct:
            continue
        sentences = _kept(r.get("sentences") or [], with_final)
        for k, s in enumerate(sentences):
            b = min(n_bins - 1, int((k + 0.5) / len(sentences) * n_bins))
            counts[b][TYPES.index(s["provenance"])] += 1
    return _shares(counts)


def index_shares(records: Sequence[Mapping[str, Any]], correct: bool, first: int = FIRST_SENTENCES,
                 with_final: bool = True) -> dict[str, list[float | None]]:
    """Return, per label, its share among the 1st, 2nd, ... ``first``-th sentences (absolute index, as in the paper)."""
    counts = [[0] * len(TYPES) for _ in range(first)]
    for r in records:
        if bool(r.get("correct")) != correct:
            continue
        for k, s in enumerate(_kept(r.get("sentences") or [], with_final)[:first]):
            counts[k][TYPES.index(s["provenance"])] += 1
    return _shares(counts)


def area_difference(correct: Sequence[float | None], incorrect: Sequence[float | None]) -> float | None:
    """Return Δ = Σ (share in correct − share in incorrect) × position width (1 / number of positions), over the
    positions both sides have (None when they share none)."""
    pairs = [(a, b) for a, b in zip(correct, incorrect) if a is not None and b is not None]
    return sum(a - b for a, b in pairs) / len(correct) if pairs else None


def _curves(scored, shares, **kwargs) -> tuple[dict[str, Any], dict[str, float | None]]:
    good, bad = shares(scored, True, **kwargs), shares(scored, False, **kwargs)
    return {"correct": good, "incorrect": bad}, {t: area_difference(good[t], bad[t]) for t in TYPES}


def summarize(records: Sequence[Mapping[str, Any]], n_bins: int = N_BINS, first: int = FIRST_SENTENCES) -> dict[str, Any]:
    """Return counts, shares, the positions' shares for correct / incorrect answers and Δ per label.

    Positions two ways, each with and without the final-answer sentence (a line both models
    predict well, whose place is fixed): relative bins (``by_position``, ``delta``;
    ``..._without_final``) and the absolute index of the first ``first`` sentences (``by_index``,
    ``delta_by_index``; ``..._without_final``).
    """
    scored = [r for r in records if r.get("sentences")]
    sentences = [s for r in scored for s in r["sentences"]]
    unscorable: dict[str, int] = {}
    for r in records:
        if not r.get("sentences"):
            reason = r.get("unscorable_reason") or "no_sentences"
            unscorable[reason] = unscorable.get(reason, 0) + 1
    out: dict[str, Any] = {
        "answers": len(records),
        "scored": len(scored),
        "unscorable": dict(sorted(unscorable.items())),
        "correct": sum(1 for r in scored if r["correct"]),
        "sentences": len(sentences),
        "final_answer_sentences": sum(1 for s in sentences if s.get("final_answer")),
        "counts": {t: sum(1 for s in sentences if s["provenance"] == t) for t in TYPES},
        "shares": {t: (sum(1 for s in sentences if s["provenance"] == t) / len(sentences)) if sentences else None
                   for t in TYPES},
        "n_bins": n_bins,
        "first_sentences": first,
    }
    for suffix, with_final in (("", True), ("_without_final", False)):
        out["by_position" + suffix], out["delta" + suffix] = _curves(scored, position_shares, n_bins=n_bins,
                                                                      with_final=with_final)
        out["by_index" + suffix], out["delta_by_index" + suffix] = _curves(scored, index_shares, first=first,
                                                                           with_final=with_final)
    return out


def plot(summary: Mapping[str, Any], path, profile: str = ""):
    """Write the share of each label by position (relative bins, then the first sentences by index), correct (solid)
    vs incorrect (dashed) answers; return the path."""
    from ..plots import TYPE_COLOURS, plt, save, stand_in_note

    colours = {**TYPE_COLOURS, "boosted": "#e7298a", "other": "#999999"}
    n, first = summary["n_bins"], summary.get("first_sentences", FIRST_SENTENCES)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
    panels = ((axes[0], [(b + 0.5) / n for b in range(n)], "by_position", "delta",
               "position relative de la phrase dans la réponse"),
              (axes[1], list(range(1, first + 1)), "by_index", "delta_by_index", "rang de la phrase (les premières)"))
    for ax, x, curves, deltas, xlabel in panels:
        for t in TYPES:
            delta = summary[deltas][t]
            for kind, style in (("correct", "-"), ("incorrect", "--")):
                ys = summary[curves][kind][t]
                ax.plot(x, [y if y is not None else float("nan") for y in ys], style, marker="o", color=colours[t],
                        label=f"{t} ({'juste' if kind == 'correct' else 'faux'})"
                        + (f", Δ={delta:+.2f}" if kind == "correct" and delta is not None else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, ncol=2)
    note = stand_in_note(profile)
    axes[0].set_ylabel("part des phrases")
    fig.suptitle("Provenance des phrases du modèle distillé" + (f"\n({note})" if note else ""), fontsize=10)
    return save(fig, path)


__all__ = ["FIRST_SENTENCES", "N_BINS", "ProvenanceUnavailable", "TYPES", "answer_parts", "area_difference", "check_teacher",
           "CONDITIONING", "generation_day", "harmony_teacher_tokens", "route_info", "index_shares", "plot", "position_shares", "reclassify", "score_answers", "summarize",
           "teacher_analyses"]
