"""CommonsenseQA loading and validation: planted bad rows, sources, the demo selection, the data phase."""

from __future__ import annotations

import copy
import json

import pytest

from dasd_utils.config import load_config
from dasd_utils.data import (
    DataError,
    bundled_path,
    load_run_questions,
    load_split,
    read_jsonl,
    run_phase,
    select_questions,
    validate_row,
    validate_rows,
    write_jsonl,
)

CRAB = {
    "id": "a588407ecaecf0f30c2241c30b470fe2",
    "question": "Who is likely to be excited about a crab?",
    "question_concept": "crab",
    "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["fish market", "pet shop", "fishmongers", "intertidal zone", "obesity"]},
    "answerKey": "C",
}


def make_row(i: int, **changes):
    row = copy.deepcopy(CRAB)
    row["id"] = f"row-{i:03d}"
    row["question"] = f"Question number {i}?"
    row.update(changes)
    return row


def rows(n: int) -> list[dict]:
    return [make_row(i) for i in range(n)]


def write_lines(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- validation
def test_good_row_is_cleaned():
    row = make_row(1, question="  Padded?  ")
    row["choices"]["text"][0] = " fish market "
    clean = validate_row(row, 0)
    assert clean["question"] == "Padded?"
    assert clean["choices"]["text"][0] == "fish market"
    assert clean["answerKey"] == "C"


def _plant(kind: str) -> dict:
    row = make_row(7)
    if kind == "missing_question":
        del row["question"]
    elif kind == "empty_question":
        row["question"] = "   "
    elif kind == "four_choices":
        row["choices"] = {"label": ["A", "B", "C", "D"], "text": ["w", "x", "y", "z"]}
    elif kind == "six_choices":
        row["choices"] = {"label": ["A", "B", "C", "D", "E", "F"], "text": ["u", "v", "w", "x", "y", "z"]}
    elif kind == "answer_not_a_label":
        row["answerKey"] = "F"
    elif kind == "answer_missing":
        del row["answerKey"]
    elif kind == "labels_out_of_order":
        row["choices"]["label"] = ["A", "B", "D", "C", "E"]
    elif kind == "empty_choice_text":
        row["choices"]["text"][2] = ""
    elif kind == "no_choices":
        del row["choices"]
    return row


@pytest.mark.parametrize(
    "kind, field",
    [
        ("missing_question", "'question'"),
        ("empty_question", "'question'"),
        ("four_choices", "'choices' has 4 labels"),
        ("six_choices", "'choices' has 6 labels"),
        ("answer_not_a_label", "'answerKey' is 'F'"),
        ("answer_missing", "'answerKey' is None"),
        ("labels_out_of_order", "'choices.label'"),
        ("empty_choice_text", "'choices.text[2]'"),
        ("no_choices", "'choices' is missing"),
    ],
)
def test_planted_bad_row_names_row_id_and_field(tmp_path, kind, field):
    data = rows(5)
    data.insert(3, _plant(kind))
    path = write_lines(tmp_path / "bad.jsonl", data)
    with pytest.raises(DataError) as info:
        load_split(str(path), "validation")
    message = str(info.value)
    assert "row-007" in message, message  # the row id
    assert "#3" in message, message  # its position
    assert field in message, message  # the field
    assert "bad.jsonl" in message, message  # the file


def test_row_without_id():
    row = make_row(1)
    del row["id"]
    with pytest.raises(DataError, match=r"row #4: field 'id' is missing"):
        validate_row(row, 4)


def test_row_that_is_not_an_object():
    with pytest.raises(DataError, match=r"row #2: expected a JSON object, got list"):
        validate_rows([make_row(0), make_row(1), ["not", "a", "row"]])


def test_duplicate_id_names_both_rows(tmp_path):
    data = rows(4) + [make_row(1, question="Same id, other text?")]
    path = write_lines(tmp_path / "dup.jsonl", data)
    with pytest.raises(DataError, match=r"row id='row-001' \(#4\) in .*dup.jsonl: field 'id' duplicates row #1"):
        load_split(str(path), "validation")


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(make_row(0)) + "\n\n" + '{"id": "row-001", "question": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.jsonl:3: not valid JSON"):
        read_jsonl(path)


def test_nothing_is_dropped(tmp_path):
    data = rows(9)
    path = write_jsonl(tmp_path / "ok.jsonl", data)
    assert [r["id"] for r in load_split(str(path), "validation")] == [r["id"] for r in data]


# ----------------------------------------------------------------------------- sources
def test_bundled_split_has_1221_valid_rows():
    validation = load_split("bundled", "validation")
    assert len(validation) == 1221
    assert len({r["id"] for r in validation}) == 1221
    crab = validation[49]
    assert crab["question"] == CRAB["question"] and crab["answerKey"] == "C"
    assert bundled_path().is_file()


def test_bundled_has_no_train_split():
    with pytest.raises(DataError, match="only ships the validation split"):
        load_split("bundled", "train")


def test_local_jsonl_file_source(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", rows(6))
    cfg = load_config(
        "demo",
        run_dir=tmp_path / "run",
        overrides={"data.source": str(path), "data.n_eval": 2, "data.train_offset": 2, "data.n_train": 3},
    )
    train, evaluation = select_questions(cfg)
    assert [r["id"] for r in evaluation] == ["row-000", "row-001"]
    assert [r["id"] for r in train] == ["row-002", "row-003", "row-004"]
    assert [r["index"] for r in train] == [2, 3, 4]


def test_directory_source_reads_split_files(tmp_path):
    folder = tmp_path / "csqa"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [make_row(100 + i) for i in range(5)])
    write_jsonl(folder / "validation.jsonl", rows(4))
    cfg = load_config(
        "colab",
        run_dir=tmp_path / "run",
        overrides={"data.source": str(folder), "data.n_train": 3, "data.n_eval": 4},
    )
    train, evaluation = select_questions(cfg)
    assert [r["id"] for r in train] == ["row-100", "row-101", "row-102"]
    assert all(r["split"] == "train" for r in train)
    assert [r["id"] for r in evaluation] == ["row-000", "row-001", "row-002", "row-003"]
    assert all(r["split"] == "validation" for r in evaluation)


def test_directory_source_without_the_split(tmp_path):
    (tmp_path / "csqa").mkdir()
    with pytest.raises(DataError, match="no validation.jsonl"):
        load_split(str(tmp_path / "csqa"), "validation")


def test_single_file_serving_both_splits_cannot_overlap(tmp_path):
    # With one file for every split, "train" and "validation" are the same rows: refuse the overlap.
    path = write_jsonl(tmp_path / "one.jsonl", rows(10))
    cfg = load_config("colab", run_dir=tmp_path / "run", overrides={"data.source": str(path), "data.n_train": 4, "data.n_eval": 5})
    with pytest.raises(DataError, match="overlap the evaluation items.*train_offset to at least 5"):
        select_questions(cfg)


def test_missing_path_source():
    with pytest.raises(DataError, match="must be 'hub', 'bundled' or an existing path"):
        load_split("/no/such/place.jsonl", "validation")


def test_hub_failure_offline_gives_a_clear_message(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'tau/commonsense_qa' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError) as info:
        load_split("hub", "validation")
    message = str(info.value)
    assert "tau/commonsense_qa" in message and "'validation'" in message
    assert "data.source=bundled" in message  # says what to do offline


def test_hub_rows_are_validated_too(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [make_row(0), make_row(1, answerKey="Z")]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataError, match=r"row id='row-001'.*'answerKey' is 'Z'"):
        load_split("hub", "train")
    assert calls == [("tau/commonsense_qa", "train")]


# ----------------------------------------------------------------------------- demo selection
def test_demo_trains_on_items_50_plus_and_evaluates_on_0_to_49(demo_cfg):
    train, evaluation = select_questions(demo_cfg)
    assert [r["index"] for r in evaluation] == list(range(50))
    assert len(train) == demo_cfg.data.n_train
    assert [r["index"] for r in train] == list(range(50, 50 + demo_cfg.data.n_train))
    assert not {r["id"] for r in train} & {r["id"] for r in evaluation}
    assert evaluation[49]["question"] == CRAB["question"]  # the course's qualitative example


def test_demo_all_remaining_items_still_do_not_overlap(tmp_path):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"data.n_train": 1221 - 50})
    train, evaluation = select_questions(cfg)
    assert len(train) == 1171 and len(evaluation) == 50
    assert not {r["id"] for r in train} & {r["id"] for r in evaluation}


