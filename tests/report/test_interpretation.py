"""The report's interpretive sentences are chosen by the numbers they comment: each one is checked
both ways, on FAKE runs whose invented numbers are changed (tests/support/fake_run.py)."""

from __future__ import annotations

import copy

import pytest

from dasd_utils import report
from support.fake_run import FAKE_ANALYSES, FAKE_DAS, FAKE_METRICS, make_fake_run, write_json


def render(tmp_path, metrics=None, das=None, analyses=None, overrides=None) -> str:
    run_dir = make_fake_run(tmp_path, "demo", metrics=metrics, analyses=analyses)
    if das is not None:
        write_json(run_dir / "das" / "summary.json", das)
    config = None
    if overrides:
        from dasd_utils.config import load_config

        config = load_config("demo", run_dir=run_dir, overrides=overrides).to_dict()
    return report.render_markdown(report.collect_context(run_dir, config))


def metrics_with(**models) -> dict:
    """Return FAKE_METRICS with some models' fields replaced (``stage1={"accuracy": ...}``)."""
    metrics = copy.deepcopy(FAKE_METRICS)
    for key, fields in models.items():
        metrics["models"][key].update(fields)
    return metrics


def section(md: str, start: str, end: str) -> str:
    return md[md.index(start): md.index(end, md.index(start))]


# ------------------------------------------------------------------------------ format and accuracy
FORMAT_GAIN = "une partie du gain en exactitude générative peut venir de l'apprentissage du format"
FORMAT_WITHOUT_ACCURACY = "Le stage 1 a appris le format sans que l'exactitude suive (elle baisse)"


def test_format_gain_is_credited_only_when_accuracy_rose(tmp_path):
    metrics = copy.deepcopy(FAKE_METRICS)
    metrics["comparisons"][0].update(significant=True, mcnemar_p_holm=0.02)  # base vs stage 1
    rose = render(tmp_path / "a", metrics=metrics)  # base 22 % -> stage 1 34 %, format 46 % -> 88 %
    assert FORMAT_GAIN in rose and FORMAT_WITHOUT_ACCURACY not in rose
    assert "l'exactitude monte avec lui." in section(rose, "## 7. Conclusion", "## 8.")
    noise = render(tmp_path / "e")  # the same rise, not significant (p Holm 0,141)
    assert FORMAT_GAIN not in noise
    assert ("Format et exactitude montent ensemble, mais l'écart d'exactitude n'est pas significatif : si gain il y a, "
            "une partie peut venir de l'apprentissage du format.") in noise
    assert "l'exactitude monte avec lui, sans que l'écart soit significatif." in noise
    fell = render(tmp_path / "b", metrics=metrics_with(base={"accuracy": 0.18, "correct": 9},
                                                       stage1={"accuracy": 0.14, "correct": 7}))
    assert FORMAT_GAIN not in fell and FORMAT_WITHOUT_ACCURACY in fell
    assert "l'élève a appris à écrire la ligne `Final Answer` sans mieux répondre" in fell
    barely = render(tmp_path / "d", metrics=metrics_with(base={"format_rate": 0.0, "accuracy": 0.18, "correct": 9},
                                                         stage1={"format_rate": 0.02, "accuracy": 0.14, "correct": 7}))
    assert FORMAT_GAIN not in barely and "a appris le format" not in barely
    assert ("Le format progresse à peine : le stage 1 n'a pas appris à écrire la ligne `Final Answer`, et l'exactitude "
            "baisse.") in barely
    assert "l'élève n'a pas appris le format, et son exactitude repose sur la lecture en mode tolérant" in barely
    same = render(tmp_path / "c", metrics=metrics_with(stage1={"format_rate": 0.46}))
    assert FORMAT_GAIN not in same and "L'exactitude monte sans que le format progresse" in same
    assert "le stage 1 n'a rien changé au format" in same


def test_lenient_extraction_is_said_when_it_reads_more_than_the_format(tmp_path):
    lenient = render(tmp_path / "a", metrics=metrics_with(base={"format_rate": 0.0, "extracted_rate": 0.64,
                                                                "accuracy": 0.18, "correct": 9}))
    assert ("- Base : aucune réponse ne respecte le format, mais une lettre est lue dans 64,0 % d'entre elles en mode "
            "tolérant ; ses 9 bonnes réponses viennent toutes de conclusions sans ligne `Final Answer`") in lenient
    assert "| 0,0 % | 64,0 % |" in lenient
    partial = render(tmp_path / "c", metrics=metrics_with(stage1={"format_rate": 0.82, "extracted_rate": 0.86}))
    assert ("- Stage 1 : 82,0 % des réponses respectent le format (mode strict), et une lettre est lue dans 86,0 % "
            "(mode tolérant) : 4,0 points de réponses ne sont lues que grâce au mode tolérant.") in partial
    assert "seulement" not in partial
    strict = render(tmp_path / "b", metrics=metrics_with(base={"extracted_rate": 0.46}))
    assert "en mode tolérant ;" not in strict and "mais une lettre est lue" not in strict
    assert "grâce au mode tolérant" not in strict
    assert "**mode tolérant**, utilisé pour l'exactitude" in strict  # section 2.5 describes both modes anyway


