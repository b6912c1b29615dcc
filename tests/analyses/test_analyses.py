"""The ``analyses`` phase (DAS vs random sampling, provenance): on tiny fake data, no model loaded.

Every number here is invented to test the code paths; none is a result.
"""

from __future__ import annotations

import json
import random

import pytest

from dasd_utils import analyses, das, report
from dasd_utils.analyses import compare, provenance, sampling, variants
from dasd_utils.config import DASConfig, load_config
from dasd_utils.data import write_jsonl
from dasd_utils.stats import mcnemar_exact
from support.analyses_records import SYSTEM, pool_record, pool_records, predictions

# --------------------------------------------------------------------------- sampling
def test_random_subset_is_reproducible_same_size_and_from_the_pool():
    pool = pool_records()
    kept = sampling.das_kept(pool)
    a = sampling.random_subset(pool, len(kept), seed=7)
    b = sampling.random_subset(pool, len(kept), seed=7)
    c = sampling.random_subset(pool, len(kept), seed=8)
    assert a == b and len(a) == len(kept) == 6
    ids = [r["question_id"] for r in pool]
    assert {r["question_id"] for r in a} <= set(ids) and len({r["question_id"] for r in a}) == len(a)
    assert [r["question_id"] for r in a] == sorted((r["question_id"] for r in a), key=ids.index)  # pool order
    assert a != c
    with pytest.raises(ValueError):
        sampling.random_subset(pool, len(pool) + 1, seed=0)


def test_pool_is_every_quality_kept_record_and_das_set_matches_the_das_phase(demo_cfg):
    pool = pool_records() + [dict(pool_record(99, keep=False), content="")]
    write_jsonl(demo_cfg.run_dir / "das" / "stage2.jsonl", pool)
    read = sampling.pool_records(demo_cfg.run_dir)
    assert len(read) == 20  # the record without text is not a training candidate
    demo_cfg.system_prompt = SYSTEM
    kept = sampling.das_kept(read)
    assert sampling.sft_examples(kept, demo_cfg) == das.sft_rows(read, 2, demo_cfg)
    stats = sampling.set_statistics(kept)
    assert stats["n"] == stats["das_kept"] == len(kept) and stats["teacher_sentence_ratio"] == 0.5


def test_build_variants_uses_the_seeds_and_the_full_pool_flag(demo_cfg):
    write_jsonl(demo_cfg.run_dir / "das" / "stage2.jsonl", pool_records())
    demo_cfg.analyses.random_seeds = [1, 2]
    names = [v.name for v in analyses.build_variants(demo_cfg)]
    assert names == ["das", "random_s1", "random_s2"]
    demo_cfg.analyses.full_pool = True
    built = analyses.build_variants(demo_cfg)
    assert built[-1].name == "full" and len(built[-1].records) == 20
    assert len(built[1].records) == len(built[0].records)
    assert not built[0].main_run  # no stage-2 adapter in this run: DAS would be trained in analyses/das


# --------------------------------------------------------------------------- statistics
def test_comparison_table_keeps_the_families_apart():
    rng = random.Random(0)
    ref = [rng.random() < 0.6 for _ in range(50)]
    rand = [rng.random() < 0.4 for _ in range(50)]
    full = list(ref)
    table = compare.comparison_table({"das": predictions(ref), "random_s1": predictions(rand), "full": predictions(full)})
    by = {c["b"]: c for c in table["comparisons"]}
    only_a = sum(a and not b for a, b in zip(ref, rand))
    only_b = sum(b and not a for a, b in zip(ref, rand))
    assert by["random_s1"]["only_a_correct"] == only_a and by["random_s1"]["only_b_correct"] == only_b
    # Every pairwise comparison is descriptive: its raw p, no correction, no "significant" flag.
    assert all(c["role"] == "descriptive" and "significant" not in c and "mcnemar_p_holm" not in c for c in by.values())
    assert by["full"]["difference"] == 0 and by["full"]["mcnemar_p"] == 1.0
    # One planned test for the question; with one seed it is McNemar's exact test of that seed.
    planned = table["families"]["das_vs_random"]
    assert planned["b"] == ["random_s1"] and planned["p"] == pytest.approx(mcnemar_exact(only_a, only_b))
    assert "mixed_vs_control" not in table["families"]
    das_row = table["models"][0]
    assert das_row["correct"] == sum(ref) and das_row["ci95"][0] < das_row["accuracy"] < das_row["ci95"][1]
    with pytest.raises(ValueError):
        compare.comparison_table({"das": predictions(ref), "random_s1": predictions(rand)[:-1]})


