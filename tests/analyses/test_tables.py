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


def test_plan_costs_show_the_larger_plan_in_hours_from_the_runs_own_times(tmp_path):
    """A T4 run whose stage 2 trained in 30 min on 10 examples and whose 3-model evaluation took 15 min (invented)."""
    from dasd_utils.config import load_config
    from dasd_utils.data import write_jsonl
    from dasd_utils.jsonl import write_json_atomic
    from support.analyses_records import pool_records

    cfg = load_config("colab", run_dir=tmp_path / "run")
    run = cfg.run_dir
    write_json_atomic(run / "sft" / "stage2" / "manifest.json", {"wall_time_s": 1800, "dataset": {"n_examples": 10}})
    write_json_atomic(run / "timings.json", {"phases": {"evaluate": {"computed": {"wall_s": 900}}}})
    write_jsonl(run / "das" / "stage2.jsonl", pool_records(20))  # 20 answers in the pool
    write_jsonl(run / "data" / "eval.jsonl", [{"id": f"e{i}"} for i in range(50)])
    cfg.analyses.mixed_policy = cfg.analyses.provenance = cfg.analyses.mixed_control = False
    table = tables.plan_costs(cfg)
    default, larger = table.iloc[0], table.iloc[1]
    assert list(table.index) == ["plan de ce run", "plan étendu (3 graines aléatoires, pool entier)"]
    # default: one random seed = one training (1,800 s) + one model's evaluation (300 s)
    assert (default["graines"], default["pool entier"], default["minutes (estimation)"]) == ("1", False, 35)
    # larger: three seeds, and the whole pool (20 / 10 examples: twice the training) = 3 x 2,100 + 3,600 + 300 s
    assert (larger["graines"], larger["pool entier"], larger["heures (estimation)"]) == ("1, 2, 3", True, 2.8)
    cfg.analyses.random_seeds, cfg.analyses.full_pool = [1, 2, 3], True  # already the larger plan: one row
    assert list(tables.plan_costs(cfg).index) == ["plan de ce run"]