# ------------------------------------------------------------------------------ paired tests
def test_conclusion_states_which_differences_are_significant(tmp_path):
    some = section(render(tmp_path / "a"), "## 7. Conclusion", "## 8.")
    assert "seule est significative : Base contre Stage 2 (DASD) (en faveur de Stage 2 (DASD))" in some
    assert "aucune de ces différences n'est significative" not in some
    metrics = copy.deepcopy(FAKE_METRICS)
    for c in metrics["comparisons"]:
        c.update(significant=False, mcnemar_p_holm=1.0)
    none = section(render(tmp_path / "b", metrics=metrics), "## 7. Conclusion", "## 8.")
    assert "aucune de ces différences n'est significative (McNemar, Holm) : ce run ne permet d'affirmer ni gain ni perte" in none
    assert "significative :" not in none


def test_stage2_sentence_says_equal_only_when_equal(tmp_path):
    differ = render(tmp_path / "a")  # 34 % vs 36 %
    assert "l'écart entre les deux exactitudes n'est pas significatif" in differ
    assert "les deux exactitudes sont égales" not in differ
    equal = render(tmp_path / "b", metrics=metrics_with(stage2={"accuracy": 0.34, "correct": 17}))
    assert "les deux exactitudes sont égales" in equal


def test_interval_width_sentence_follows_the_width(tmp_path):
    wide = render(tmp_path / "a")
    assert "des écarts de quelques points entre modèles restent dans le bruit" in wide
    metrics = copy.deepcopy(FAKE_METRICS)
    metrics["n_items"] = 1221
    for m, (low, high) in zip(metrics["models"].values(), ([0.20, 0.245], [0.318, 0.371], [0.333, 0.386])):
        m.update(n=1221, ci95=[low, high])
    narrow = render(tmp_path / "b", metrics=metrics)
    assert "des écarts de quelques points" not in narrow and "points de large." in narrow


# ------------------------------------------------------------------------------ DAS
def test_final_line_weight_sentence_follows_the_ratios(tmp_path):
    spread = render(tmp_path / "a")  # 0,331 with the final line, 0,242 without
    assert "La décision ne dépend donc pas surtout de cette ligne" in spread
    assert "sa décision repose surtout sur la ligne de réponse finale" not in spread
    das = copy.deepcopy(FAKE_DAS)
    das["stages"]["2"]["teacher_sentence_ratio_without_final"] = {"mean": 0.042, "median": 0.0}
    final = render(tmp_path / "b", das=das)
    assert "La décision de garder une réponse repose donc surtout sur cette ligne" in final
    assert "sur des réponses de 9,5 phrases en moyenne, DAS choisit des conclusions plus que des raisonnements" in final
    assert ("- **DAS.** Le filtre a gardé 17 des 38 réponses notées du stage 2 ; sa décision repose surtout sur la "
            "ligne de réponse finale (taux de phrases professeur de 0,331 avec elle, 0,042 sans elle)") in final


# ------------------------------------------------------------------------------ analyses
def test_das_versus_random_in_the_conclusion_follows_the_test(tmp_path):
    open_question = section(render(tmp_path / "a", analyses=FAKE_ANALYSES), "## 7. Conclusion", "## 8.")
    assert "Pas de différence significative avec un tirage aléatoire de même taille" in open_question
    better = copy.deepcopy(FAKE_ANALYSES)
    better["comparisons"][0].update(only_a_correct=12, only_b_correct=1, difference=0.22, mcnemar_p=0.0034,
                                    mcnemar_p_holm=0.0034, significant=True)
    shown = section(render(tmp_path / "b", analyses=better), "## 7. Conclusion", "## 8.")
    assert "Oui sur ces questions : DAS fait significativement mieux qu'un tirage aléatoire de même taille" in shown
    worse = copy.deepcopy(better)
    worse["comparisons"][0].update(only_a_correct=1, only_b_correct=12, difference=-0.22)
    assert "Non sur ces questions" in render(tmp_path / "c", analyses=worse)
    assert "Le filtrage DAS aide-t-il ?** " not in section(render(tmp_path / "d"), "## 7. Conclusion", "## 8.")
    # With the planned test (seeds pooled), it decides: one significant seed does not make DAS better.
    pooled = copy.deepcopy(better)
    pooled["families"] = {"das_vs_random": {"family": "das_vs_random", "planned": True, "a": "das", "b": ["random_s1", "random_s2"],
                                            "test": "paired_exact", "n": 50, "seeds": 2, "informative": 20,
                                            "difference": 0.06, "p": 0.31, "significant": False}}
    shown = section(render(tmp_path / "e", analyses=pooled), "## 7. Conclusion", "## 8.")
    assert "Pas de différence significative avec un tirage aléatoire de même taille" in shown
    pooled["families"]["das_vs_random"].update(difference=-0.2, p=0.001, significant=True)
    assert "Non sur ces questions" in section(render(tmp_path / "f", analyses=pooled), "## 7. Conclusion", "## 8.")