def test_demo_overlap_is_refused(tmp_path):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"data.train_offset": 40, "data.n_train": 20})
    with pytest.raises(DataError, match="raise data.train_offset to at least 50"):
        select_questions(cfg)


def test_sizes_beyond_the_split(tmp_path):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"data.n_train": 5000})
    with pytest.raises(DataError, match="data.n_train=5000 but only 1171"):
        select_questions(cfg)
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"data.n_eval": 2000})
    with pytest.raises(DataError, match="data.n_eval=2000"):
        select_questions(cfg)


def test_whole_validation_split_for_evaluation(tmp_path):
    cfg = load_config("demo", run_dir=tmp_path / "run", overrides={"data.n_eval": -1, "data.train_offset": 1221, "data.n_train": 0})
    train, evaluation = select_questions(cfg)
    assert train == [] and len(evaluation) == 1221


def test_shuffle_is_seeded(tmp_path):
    overrides = {"data.shuffle_seed": 3, "data.n_train": 10}
    a, _ = select_questions(load_config("demo", run_dir=tmp_path / "a", overrides=overrides))
    b, _ = select_questions(load_config("demo", run_dir=tmp_path / "b", overrides=overrides))
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [r["index"] for r in a] != list(range(50, 60))
    assert min(r["index"] for r in a) >= 50