def test_the_planned_test_does_not_change_with_the_mixed_variants():
    ref = [True] * 30 + [False] * 20
    preds = {"das": predictions(ref), "random_s1": predictions([True] * 22 + [False] * 28),
             "random_s2": predictions([True] * 24 + [False] * 26)}
    alone = compare.comparison_table(preds)["families"]["das_vs_random"]
    many = compare.comparison_table({**preds, **{f"mixed{i}": predictions([True] * 10 + [False] * 40) for i in range(4)},
                                     "mixed": predictions(ref), compare.CONTROL: predictions(ref)})
    assert many["families"]["das_vs_random"] == alone  # Holm over every comparison used to move it
    assert alone["seeds"] == 2 and alone["test"] == "exact_contrast"
    assert alone["difference"] == pytest.approx((30 - 23) / 50)
    assert many["families"]["mixed_vs_control"]["p"] == 1.0 and many["families"]["mixed_vs_control"]["planned"]


def test_verdict_follows_the_planned_test_not_the_best_seed():
    ref = [True] * 20 + [False] * 30
    # Seed 1 far below DAS (its own McNemar p < 0.05), seed 2 above it: pooled, no conclusion.
    one_bad_seed = compare.comparison_table({"das": predictions(ref),
                                             "random_s1": predictions([False] * 20 + [True] * 2 + [False] * 28),
                                             "random_s2": predictions([True] * 20 + [True] * 12 + [False] * 18)})
    by = {c["b"]: c for c in one_bad_seed["comparisons"]}
    assert by["random_s1"]["mcnemar_p"] < 0.05
    assert compare.verdict(one_bad_seed).startswith("On ne peut pas conclure")
    assert "descriptives" in compare.verdict(one_bad_seed)
    same = compare.comparison_table({"das": predictions(ref), "random_s1": predictions([True] * 19 + [False] * 31)})
    better = compare.comparison_table({"das": predictions([True] * 40 + [False] * 10),
                                       "random_s1": predictions([False] * 40 + [True] * 2 + [False] * 8)})
    worse = compare.comparison_table({"das": predictions([False] * 40 + [True] * 2 + [False] * 8),
                                      "random_s1": predictions([True] * 40 + [False] * 10)})
    assert not same["families"]["das_vs_random"]["significant"] and better["families"]["das_vs_random"]["significant"]
    assert compare.verdict(same).startswith("On ne peut pas conclure")
    assert compare.verdict(better).startswith("Oui")
    assert compare.verdict(worse).startswith("Non")
    assert len({compare.verdict(t) for t in (same, better, worse)}) == 3
    assert "ne peuvent pas trancher" in compare.verdict(better, "demo")
    assert "ne peuvent pas trancher" not in compare.verdict(better, "colab")
    old = {"comparisons": [dict(c, mcnemar_p_holm=c["mcnemar_p"], significant=True) for c in better["comparisons"]]}
    assert "version antérieure" in compare.verdict(old)  # stored by an older version: never read as a verdict


# --------------------------------------------------------------------------- provenance
def _prov_records() -> list[dict]:
    def s(pt, ps, pd, label, final=False):
        return {"p_teacher": pt, "p_student": ps, "p_distilled": pd, "provenance": label, "final_answer": final}
    return [
        {"question_id": "a", "correct": True, "sentences": [s(0.9, 0.1, 0.9, "teacher"), s(0.3, 0.3, 0.9, "boosted", True)]},
        {"question_id": "b", "correct": False, "sentences": [s(0.1, 0.9, 0.5, "student"), s(0.5, 0.5, 0.5, "shared", True)]},
        {"question_id": "c", "correct": False, "scorable": False, "unscorable_reason": "tokens_mismatch"},
    ]


