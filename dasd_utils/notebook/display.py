"""What the notebooks show: the run's configuration, each phase's counts as tables, figures, the report inline.

The notebooks hold no pipeline logic: every computation is a ``dasd_utils`` function that the
command line calls too. These helpers only make the notebooks' cells short and their outputs
stable (relative paths, rounded numbers) for nbval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from ..config import Config
from ..frenchcells import french
from ..summaries import DasSummary, SftManifest, Summary, TeacherSummary
from .setup import COLAB, KAGGLE, detect_environment, relative

T = TypeVar("T", bound=Summary)


#: French labels of Config.summary()'s keys (the notebooks' first table).
CONFIG_LABELS = {
    "profile": "profil", "student": "élève", "teacher": "professeur", "data_source": "source des questions",
    "n_train": "questions d'entraînement", "n_eval": "questions d'évaluation",
    "temperatures": "températures (stage 1, stage 2)", "das_thresholds": "seuils DAS (P_T, P_T − P_S, ratio)",
    "lora": "LoRA", "lr": "taux d'apprentissage (stage 1, stage 2)", "epochs": "époques",
}


def object_table(columns: dict[str, dict[str, Any]], missing: Any = ""):
    """Return a table of French cells (:func:`french`: an integer stays 44, 0.372 shows 0,372, None shows —), one column per key."""
    import pandas as pd

    index = list(dict.fromkeys(k for column in columns.values() for k in column))
    return pd.DataFrame({name: pd.Series([french(column.get(k, missing)) for k in index], index=index, dtype=object)
                         for name, column in columns.items()})


def french_table(table, digits: int = 3):
    """Return a copy of a DataFrame with every cell written as :func:`french` writes it (decimal comma, « — », oui / non)."""
    return table.apply(lambda column: column.map(lambda value: french(value, digits)))


def show_config(cfg: Config):
    """Return a one-column table of the settings that identify the run (French labels and numbers)."""
    def shown(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return " / ".join(french(v) for v in value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    return object_table({"valeur": {CONFIG_LABELS.get(k, k): shown(v) for k, v in cfg.summary().items()}})


def show_figure(cfg: Config, name: str, width: int | None = 720):
    """Return an IPython Image of ``<run_dir>/figures/<name>`` (raises if the phase did not make it)."""
    from IPython.display import Image

    path = cfg.run_dir / "figures" / name
    if not path.is_file():
        raise FileNotFoundError(f"figure {relative(path)} not found: run the phase that makes it first")
    return Image(filename=str(path), width=width)


def show_report(html_path: str | os.PathLike, height: int = 900):
    """Return an IPython HTML block: a link to the standalone report and the report itself inline.

    The report is shown in an ``<iframe srcdoc>`` so that its own styles stay inside it; its
    figures are embedded in the file (data URIs), so they display wherever the notebook runs.
    """
    import html

    from IPython.display import HTML

    path = Path(html_path)
    if not path.is_file():
        raise FileNotFoundError(f"{relative(path)} not found: run the report phase first")
    try:
        href = os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:  # another drive (Windows)
        href = path.resolve().as_uri()
    document = path.read_text(encoding="utf-8")
    return HTML(
        f'<p>Rapport autonome : <a href="{html.escape(href)}" target="_blank">{html.escape(path.name)}</a> '
        f"(<code>{html.escape(relative(path))}</code>)</p>"
        f'<iframe srcdoc="{html.escape(document, quote=True)}" style="width:100%;height:{int(height)}px;'
        'border:1px solid #ccc"></iframe>'
    )


def report_summary(markdown_path: str | os.PathLike, sections: tuple[str, ...] = ("Comparaison quantitative", "Conclusion")):
    """Return the report's opening warning and the named sections as IPython Markdown, without figures.

    A small rendering that a notebook stores and that GitHub shows (it strips the inline HTML
    report): the stand-in warning of a demo run, then each section whose title contains one of
    ``sections``, down to the next title of the same or a higher level.
    """
    import re

    from IPython.display import Markdown

    text = Path(markdown_path).read_text(encoding="utf-8")
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)\n+(?:\*[^\n]*\*\n)?", "", text)  # figures and captions stay in the full report
    lines = text.split("\n")
    warning = []
    for line in lines[1:]:
        if line.startswith("#"):
            break
        warning.append(line)
    kept = ["\n".join(warning).strip()]
    for i, line in enumerate(lines):
        heading = re.match(r"^(#+) ", line)
        if heading and any(name in line for name in sections):
            end = next((j for j in range(i + 1, len(lines))
                        if re.match(rf"^#{{1,{len(heading.group(1))}}} ", lines[j])), len(lines))
            kept.append("\n".join(lines[i:end]).strip())
    return Markdown("\n\n".join(part for part in kept if part))


def student_notes(cfg: Config, environment: str | None = None) -> str:
    """Return where the report takes the student's discussion from; on Colab / Kaggle, first copy the skeleton next to the run.

    The repository is cloned afresh in every Colab session while the run stays on Drive: the
    student's notes live next to the run (``notes_etudiant.md``), where they win over the
    repository's ``report/notes_etudiant.md``.
    """
    from ..report.notes import SKELETON_MARK, ensure_run_notes, find_notes

    environment = environment or detect_environment()
    if environment in (COLAB, KAGGLE):
        ensure_run_notes(cfg.run_dir)
    found = find_notes(cfg.run_dir)
    if found is None:
        return ("Pas de notes : écrivez votre discussion dans notes_etudiant.md, à côté du run "
                f"({relative(cfg.run_dir)}), puis relancez ce notebook.")
    path, origin = found
    where = "à côté du run" if origin == "run" else "dans le dépôt"
    state = (" ; c'est encore le squelette (questions à remplacer par votre discussion, puis supprimez la ligne "
             f"{SKELETON_MARK})" if SKELETON_MARK in path.read_text(encoding="utf-8") else "")
    return f"Discussion de l'étudiant : {relative(path)} ({where}){state}."


def deliver_report(cfg: Config, environment: str | None = None) -> str:
    """Write the report as a standalone folder and a zip next to the run (Colab / Kaggle) and offer the zip on Colab; return what was done.

    The folder ``<run>/rapport_<run>/`` holds ``rapport.md``, ``rapport.html``, ``figures/`` and the
    student's notes; ``<run>/rapport_<run>.zip`` is that folder zipped, downloaded by the browser on
    Colab. Locally nothing is written: the report is in ``<run>/report/``.
    """
    import shutil

    from ..layout import report_dir
    from ..layout import student_notes as notes_path
    from ..report.export import bundle, export_report

    environment = environment or detect_environment()
    if environment not in (COLAB, KAGGLE):
        return f"Rapport : {relative(report_dir(cfg.run_dir) / 'rapport.html')} (et rapport.md)."
    name = f"rapport_{cfg.run_dir.name}"
    folder = cfg.run_dir / name
    export_report(cfg.run_dir, folder)
    if notes_path(cfg.run_dir).is_file():
        shutil.copyfile(notes_path(cfg.run_dir), folder / notes_path(cfg.run_dir).name)
    archive = bundle(folder, cfg.run_dir / name)
    if environment == COLAB:
        from google.colab import files

        files.download(str(archive))
        return f"Rapport à rendre : {relative(archive)} (téléchargement proposé par le navigateur ; aussi sur Drive)."
    return f"Rapport à rendre : {relative(archive)} (dans /kaggle/working : enregistrez une version du notebook pour le garder)."


def stand_in_banner(cfg: Config) -> str:
    """Return the warning printed under every demo-profile result."""
    if cfg.profile == "demo":
        return ("⚠ Profil demo : ces chiffres viennent de petits modèles de substitution "
                "(SmolLM2-135M comme professeur et comme élève), pas des modèles du cours "
                "(gpt-oss-120b -> Qwen3-4B). Ils ne sont PAS les résultats du cours.")
    return f"Profil {cfg.profile} : professeur {cfg.teacher.model}, élève {cfg.student.model}."


# ------------------------------------------------------------------ per-phase tables (display only)
def _typed(summary: Any, cls: type[T]) -> T:
    """Return ``summary`` (a phase's returned mapping, or already typed) as its :mod:`dasd_utils.summaries` type."""
    return summary if isinstance(summary, cls) else cls.from_dict(summary)


def teacher_table(summary: dict[str, Any] | TeacherSummary):
    """Return the teacher phase's per-stage counts as a table (one column per stage, rejection reasons in French)."""
    from ..plots.teacher import REASON_LABELS

    rows = {}
    for s in _typed(summary, TeacherSummary).stages.values():
        col = {
            "température": s.temperature,
            "requêtes": s.requests,
            "échecs": s.failed,
            "rejetées (total)": s.rejected_total,
        }
        for reason, count in sorted(s.rejected.items()):
            col[f"  rejet : {REASON_LABELS.get(reason, reason)}"] = count
        col.update({
            "gardées": s.kept,
            "exactitude du professeur": None if s.accuracy is None else round(s.accuracy, 3),
            "confiance moyenne": None if s.mean_confidence is None else round(s.mean_confidence, 3),
        })
        rows[f"stage {s.stage}"] = col
    return object_table(rows, missing=0)


def teacher_example(cfg: Config, stage: int = 1, n_tokens: int = 12):
    """Return (text, token table) for the first kept response of a stage: content and its first tokens' probabilities."""
    import math

    import pandas as pd

    from ..teacher import load_kept

    kept = load_kept(cfg, stage)
    if not kept:
        return "aucune réponse gardée", None
    record = kept[0]
    tokens = (record.get("tokens") or [])[:n_tokens]
    table = pd.DataFrame(
        [{"token": repr(t["token"]), "probabilité": round(math.exp(t["logprob"]), 3)} for t in tokens]
    )
    print(f"question {record['question_id'][:8]}…, réponse attendue {record.get('gold')} :\n")
    print(record["content"])
    return table


def das_table(summary: dict[str, Any] | DasSummary):
    """Return the DAS phase's per-stage counts and teacher-sentence statistics as a table."""
    rows = {}
    for stage, s in _typed(summary, DasSummary).stages.items():
        ratio = s.teacher_sentence_ratio
        rows[f"stage {stage}"] = {
            "réponses notées": s.scored,
            "non notables": s.n_unscorable,
            "au-dessus du seuil (gardées)": s.kept,
            "sous le seuil (rejetées)": s.rejected,
            "exemples d'entraînement (SFT)": s.sft_examples,
            "taux de phrases professeur, moyen": None if ratio.get("mean") is None else round(ratio["mean"], 3),
            "taux de phrases professeur, médian": None if ratio.get("median") is None else round(ratio["median"], 3),
            "taux sans la ligne de réponse finale, moyen": (s.teacher_sentence_ratio_without_final or {}).get("mean"),
            "phrases": s.sentences,
            "phrases professeur": s.sentence_types.get("teacher"),
            "phrases partagées": s.sentence_types.get("shared"),
            "phrases élève": s.sentence_types.get("student"),
        }
    return object_table(rows)


def sft_facts(manifest: dict[str, Any] | SftManifest) -> dict[str, Any]:
    """Return the few facts of a trained stage: examples, steps (and how many learned), learning rate, losses, adapter change.

    Did the stage learn? The steps run at a non-zero learning rate, and how far the adapter moved
    from where the training started (the fresh LoRA for stage 1, the stage-1 adapter for stage 2):
    the L2 norm of the difference, relative to the starting weights', to two significant digits.
    """
    m = _typed(manifest, SftManifest)
    losses = {"perte initiale": m.first_loss, "perte finale": m.final_loss}
    change = (m.adapter_change or {}).get("relative")
    return {
        "stage": m.stage,
        "exemples": m.n_examples,
        "pas d'optimisation": m.steps,
        "pas à taux d'apprentissage non nul": m.learning_steps,
        "taux d'apprentissage": m.learning_rate,
        **{name: None if value is None else round(value, 2) for name, value in losses.items()},
        "déplacement de l'adaptateur (relatif)": None if change is None else f"{change:.1e}".replace(".", ","),
    }


def sft_table(manifest: dict[str, Any] | SftManifest):
    """Return :func:`sft_facts` as a one-column table."""
    return object_table({"valeur": sft_facts(manifest)})


def course_table(cfg: Config):
    """Return the report's « ce projet / rapport du cours » table: accuracies in % (one decimal) with Wilson intervals."""
    from ..report import collect_context

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f} %".replace(".", ",")

    def interval(ci: list[float] | None) -> str:
        return "—" if not ci else f"[{pct(ci[0])} ; {pct(ci[1])}]"

    context = collect_context(cfg.run_dir)["course"]
    rows = {}
    for r in context["comparison"]:
        rows[r["label"]] = {
            "rapport du cours": f"{pct(r['course_accuracy'])} ({r['course_correct']}/{r['course_n']})",
            "IC 95 % (cours)": interval(r["course_ci"]),
            "ce projet": "non évalué" if r["accuracy"] is None else f"{pct(r['accuracy'])} ({int(r['correct'])}/{int(r['n'])})",
            "IC 95 % (ce projet)": interval(r["ci"]),
        }
    print(("Questions de validation 0 à 49 : celles que le cours a vraisemblablement évaluées (il dit seulement "
           "« un sous-ensemble de validation (50 exemples) » ; son exemple du crabe est la question 49)."
           if context["same_items"] else "Attention : ce run n'évalue pas les questions de validation 0 à 49.")
          + (" Profil demo : chiffres de substitution, qui ne testent pas l'affirmation du cours." if cfg.profile == "demo" else ""))
    return object_table(rows).T