# ----------------------------------------------------------------------------- the data phase
def test_run_phase_writes_questions_and_config(demo_cfg):
    summary = run_phase(demo_cfg)
    run_dir = demo_cfg.run_dir
    assert (run_dir / "config.json").is_file()
    train = load_run_questions(demo_cfg, "train")
    evaluation = load_run_questions(demo_cfg, "eval")
    assert len(train) == summary["n_train"] == demo_cfg.data.n_train
    assert len(evaluation) == summary["n_eval"] == 50
    assert summary["eval_indices"] == [0, 49] and summary["train_indices"][0] == 50
    assert set(train[0]) >= {"id", "question", "choices", "answerKey", "split", "index"}
    assert sum(summary["eval_answer_counts"].values()) == 50
    saved = json.loads((run_dir / "data" / "summary.json").read_text(encoding="utf-8"))
    assert saved == summary
    assert run_phase(demo_cfg, force=True) == summary  # deterministic


def test_load_run_questions_before_the_data_phase(demo_cfg):
    with pytest.raises(FileNotFoundError, match="run the 'data' phase first"):
        load_run_questions(demo_cfg, "train")


def test_jsonl_lines_name_file_and_line_for_bytes_and_json(tmp_path):
    from dasd_utils.data import read_jsonl_lines

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_row(0)).encode() + b"\n\n" + json.dumps(make_row(1)).encode() + b"\n")
    assert [lineno for lineno, _ in read_jsonl_lines(path)] == [1, 3]  # a BOM is accepted, blank lines skipped
    path.write_bytes(json.dumps(make_row(0)).encode() + b"\n\xc3\x28 broken\n")
    with pytest.raises(DataError, match=r"mixed.jsonl:2: not UTF-8 text \(byte 0xc3 at column 1\)"):
        read_jsonl_lines(path)
    with pytest.raises(DataError, match="cannot read"):
        read_jsonl_lines(tmp_path)  # a directory


def test_oversized_rows_are_refused():
    from dasd_utils.data import MAX_CHOICE_CHARS, MAX_QUESTION_CHARS

    with pytest.raises(DataError, match=f"at most {MAX_QUESTION_CHARS}"):
        validate_row(make_row(0, question="x" * (MAX_QUESTION_CHARS + 1)), 0)
    row = make_row(0)
    row["choices"]["text"][4] = "y" * (MAX_CHOICE_CHARS + 1)
    with pytest.raises(DataError, match=r"'choices.text\[4\]' has 501 characters"):
        validate_row(row, 0)