def test_provenance_classes_recomputed_from_stored_probabilities():
    records = _prov_records()
    assert provenance.reclassify(records) == [[s["provenance"] for s in r["sentences"]] for r in records[:2]]
    strict = DASConfig(teacher_prob_threshold=0.95)  # other thresholds, other labels
    # Nothing is teacher / student / boosted above 0.95; only the sentence where all three agree is shared, the rest "other".
    assert provenance.reclassify(records, strict) == [["other", "other"], ["other", "shared"]]


def test_provenance_positions_and_area_difference():
    summary = provenance.summarize(_prov_records(), n_bins=2)
    assert summary["scored"] == 2 and summary["sentences"] == 4
    good, bad = summary["by_position"]["correct"], summary["by_position"]["incorrect"]
    assert good["teacher"] == [1.0, 0.0] and good["boosted"] == [0.0, 1.0]
    assert bad["student"] == [1.0, 0.0] and bad["shared"] == [0.0, 1.0]
    assert summary["delta"]["teacher"] == pytest.approx(0.5) and summary["delta"]["student"] == pytest.approx(-0.5)
    assert provenance.area_difference([None, 0.5], [0.2, 0.1]) == pytest.approx(0.2)
    assert summary["unscorable"] == {"tokens_mismatch": 1} and summary["final_answer_sentences"] == 2
    # Absolute index: sentence 1 then sentence 2 (the first FIRST_SENTENCES; positions without sentences are None).
    by_index = summary["by_index"]["correct"]
    assert by_index["teacher"][:3] == [1.0, 0.0, None] and by_index["boosted"][:2] == [0.0, 1.0]
    assert len(by_index["teacher"]) == provenance.FIRST_SENTENCES
    assert summary["delta_by_index"]["teacher"] == pytest.approx(1 / provenance.FIRST_SENTENCES)
    # Without the final-answer sentence only the first sentences are left: the boosted / shared ones go.
    # (a single sentence sits at relative position 0.5: the second of two bins)
    assert summary["by_position_without_final"]["correct"]["boosted"] == [None, 0.0]
    assert summary["delta_without_final"]["teacher"] == pytest.approx(0.5)
    assert summary["delta_without_final"]["boosted"] == 0.0 and summary["delta"]["boosted"] == pytest.approx(0.5)


def test_provenance_stops_for_an_api_teacher(demo_cfg, monkeypatch):
    """An endpoint without prompt log-probabilities (the fake server answers like OpenAI) stops the analysis."""
    from support.fake_openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-provenance-key")
    demo_cfg.teacher.backend = "openai"
    with FakeOpenAIServer() as server:
        demo_cfg.teacher.base_url = server.base_url
        with pytest.raises(provenance.ProvenanceUnavailable, match="prompt_logprobs"):
            provenance.check_teacher(demo_cfg)


# --------------------------------------------------------------------------- phase and report
def _fake_phase(demo_cfg, monkeypatch, correct_das, correct_rand):
    write_jsonl(demo_cfg.run_dir / "das" / "stage2.jsonl", pool_records())
    write_jsonl(demo_cfg.run_dir / "data" / "eval.jsonl", [{"id": f"e{i}"} for i in range(len(correct_das))])
    demo_cfg.analyses.provenance = False
    demo_cfg.analyses.mixed_policy = False  # tests/analyses/test_mixed_policy.py covers it
    calls = []
    monkeypatch.setattr(variants, "train", lambda cfg, v, force=False: calls.append(v.name) or {})

    def fake_evaluate(cfg, todo, rows, force=False):
        return {v.name: {"predictions": predictions(correct_das if v.name == "das" else correct_rand), "generated": 1}
                for v in todo}

    monkeypatch.setattr(variants, "evaluate", fake_evaluate)
    return calls


