"""CommonsenseQA loading, validation, and the train / evaluation question files of a run.

Sources (``data.source``):

* ``hub``: ``datasets.load_dataset("tau/commonsense_qa")`` (needs the Hugging Face Hub; Colab).
* ``bundled``: the validation split shipped in ``dasd_utils/resources`` (1,221 items, MIT licence,
  copied from the Hub's ``tau/commonsense_qa``), used by the offline demo. The demo trains on
  validation items 50 and above and evaluates on items 0-49 (the course's evaluation subset), so
  the two never overlap.
* a path: a JSONL file in the Hub's format (used for every split), or a directory holding
  ``<split>.jsonl`` files.

Every row is validated; a bad row raises :class:`DataError` naming the row and the field.
Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Iterable

from .config import Config, phase_settings
from .layout import MissingPhaseOutput
from .prompts import LETTERS
from .summaries import DataSummary, write_summary
from .timing import timed_phase

HUB_DATASET = "tau/commonsense_qa"
BUNDLED_FILE = "commonsense_qa_validation.jsonl"
#: Longest question and option accepted, in characters. CommonsenseQA's longest validation question
#: has 279 characters and its longest option 31: anything far beyond is not a CommonsenseQA row
#: (and would blow up every prompt built from it).
MAX_QUESTION_CHARS = 2000
MAX_CHOICE_CHARS = 500


class DataError(ValueError):
    """A row of the dataset is malformed; the message names the row id and the field."""


def bundled_path() -> Path:
    """Return the path of the validation split shipped with the package."""
    return Path(__file__).resolve().parent / "resources" / BUNDLED_FILE


def validate_row(row: Any, position: int, source: str = "") -> dict[str, Any]:
    """Return a clean copy of a Hub-format row, or raise DataError naming the row and the field."""
    where = f" in {source}" if source else ""
    if not isinstance(row, dict):
        raise DataError(f"row #{position}{where}: expected a JSON object, got {type(row).__name__}")
    row_id = row.get("id")
    label = f"row id={row_id!r} (#{position}){where}" if row_id else f"row #{position}{where}"
    if not row_id or not isinstance(row_id, str):
        raise DataError(f"{label}: field 'id' is missing or not a string")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{label}: field 'question' is missing or empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise DataError(f"{label}: field 'question' has {len(question)} characters; at most {MAX_QUESTION_CHARS} are allowed")
    choices = row.get("choices")
    if not isinstance(choices, dict):
        raise DataError(f"{label}: field 'choices' is missing or not an object with 'label' and 'text'")
    labels, texts = choices.get("label"), choices.get("text")
    if not isinstance(labels, list) or not isinstance(texts, list):
        raise DataError(f"{label}: field 'choices' must hold lists 'label' and 'text'")
    if len(labels) != 5 or len(texts) != 5:
        raise DataError(f"{label}: field 'choices' has {len(labels)} labels and {len(texts)} texts, expected 5")
    if list(labels) != list(LETTERS):
        raise DataError(f"{label}: field 'choices.label' is {labels}, expected {list(LETTERS)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{label}: field 'choices.text[{i}]' is missing or empty")
        if len(text) > MAX_CHOICE_CHARS:
            raise DataError(
                f"{label}: field 'choices.text[{i}]' has {len(text)} characters; at most {MAX_CHOICE_CHARS} are allowed"
            )
    answer = row.get("answerKey")
    if answer not in labels:
        raise DataError(f"{label}: field 'answerKey' is {answer!r}, not among the labels {labels}")
    return {
        "id": row_id,
        "question": question.strip(),
        "question_concept": row.get("question_concept", ""),
        "choices": {"label": list(labels), "text": [t.strip() for t in texts]},
        "answerKey": answer,
    }


def validate_rows(rows: Iterable[Any], source: str = "", lines: list[int] | None = None) -> list[dict[str, Any]]:
    """Return all rows validated (raises on the first bad one) and checks that ids are unique.

    ``lines`` (the file line of each row, from :func:`read_jsonl_lines`) makes errors name the
    line of the file.
    """
    out = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        at_line = f" (line {lines[i]} of the file)" if lines is not None else ""
        try:
            clean = validate_row(row, i, source)
        except DataError as exc:
            raise DataError(f"{exc}{at_line}") from None
        if clean["id"] in seen:
            where = f" in {source}" if source else ""
            raise DataError(
                f"row id={clean['id']!r} (#{i}){where}: field 'id' duplicates row #{seen[clean['id']]}{at_line}"
            )
        seen[clean["id"]] = i
        out.append(clean)
    return out


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Return the objects of a JSONL file (blank lines skipped; a bad line raises DataError)."""
    return [row for _, row in read_jsonl_lines(path)]


def read_jsonl_lines(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """Return ``(line number, object)`` for each non-blank line of a JSONL file.

    Raises DataError naming ``file:line`` for bytes that are not UTF-8 and for lines that are not
    JSON, and naming the file when it cannot be read.
    """
    rows = []
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                        "save the file as UTF-8"
                    ) from None
                if not line.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return rows