def loss_table(cfg: Config, stage: int):
    """Return the training log (step, loss, learning rate) of a stage as a table."""
    import pandas as pd

    from ..sft import read_train_log

    return pd.DataFrame(read_train_log(cfg, stage))


def featured_label(cfg: Config) -> str:
    """Return how the notebooks name the featured evaluation item: the crab question for validation item 49, else its index."""
    index = cfg.eval.qualitative_index
    if index == 49 and cfg.data.eval_split == "validation":
        return f"la question du crabe (item {index} de validation)"
    return f"la question d'indice {index} ({cfg.data.eval_split}, `eval.qualitative_index`)"


def featured_missing_message(cfg: Config, eval_questions: list[dict[str, Any]] | None = None) -> str:
    """Return the French sentence saying the featured item is not in this run's evaluation set, with the set's indices."""
    if eval_questions is None:
        from ..data import load_run_questions

        eval_questions = load_run_questions(cfg, "eval")
    indices = [q.get("index") for q in eval_questions if q.get("index") is not None]
    span = f"items {min(indices)} à {max(indices)}" if indices else "aucun item"
    label = featured_label(cfg)
    return (f"{label[:1].upper()}{label[1:]} n'est pas dans l'ensemble d'évaluation "
            f"de ce run ({len(eval_questions)} questions de {cfg.data.eval_split}, {span}) : rien à montrer ici. "
            "Pour la voir, élargissez data.n_eval / data.eval_offset, ou choisissez un item évalué avec "
            "eval.qualitative_index.")