def test_phase_writes_results_and_reuses_them(demo_cfg, monkeypatch):
    calls = _fake_phase(demo_cfg, monkeypatch, [True] * 30 + [False] * 20, [True] * 28 + [False] * 22)
    first = analyses.run_phase(demo_cfg)
    assert calls == ["das", "random_s1"] and first["reused"] is False
    assert (demo_cfg.run_dir / "figures" / "analyses_das_vs_random.png").is_file()
    assert first["provenance"] == {"available": False, "reason": "analyses.provenance=false"}
    second = analyses.run_phase(demo_cfg)
    assert second["reused"] is True and calls == ["das", "random_s1"]
    demo_cfg.analyses.random_seeds = [5]  # other inputs: recomputed
    assert analyses.run_phase(demo_cfg)["reused"] is False
    # The teacher's endpoint and extra body decide P_T and the continuations: part of the key too.
    for key, value in (("extra_body", {"reasoning_effort": "high"}), ("base_url", "http://user:pw@other:8000/v1")):
        setattr(demo_cfg.teacher, key, value)
        assert analyses.run_phase(demo_cfg)["reused"] is False
        assert analyses.run_phase(demo_cfg)["reused"] is True
    manifest = (demo_cfg.run_dir / "analyses" / "manifest.json").read_text(encoding="utf-8")
    assert "other:8000" in manifest and "pw@" not in manifest  # the key's inputs are saved without credentials
    timings = json.loads((demo_cfg.run_dir / "timings.json").read_text(encoding="utf-8"))
    assert "analyses" in timings["phases"]


def test_report_section_present_or_absent(demo_cfg, monkeypatch):
    absent = report.render_markdown(report.collect_context(demo_cfg.run_dir, demo_cfg.to_dict()))
    assert "### 4.3 Le filtrage DAS aide-t-il ?" in absent and "Phase `analyses` non exécutée" in absent
    _fake_phase(demo_cfg, monkeypatch, [True] * 40 + [False] * 10, [False] * 40 + [True] * 2 + [False] * 8)
    results = analyses.run_phase(demo_cfg)
    present = report.render_markdown(report.collect_context(demo_cfg.run_dir, demo_cfg.to_dict()))
    assert "Phase `analyses` non exécutée" not in present
    assert "DAS (gardés)" in present and "aléatoire (graine 1)" in present
    assert "ne peuvent pas trancher" in present and "Oui, sur ces items" in present
    assert present.count("analyses_das_vs_random.png)") == 1  # in this section only, not among the DAS figures
    assert "Analyse de provenance non faite" in present
    assert results["families"]["das_vs_random"]["significant"]


def test_config_profiles_set_the_analyses():
    assert load_config("demo").analyses.full_pool is False
    # one T4 session: one random seed, no whole pool; the larger plan is notebook 08's explicit opt-in
    colab = load_config("colab").analyses
    assert colab.full_pool is False and colab.random_seeds == [1] and colab.mixed_control is True
    larger = analyses.larger_plan(load_config("colab")).analyses
    assert larger.full_pool is True and larger.random_seeds == [1, 2, 3]
    assert load_config("full").analyses.full_pool is True and len(load_config("full").analyses.random_seeds) == 3


def test_teacher_capabilities_are_asked_before_any_training(demo_cfg, monkeypatch):
    """A teacher that can neither continue an answer nor score given text costs no training, evaluation or regeneration."""
    calls = _fake_phase(demo_cfg, monkeypatch, [True] * 30 + [False] * 20, [True] * 28 + [False] * 22)
    demo_cfg.analyses.provenance = demo_cfg.analyses.mixed_policy = True
    write_jsonl(demo_cfg.run_dir / "data" / "train.jsonl", [{"id": r["question_id"]} for r in pool_records()])

    def cannot_score(cfg):
        calls.append("check provenance")
        raise provenance.ProvenanceUnavailable("teacher at h: the endpoint returned no prompt_logprobs")

    def cannot_continue(cfg, pool, rows):
        calls.append("check continuation")
        raise analyses.mixed.MixedPolicyUnavailable("teacher at h: the endpoint started a new answer")

    monkeypatch.setattr(provenance, "check_teacher", cannot_score)
    monkeypatch.setattr(analyses.mixed, "check_teacher", cannot_continue)
    monkeypatch.setattr(analyses.mixed, "regenerate", lambda *a, **k: pytest.fail("the student regenerated the pool"))
    results = analyses.run_phase(demo_cfg)
    assert calls == ["check provenance", "check continuation", "das", "random_s1"]
    assert results["provenance"] == {"available": False, "reason": "teacher at h: the endpoint returned no prompt_logprobs"}
    assert results["mixed_policy"]["reason"] == "teacher at h: the endpoint started a new answer"
    assert [v["name"] for v in results["variants"]] == ["das", "random_s1"]


