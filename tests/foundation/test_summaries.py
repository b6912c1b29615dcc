"""Typed phase summaries (dasd_utils.summaries): docs/artifacts.md lists exactly each type's fields,
a file read and written back is unchanged, and a missing field is named, never guessed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dasd_utils import evaluation
from dasd_utils.summaries import (
    SUMMARY_TYPES,
    Comparison,
    DasSummary,
    EvalMetrics,
    ModelMetrics,
    SftManifest,
    SummaryError,
    TeacherSummary,
    read_summary,
    write_summary,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "artifacts.md"


def documented_tables() -> dict[str, list[tuple[list[str], bool]]]:
    """Return {type name: [(field names of a row, row marked optional), ...]} from docs/artifacts.md."""
    tables: dict[str, list[tuple[list[str], bool]]] = {}
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"<!-- fields: (\w+) -->", line.strip())
        if not match:
            continue
        rows = []
        for row in lines[i + 3:]:  # the marker, the header, the separator
            if not row.startswith("|"):
                break
            first, meaning = [c.strip() for c in row.strip("|").split(" | ", 1)]
            rows.append((re.findall(r"`([^`]+)`", first), meaning.startswith("*optional*")))
        tables[match.group(1)] = rows
    return tables


@pytest.mark.parametrize("cls", SUMMARY_TYPES, ids=lambda c: c.__name__)
def test_docs_list_exactly_the_fields_of_each_type(cls):
    tables = documented_tables()
    assert cls.__name__ in tables, f"docs/artifacts.md has no '<!-- fields: {cls.__name__} -->' table"
    rows = tables[cls.__name__]
    documented = [name for names, _ in rows for name in names]
    assert sorted(documented) == sorted(cls.field_names()), (
        f"{cls.FILE}: only in the docs {sorted(set(documented) - set(cls.field_names()))}, "
        f"only in {cls.__name__} {sorted(set(cls.field_names()) - set(documented))}")
    assert len(documented) == len(set(documented)), "a field is documented twice"
    required = set(cls.required_fields())
    for names, optional in rows:
        for name in names:
            assert (name not in required) == optional, f"{cls.__name__}.{name}: '*optional*' in the docs must match the type"


def test_no_table_for_an_unknown_type():
    assert set(documented_tables()) == {cls.__name__ for cls in SUMMARY_TYPES}


def _fake_run_summaries():
    from support.fake_run import FAKE_DAS, FAKE_MANIFESTS, FAKE_METRICS, FAKE_TEACHER

    return [(TeacherSummary, FAKE_TEACHER), (DasSummary, FAKE_DAS), (SftManifest, FAKE_MANIFESTS[1]),
            (SftManifest, FAKE_MANIFESTS[2]), (EvalMetrics, FAKE_METRICS)]


def test_round_trip_keeps_keys_order_and_unknown_fields():
    for cls, data in _fake_run_summaries():
        obj = cls.from_dict(data)
        assert obj.to_dict() == data and list(obj.to_dict()) == list(data)
        assert not obj.extra
    odd = dict(_fake_run_summaries()[0][1], added_later={"x": 1})
    assert TeacherSummary.from_dict(odd).to_dict() == odd  # nothing lost, in place


def test_what_the_evaluation_functions_write_is_fully_typed():
    predictions = {
        name: [{"question_id": f"q{i}", "correct": c == "C", "format_ok": True, "extracted": c, "finish_reason": "stop",
                "n_new_tokens": 10} for i, c in enumerate(letters)]
        for name, letters in (("base", "ACB"), ("stage1", "CCB"))
    }
    for name, preds in predictions.items():
        metrics = evaluation.model_metrics(preds)
        metrics.update(adapter=None, adapter_fingerprint=None)
        obj = ModelMetrics.from_dict(metrics, f"models.{name}")
        assert not obj.extra and obj.to_dict() == metrics and obj.ci95 is not None
    for comparison in evaluation.compare_models(predictions):
        obj = Comparison.from_dict(comparison)
        assert not obj.extra and obj.to_dict() == comparison


def test_missing_field_is_named():
    data = json.loads(json.dumps(_fake_run_summaries()[1][1]))
    del data["stages"]["2"]["kept"]
    with pytest.raises(SummaryError, match=r"das/summary.json: stages\.2: missing field 'kept'"):
        DasSummary.from_dict(data)
    with pytest.raises(SummaryError, match="expected a JSON object"):
        TeacherSummary.from_dict({"profile": "demo", "model": "m", "backend": "local", "stand_in": True, "stages": []})


def test_optional_fields_stay_absent_and_typed_access(tmp_path):
    _, manifest = _fake_run_summaries()[3]
    obj = SftManifest.from_dict(manifest)
    assert obj.n_examples == 17 and obj.train_loss is None and "train_loss" not in obj.to_dict()
    path = write_summary(tmp_path / "sft" / "stage2" / "manifest.json", obj)
    assert json.loads(path.read_text(encoding="utf-8")) == manifest
    again = read_summary(path, SftManifest)
    assert again == obj
    teacher = TeacherSummary.from_dict(_fake_run_summaries()[0][1])
    assert teacher.stage(2).requests == 128 and teacher.stage(3) is None


def test_write_summary_warns_about_unknown_fields(tmp_path, caplog):
    data = dict(_fake_run_summaries()[4][1], surprise=1)
    write_summary(tmp_path / "metrics.json", EvalMetrics.from_dict(data))
    assert "surprise" in caplog.text
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["surprise"] == 1