def featured_question(cfg: Config) -> dict[str, Any] | None:
    """Return the evaluation question ``eval.qualitative_index`` of this run, or None when the run does not evaluate it."""
    from ..data import load_run_questions

    return next((q for q in load_run_questions(cfg, "eval") if q.get("index") == cfg.eval.qualitative_index), None)


def show_featured_prompt(cfg: Config) -> None:
    """Print the exact chat messages of the featured evaluation question, or why it is absent; returns nothing."""
    from ..prompts import build_messages

    question = featured_question(cfg)
    if question is None:
        print(featured_missing_message(cfg))
        return
    for message in build_messages(question, cfg.system_prompt):
        print(f"--- {message['role']} ---\n{message['content']}")


def qualitative(cfg: Config, which: str = "highlight"):
    """Print the featured question (the crab question by default; or the random items) and each model's response; returns nothing."""
    path = cfg.run_dir / "eval" / "qualitative.json"
    if not path.is_file():
        raise FileNotFoundError(f"{relative(path)} not found: run the evaluation phase first")
    data = json.loads(path.read_text(encoding="utf-8"))
    items = [data.get("highlight")] if which == "highlight" else data.get("random", [])
    if which == "highlight" and not data.get("highlight"):
        print(featured_missing_message(cfg))
        return
    for item in items:
        if not item:
            continue
        print(f"Question (item {item['index']}) : {item['question']}")
        for letter, text in item["choices"].items():
            print(f"  {letter}. {text}")
        print(f"Bonne réponse : {item['gold']}\n")
        for name, answer in item["answers"].items():
            verdict = "juste" if answer["correct"] else "faux"
            print(f"--- {name} : réponse extraite {answer['extracted']} ({verdict}) ---")
            print((answer["response"] or "").strip()[:1500])
            print()


__all__ = [
    "CONFIG_LABELS", "course_table", "das_table", "deliver_report", "featured_label", "featured_missing_message",
    "featured_question", "french_table", "loss_table", "object_table", "qualitative", "report_summary", "sft_facts",
    "sft_table", "show_config", "show_featured_prompt", "show_figure", "show_report", "stand_in_banner",
    "student_notes", "teacher_example", "teacher_table",
]