def test_the_continuation_check_sends_one_request_and_reads_a_new_answer_as_unable(demo_cfg, monkeypatch):
    """The probe is the teacher's own pool answer cut past its middle; a server that starts over is caught."""
    from support.fake_openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-continuation-key")
    pool = pool_records()
    rows = {r["question_id"]: {"id": r["question_id"], "question": "Where?", "answerKey": "A",
                               "choices": {"label": list("ABCDE"), "text": list("abcde")}} for r in pool}
    demo_cfg.teacher.backend = "openai"
    demo_cfg.teacher.model = "fake-teacher"
    with FakeOpenAIServer(default="ignores_continue") as server:
        demo_cfg.teacher.base_url = server.base_url
        with pytest.raises(analyses.mixed.MixedPolicyUnavailable, match="new answer"):
            analyses.mixed.check_teacher(demo_cfg, pool, rows)
        assert server.n_requests == 1 and server.requests[0]["body"]["continue_final_message"] is True
    with FakeOpenAIServer(default="ok") as server:
        demo_cfg.teacher.base_url = server.base_url
        analyses.mixed.check_teacher(demo_cfg, pool, rows)  # continues: nothing raised
        assert server.n_requests == 1
    demo_cfg.teacher.backend = "local"
    analyses.mixed.check_teacher(demo_cfg, pool, rows)  # the local teacher always can: nothing sent


@pytest.mark.model
def test_provenance_scores_answers_with_the_das_code(tiny_cfg, tmp_path):
    """The real wiring on the tiny random model: teacher (stand-in = base student), student, distilled adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    choices = {"label": list("ABCDE"), "text": ["a cat", "a dog", "a fish", "a bird", "a stone"]}
    rows = [{"id": f"e{i}", "question": f"Which one barks, case {i}?", "choices": choices, "answerKey": "B"}
            for i in range(3)]
    predictions = [
        {"question_id": "e0", "correct": True, "response": "<reasoning>\nDogs bark. Cats do not.\n</reasoning>\nFinal Answer: B"},
        {"question_id": "e1", "correct": False, "response": "<reasoning>\nFish swim.\n</reasoning>\nFinal Answer: C"},
        {"question_id": "e2", "correct": False, "response": None},
    ]
    records = provenance.score_answers(tiny_cfg, predictions, rows, str(adapter))
    assert [r["question_id"] for r in records] == ["e0", "e1"]  # no response, nothing to score
    scored = [r for r in records if r.get("sentences")]
    assert scored and all(0 <= s[k] <= 1 for r in scored for s in r["sentences"] for k in ("p_teacher", "p_student", "p_distilled"))
    assert provenance.reclassify(scored, tiny_cfg.das) == [[s["provenance"] for s in r["sentences"]] for r in scored]
    summary = provenance.summarize(records)
    assert summary["sentences"] == sum(len(r["sentences"]) for r in scored)


@pytest.mark.model
def test_provenance_with_the_local_teacher_never_reads_the_gold_answer(tiny_cfg, tmp_path, monkeypatch):
    """The demo's stand-in teacher generated with the gold hint; its P_T of the distilled model's answers must not."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dasd_utils.teacher import local

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_cfg.student.model)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    assert tiny_cfg.teacher.backend == "local" and tiny_cfg.teacher.local_gold_hint  # the demo's setting
    choices = {"label": list("ABCDE"), "text": ["a cat", "a dog", "a fish", "a bird", "a stone"]}
    answer = "<reasoning>\nDogs bark. Cats do not.\n</reasoning>\nFinal Answer: B"
    seen = []
    real = local.teacher_messages
    monkeypatch.setattr(local, "teacher_messages", lambda *a, **k: seen.append(k) or real(*a, **k))
    p_teacher = {}
    for gold in "BC":  # the answer is right, then wrong: only the label changes
        rows = [{"id": "e0", "question": "Which one barks?", "choices": choices, "answerKey": gold}]
        records = provenance.score_answers(tiny_cfg, [{"question_id": "e0", "correct": gold == "B", "response": answer}],
                                           rows, str(adapter))
        p_teacher[gold] = [s["p_teacher"] for s in records[0]["sentences"]]
    assert seen and all(k.get("gold_hint") is False for k in seen)
    assert p_teacher["B"] == p_teacher["C"]  # P_T does not depend on the gold label
    hinted = local.teacher_messages(rows[0], tiny_cfg.system_prompt, tiny_cfg.teacher.local_few_shot, gold_hint=True)
    assert "Hint" in hinted[-1]["content"]  # what generation sent, and what the score no longer reads