def _validated_file(path: Path) -> list[dict[str, Any]]:
    """Return the validated rows of a local JSONL file, errors naming the file and the line."""
    numbered = read_jsonl_lines(path)
    return validate_rows([row for _, row in numbered], str(path), lines=[lineno for lineno, _ in numbered])


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write rows as JSONL atomically (temp file then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # disk full, read-only: keep the previous file, leave no partial one
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return path


def load_split(source: str, split: str) -> list[dict[str, Any]]:
    """Return the validated rows of one split from ``hub``, ``bundled`` or a local path."""
    if source == "hub":
        try:
            from datasets import load_dataset
        except ImportError as exc:  # pragma: no cover - datasets is a requirement
            raise DataError("data.source=hub needs the 'datasets' package: pip install datasets") from exc
        try:
            ds = load_dataset(HUB_DATASET, split=split)
        except Exception as exc:
            raise DataError(
                f"could not load {HUB_DATASET} split '{split}' from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
                "Offline, use data.source=bundled (validation split shipped with the project) or a local JSONL path."
            ) from exc
        return validate_rows(ds, f"{HUB_DATASET}[{split}]")
    if source == "bundled":
        if split != "validation":
            raise DataError(
                f"data.source=bundled only ships the validation split (asked for '{split}'); "
                "the demo profile takes its training questions from validation items 50 and above"
            )
        return _validated_file(bundled_path())
    path = Path(source)
    if path.is_dir():
        candidate = path / f"{split}.jsonl"
        if not candidate.is_file():
            raise DataError(f"data.source={source}: no {split}.jsonl in that directory")
        return _validated_file(candidate)
    if path.is_file():
        return _validated_file(path)
    raise DataError(f"data.source must be 'hub', 'bundled' or an existing path, got {source!r}")


def _with_index(rows: list[dict[str, Any]], split: str, start: int) -> list[dict[str, Any]]:
    return [dict(row, split=split, index=start + i) for i, row in enumerate(rows)]


def select_questions(cfg: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (train questions, evaluation questions) for the config, each row tagged with split and index."""
    d = cfg.data
    eval_rows = load_split(d.source, d.eval_split)
    eval_end = len(eval_rows) if d.n_eval is None else d.eval_offset + d.n_eval
    if eval_end > len(eval_rows):
        raise DataError(f"data.n_eval={d.n_eval} from offset {d.eval_offset} exceeds the {len(eval_rows)} items of '{d.eval_split}'")
    evaluation = _with_index(eval_rows[d.eval_offset : eval_end], d.eval_split, d.eval_offset)

    train_rows = eval_rows if d.train_split == d.eval_split else load_split(d.source, d.train_split)
    indexed = _with_index(train_rows, d.train_split, 0)[d.train_offset :]
    if d.shuffle_seed is not None:
        random.Random(d.shuffle_seed).shuffle(indexed)
    if d.n_train > len(indexed):
        raise DataError(f"data.n_train={d.n_train} but only {len(indexed)} training items are available from offset {d.train_offset}")
    train = indexed[: d.n_train]
    # Checked by id whatever the split names: a single-file source serves every split, so
    # "train" and "validation" can be the very same rows.
    eval_ids = {row["id"] for row in evaluation}
    overlap = [row["index"] for row in train if row["id"] in eval_ids]
    if overlap:
        raise DataError(
            f"training items overlap the evaluation items (training indices {sorted(overlap)[:5]}...): "
            f"raise data.train_offset to at least {d.eval_offset + len(evaluation)}"
        )
    return train, evaluation


def data_dir(cfg: Config) -> Path:
    return cfg.run_dir / "data"


def load_run_questions(cfg: Config, which: str) -> list[dict[str, Any]]:
    """Return the ``train`` or ``eval`` questions written by the data phase for this run."""
    path = data_dir(cfg) / f"{which}.jsonl"
    if not path.is_file():
        raise MissingPhaseOutput(path, "data")
    return read_jsonl(path)


@timed_phase("data")
def run_phase(cfg: Config, force: bool = False) -> dict[str, Any]:
    """Data phase: write ``data/train.jsonl``, ``data/eval.jsonl`` and ``config.json``; return counts.

    The selection is cheap and deterministic, so it is always recomputed (``force`` is accepted
    for the common phase signature).
    """
    train, evaluation = select_questions(cfg)
    cfg.save()
    out = data_dir(cfg)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "eval.jsonl", evaluation)
    summary = {
        "source": cfg.data.source,
        "n_train": len(train),
        "n_eval": len(evaluation),
        "train_split": cfg.data.train_split,
        "train_indices": [train[0]["index"], train[-1]["index"]] if train else [],
        "eval_split": cfg.data.eval_split,
        "eval_indices": [evaluation[0]["index"], evaluation[-1]["index"]] if evaluation else [],
        "train_answer_counts": _answer_counts(train),
        "eval_answer_counts": _answer_counts(evaluation),
        "settings": phase_settings(cfg, "data"),  # what this phase used (the report checks config.json against it)
    }
    write_summary(out / "summary.json", DataSummary.from_dict(summary))
    return summary


def _answer_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {letter: 0 for letter in LETTERS}
    for row in rows:
        counts[row["answerKey"]] += 1
    return counts


__all__ = [
    "DataError",
    "bundled_path",
    "load_run_questions",
    "load_split",
    "read_jsonl",
    "read_jsonl_lines",
    "run_phase",
    "select_questions",
    "validate_row",
    "validate_rows",
    "write_jsonl",
]