def test_provenance_is_in_french_with_definitions_and_chosen_sentences(tmp_path):
    md = render(tmp_path / "a", analyses=FAKE_ANALYSES)
    prov = section(md, "#### Provenance des phrases du modèle distillé", "#### Distillation à politique mixte")
    for english in ("teacher", "boosted", "shared", "student"):
        assert f" {english} " not in prov, english
    assert "**P_D**, la probabilité de la phrase sous l'adaptateur du stage 2" in prov
    assert "- **renforcée** : P_T et P_S proches (écart ≤ δ), mais P_D > τ et P_D − max(P_T, P_S) > δ" in prov
    assert "avec τ = 0,6 et δ = 0,2" in prov
    assert ("187 phrases de 50 réponses du modèle distillé (18 justes) : professeur 5,3 % (10 phrases), "
            "renforcée 1,1 % (2 phrases), partagée 81,8 % (153 phrases), élève 11,8 % (22 phrases).") in prov
    assert "La provenance la plus fréquente est « partagée » (81,8 %)" in prov
    assert "Les phrases professeur sont rares" not in prov  # 5,3 % is not below 5 %
    assert "ces écarts reposent sur trop peu de réponses" not in prov  # 18 right, 32 wrong
    assert ("La provenance la plus présente dans les réponses justes plutôt que fausses est « professeur » (Δ = 0,04) ; "
            "aucun test ne dit ici si cet écart dépasse le hasard.") in prov
    few = copy.deepcopy(FAKE_ANALYSES)
    few["provenance"].update(correct=7, shares={"teacher": 0.0053, "boosted": 0.0, "shared": 0.877, "student": 0.1177},
                             counts={"teacher": 1, "boosted": 0, "shared": 164, "student": 22})
    prov = section(render(tmp_path / "b", analyses=few), "#### Provenance", "#### Distillation")
    assert "professeur 0,5 % (1 phrase), renforcée 0,0 % (0 phrase)" in prov
    assert "Les phrases professeur sont rares (0,5 %)" in prov
    assert "Avec 7 réponses justes et 43 fausses, ces écarts reposent sur trop peu de réponses" in prov
    assert "la plus présente dans les réponses justes" not in prov
    student = copy.deepcopy(FAKE_ANALYSES)
    student["provenance"]["shares"] = {"teacher": 0.1, "boosted": 0.0, "shared": 0.3, "student": 0.6}
    md = render(tmp_path / "c", analyses=student)
    assert "La provenance la plus fréquente est « élève » (60,0 %) : le modèle distillé garde surtout" in md
    student["provenance"]["delta"] = {"teacher": -0.1, "boosted": 0.0, "shared": 0.02, "student": 0.08}
    md = render(tmp_path / "d", analyses=student)
    assert "plutôt que fausses est « élève » (Δ = 0,08) ; aucun test" in md
    assert "sont de provenance « élève » (60,0 %), 10,0 % de provenance « professeur »" in md
    other = copy.deepcopy(FAKE_ANALYSES)
    other["provenance"]["shares"] = {"teacher": 0.17, "boosted": 0.12, "shared": 0.27, "student": 0.0, "other": 0.44}
    prov = section(render(tmp_path / "e", analyses=other), "#### Provenance", "#### Distillation")
    assert "La provenance la plus fréquente est « autre » (44,0 %) : la plupart des phrases n'entrent dans aucune" in prov
    assert "n'entrent dans aucune" not in section(md, "#### Provenance", "#### Distillation")


# ------------------------------------------------------------------------------ plurals and the evaluated items
@pytest.mark.parametrize("epochs, shown", [(1, "1 époque,"), (3, "3 époques,"), (1.5, "1,5 époque,")])
def test_plurals_agree_with_the_number(tmp_path, epochs, shown):
    md = render(tmp_path, overrides={"sft.epochs": epochs})
    assert f"lr 2e-04 puis 1e-04, {shown}" in md
    assert "1 époques" not in md


def test_the_evaluated_items_are_stated_as_an_inference(tmp_path):
    md = render(tmp_path)
    assert "mêmes 50 questions" not in md and "50 premières questions" not in md
    assert "« un sous-ensemble de validation de CommonsenseQA (50 exemples) » sans dire lequel ; nous en déduisons" in md
    assert "les indices 0 à 49 sont une déduction" in md