def test_prepare_writes_the_training_set_and_links_the_stage1_adapter(demo_cfg):
    from dasd_utils.data import read_jsonl

    demo_cfg.system_prompt = SYSTEM
    stage1 = demo_cfg.run_dir / "sft" / "stage1"
    stage1.mkdir(parents=True)
    subset = sampling.random_subset(pool_records(), 4, seed=3)
    vcfg = variants.prepare(demo_cfg, variants.Variant("random_s3", subset, seed=3))
    assert vcfg.run_dir == demo_cfg.run_dir / "analyses" / "random_s3"
    assert vcfg.eval.loglik is False and vcfg.sft == demo_cfg.sft  # same recipe
    assert read_jsonl(vcfg.run_dir / "das" / "stage2_sft.jsonl") == sampling.sft_examples(subset, demo_cfg)
    link = vcfg.run_dir / "sft" / "stage1"
    assert link.is_symlink() and link.resolve() == stage1.resolve()
    variants.prepare(demo_cfg, variants.Variant("random_s3", subset, seed=3))  # a re-run keeps the link
    assert link.resolve() == stage1.resolve()


def test_report_states_the_route_the_families_and_the_departures(demo_cfg, monkeypatch):
    from dasd_utils.analyses import mixed
    from dasd_utils.jsonl import write_json_atomic

    _fake_phase(demo_cfg, monkeypatch, [True] * 30 + [False] * 20, [True] * 28 + [False] * 22)
    results = analyses.run_phase(demo_cfg)
    summary = provenance.summarize(_prov_records())
    results["provenance"] = {"available": True, **summary, "route": provenance.route_info(demo_cfg)}
    items = [{"question_id": "q1", "divergence": "cut_off", "prefix": "<reasoning>\nA", "joined": "x", "used": True,
              "gold": "A", "teacher_answer": "A", "quality": {"ok": True, "reason": None}},
             {"question_id": "q2", "divergence": "wrong_answer", "prefix": "<reasoning>\nB", "joined": "y", "used": False,
              "new_turn": True, "continuation_error": "new turn: ...", "gold": "A", "quality": {"ok": True, "reason": None}}]
    results["mixed_policy"] = dict(mixed.summarize(items, 3), length_cap=1.5, epochs=1.0, masked_variant=False)
    write_json_atomic(demo_cfg.run_dir / "analyses" / "results.json", {k: v for k, v in results.items() if k != "reused"})
    text = report.render_markdown(report.collect_context(demo_cfg.run_dir, demo_cfg.to_dict()))
    assert "un seul test prévu" in text and "**Test prévu.** DAS contre 1 tirage(s)" in text
    assert "sans l'indice de la bonne réponse" in text  # the demo's local teacher: how P_T was conditioned
    assert "Ces règles sont une lecture de l'article propre à ce projet" in text and "- **autre** : " in text
    assert "Δ sans la phrase finale" in text and "Δ par rang" in text
    assert "**nouveau tour**" in text and ": 1, jamais entraînées" in text
    assert "fidèle à l'article** (réponses coupées par la limite de longueur seulement) : 1 divergentes" in text
    assert "**Écarts à l'article.**" in text
    assert "p Holm" not in text and "Holm" not in text.split("### 4.3")[1]
