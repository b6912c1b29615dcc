"""Sentence provenance of the distilled model's own answers (DASD paper, section 4, Figure 6).

The distilled student's answers are its greedy answers to the evaluation questions (the DAS
variant's ``predictions_stage2.jsonl``). Each answer is cut into sentences and every sentence is
scored by teacher forcing under three models, with the DAS phase's own code
(:func:`dasd_utils.das.score_example` with ``distilled_logprobs``, :func:`dasd_utils.das.provenance`):
the teacher (``P_T``, in the context it generated in: for the demo's stand-in teacher its
few-shot examples and gold hint), the student before distillation (``P_S``, adapter disabled)
and the distilled student (``P_D``). Labels: teacher / boosted / shared / student.

Then, by relative position in the answer (``(k + 0.5) / n`` for sentence ``k`` of ``n``, in
:data:`N_BINS` bins), the share of each label among the sentences of correct and of incorrect
answers, and ``Δ`` = the area between the two curves (correct minus incorrect; positive: the
label is more frequent in correct answers).

``P_T`` of text the teacher did not write needs the teacher's probabilities of given text
(teacher forcing). The local teacher gives them directly. An API teacher (``teacher.backend=openai``)
is asked for them with the messages it was sent in phase ``generate``
(:func:`dasd_utils.prompts.build_messages`) followed by the answer, through a server that returns
prompt log-probabilities (vLLM's ``prompt_logprobs``, :mod:`dasd_utils.teacher.prompt_logprobs`);
P_S and P_D stay local. Its first request is a preflight: an endpoint that refuses the parameters
or returns no ``prompt_logprobs`` (OpenAI, Infomaniak...) stops the analysis with a message naming
the host, what it lacks and the way out (:class:`ProvenanceUnavailable`), before any model is
loaded; never a stand-in P_T.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from .. import das
from ..align import UnscorableError
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

    The local teacher always can. An API teacher is asked: one prompt-scoring request
    (:func:`dasd_utils.teacher.prompt_logprobs.probe`), and the server's answer decides.
    """
    if cfg.teacher.backend == "local":
        return
    if cfg.teacher.backend != "openai":
        raise ProvenanceUnavailable(f"teacher.backend={cfg.teacher.backend}: no way to score given text with it; "
                                    "use teacher.backend=local or openai, or analyses.provenance=false")
    from ..teacher.prompt_logprobs import PromptLogprobsUnavailable, probe

    try:
        probe(cfg)
    except PromptLogprobsUnavailable as exc:
        raise ProvenanceUnavailable(str(exc)) from None


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
    api_tokens = _api_teacher_tokens(cfg, todo) if cfg.teacher.backend == "openai" else None
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


__all__ = ["FIRST_SENTENCES", "N_BINS", "ProvenanceUnavailable", "TYPES", "area_difference", "check_teacher", "index_shares", "plot", "position_shares",
           "reclassify", "score_answers", "summarize"]
