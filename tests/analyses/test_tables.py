"""Notebook 08's tables: what they print (invented numbers)."""

from __future__ import annotations

from dasd_utils.analyses import sampling, tables


def test_statistics_table_prints_counts_as_integers_and_means_with_decimals():
    records = [
        {"content": "a b c", "scorable": True, "keep": i % 2 == 0, "teacher_sentence_ratio": 1 / 3,
         "teacher_sentence_ratio_without_final": 0.25, "sentences": [{}, {}, {}]}
        for i in range(6)
    ]
    results = {"variants": [{"label": "DAS", "training_set": sampling.set_statistics(records)},
                            {"label": "aléatoire", "training_set": dict(sampling.set_statistics(records[:4]), mean_chars=None)}]}
    table = tables.statistics_table(results)
    text = table.to_string()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    assert rows["n"] == ["6", "4"] and rows["n_scored"] == ["6", "4"] and rows["das_kept"] == ["3", "2"]
    assert rows["teacher_sentence_ratio"] == ["0.333", "0.333"] and rows["mean_words"] == ["3.0", "3.0"]
    assert "6.000" not in text and "6.0 " not in text + " "
    assert ">6<" in table.to_html() and ">0.333<" in table.to_html()  # the notebook shows the HTML
