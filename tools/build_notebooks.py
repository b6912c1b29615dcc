"""Write notebooks/01..08 from the cell lists below (run once after editing; then execute them).

The notebooks are generated so that their shared cells (installation, parameters, setup) stay
identical, and so that a review of a notebook change is a review of this file. Stored outputs
come from executing them on the demo profile: ``python tools/run_notebooks.py --in-place``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"

PARAMS = """\
# Paramètres (cellule étiquetée « parameters » pour papermill). Mettez les mêmes dans les 7 notebooks
# d'un run, ou seulement dans le premier : les suivants relisent la configuration du run (config.json).
PROFILE = None     # None : colab sur Colab/Kaggle, demo en local | demo : CPU, hors ligne, substituts | colab : T4 | full : A100/H100
RUN_DIR = None     # None : Google Drive (Colab), /kaggle/working (Kaggle), runs/<PROFILE> (local)
USE_DRIVE = True   # Colab : False pour ne pas monter Drive (le run est alors perdu à la déconnexion)
FORCE = False      # True : recalculer cette phase, et accepter des paramètres différents du run
OVERRIDES = {}     # ex. {"data.n_train": 100, "teacher.base_url": "https://..."}
"""

# The bootstrap is plain Python: dasd_utils is importable only once the repository is there. It
# clones once into an absolute folder (a re-run updates it instead of nesting a second clone).
SETUP = """\
# Mise en place : environnement (Colab, Kaggle, local), installation, GPU, dossier du run, configuration.
import os, subprocess, sys
REPO_URL = os.environ.get("DASD_REPO_URL", "https://github.com/OWNER/dasd-course.git")  # votre fork
ON_CLOUD = any(k in os.environ for k in ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE")) or "google.colab" in sys.modules
def git(*args):
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"git {args[-2] if args[0] == '-C' else args[0]} a échoué : {done.stderr.strip()[-400:]}")
    return done.stdout
if ON_CLOUD:
    REPO_DIR = os.environ.get("DASD_REPO_DIR") or ("/kaggle/working/dasd-course" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else "/content/dasd-course")
    if not os.path.isdir(os.path.join(REPO_DIR, ".git")):
        if "OWNER/" in REPO_URL:
            raise SystemExit("REPO_URL contient encore OWNER : mettez l'adresse de votre fork (ou DASD_REPO_URL).")
        git("clone", "-q", REPO_URL, REPO_DIR)
    HEAD = git("-C", REPO_DIR, "rev-parse", "HEAD")
    git("-C", REPO_DIR, "pull", "-q", "--ff-only")  # a re-run updates the clone (never a nested one)
    CODE_CHANGED = "dasd_utils" in sys.modules and HEAD != git("-C", REPO_DIR, "rev-parse", "HEAD")
    os.chdir(REPO_DIR)
    sys.path.insert(0, REPO_DIR)
    from dasd_utils import colab
    colab.install(REPO_DIR, code_changed=CODE_CHANGED)
from dasd_utils import colab, notebook as nb
cfg = colab.setup_notebook(PHASE, PROFILE, RUN_DIR, OVERRIDES, force=FORCE, use_drive=USE_DRIVE)
print(nb.stand_in_banner(cfg))
"""

SETUP_SHOW = CHECK + "nb.show_config(cfg)\n"

#: The phase each notebook runs (the set-up cell stops a GPU phase of the colab profile without a GPU).
PHASES = {"01": "data", "02": "generate", "03": "das", "04": "train", "05": "train", "06": "evaluate", "07": "report",
          "08": "analyses"}
#: Notebooks whose phase runs the student on the colab profile: only they ask Colab / Kaggle for a GPU.
GPU_NOTEBOOKS = ("03", "04", "05", "06", "08")


def header(title: str, intro: str) -> list:
    number = title.split(" ", 1)[0]
    return [
        new_markdown_cell(f"# {title}\n\n{intro}"),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(f"PHASE = {PHASES[number]!r}  # la phase de ce notebook\n" + SETUP),
        new_code_cell(SETUP_SHOW),
    ]


NOTEBOOKS: dict[str, list] = {}

# --------------------------------------------------------------------------- 01 data
NOTEBOOKS["01_donnees.ipynb"] = header(
    "01 · Données : CommonsenseQA",
    """Ce notebook prépare les questions utilisées par tout le pipeline DASD (Distribution-Aligned
Sequence Distillation).

**CommonsenseQA** est un QCM de sens commun : une question, cinq options A-E, une seule bonne
réponse (`answerKey`). Le professeur (un grand modèle) rédigera pour chaque question d'entraînement
un raisonnement pas à pas ; l'élève (un petit modèle) apprendra à reproduire ce raisonnement.

* Profil `colab` / `full` : questions d'entraînement tirées du split *train* du Hub
  (`tau/commonsense_qa`), évaluation sur les 50 premières questions de *validation* (comme le
  rapport du cours ; `data.n_eval=-1` pour les 1 221).
* Profil `demo` (hors ligne) : seul le split de validation est livré avec le projet (licence MIT).
  On entraîne sur les items 50 et suivants et on évalue sur les items 0-49 : les deux ensembles
  ne se recouvrent jamais (le code le vérifie).

Chaque ligne est validée : une question manquante, un nombre d'options différent de cinq ou une
`answerKey` absente des labels lèvent une erreur qui nomme la ligne et le champ.""",
) + [
    new_code_cell("from dasd_utils import data\nsummary = data.run_phase(cfg)\n"),
    new_markdown_cell("Combien de questions, et quelle répartition des bonnes réponses ? Une répartition "
                      "déséquilibrée rendrait trompeuse une exactitude proche du hasard (20 %)."),
    new_code_cell(CHECK + """import pandas as pd
counts = pd.DataFrame({"entraînement": summary["train_answer_counts"], "évaluation": summary["eval_answer_counts"]})
print(f"{summary['n_train']} questions d'entraînement (items {summary['train_indices']}), "
      f"{summary['n_eval']} d'évaluation (items {summary['eval_indices']})")
counts.T
"""),
    new_markdown_cell("Voici le message exact que verront le professeur et l'élève pour la question du crabe "
                      "(item 49 de validation), celle de l'analyse qualitative du rapport du cours "
                      "(`eval.qualitative_index` en choisit une autre ; si ce run ne l'évalue pas, la "
                      "cellule le dit)."),
    new_code_cell(CHECK + "nb.show_featured_prompt(cfg)\n"),
    new_markdown_cell("Une question d'entraînement telle qu'elle est stockée (`data/train.jsonl`), puis les messages "
                      "de chat que le professeur en reçoit : un message système et un message utilisateur."),
    new_code_cell(CHECK + """from dasd_utils import teaching
question = data.load_run_questions(cfg, "train")[0]
print({k: question[k] for k in ("index", "question", "choices", "answerKey")})
for message in teaching.question_messages(cfg, "train", 0):
    print(f"--- {message['role']} ---\\n{message['content']}")
"""),
]

# --------------------------------------------------------------------------- 02 teacher
NOTEBOOKS["02_generation_professeur.ipynb"] = header(
    "02 · Génération par le professeur (avec logprobs)",
    """Le professeur répond à chaque question d'entraînement **deux fois** :

* **Stage 1, température 0,3** : des réponses sûres et régulières, pour que l'élève apprenne
  d'abord le format (`<reasoning>…</reasoning>` puis `Final Answer: X`) et les raisonnements les
  plus probables du professeur ;
* **Stage 2, température 0,9** : des réponses plus variées qui couvrent davantage de la
  distribution du professeur. Le papier DASD montre qu'apprendre d'abord à basse température puis
  à haute température stabilise l'entraînement et améliore la généralisation.

Pour chaque réponse, l'API renvoie la **log-probabilité de chaque token** (`logprobs=True`) : c'est
la confiance du professeur, dont la phase DAS a besoin phrase par phrase.

Un **filtre de qualité** écarte, avec une raison : les réponses vides ou de moins de 30
caractères, sans réponse finale claire, fausses (le cours ne vérifiait pas ce point), répétitives
(n-grammes répétés, comme le papier) ou plus longues que le contexte de l'élève.

Les appels sont **mis en cache** : chaque requête est écrite sur disque dès son arrivée ; une
réexécution ne renvoie rien à l'API (les appels coûtent de l'argent). La clé d'API vient de
l'environnement (`OPENAI_API_KEY`), d'un fichier `.env` ou des secrets Colab ; elle n'est jamais
écrite nulle part.

*Profil demo : le « professeur » est SmolLM2-135M-Instruct exécuté localement, un simple
substitut (exemples résolus en contexte et bonne réponse donnée en indice, comme dans STaR). Ses
réponses n'ont rien de la qualité de gpt-oss-120b.*""",
) + [
    new_code_cell("from dasd_utils import teacher\nteacher_summary = teacher.run_phase(cfg, force=FORCE)\n"
                  "for key, s in teacher_summary[\"stages\"].items():\n"
                  "    print(f\"{key} : {s.get('sent', 0)} requêtes envoyées par cette exécution, {s.get('reused', 0)} relues dans le cache\")\n"),
    new_markdown_cell("Bilan par stage : requêtes envoyées, échecs, rejets par raison, exemples gardés, "
                      "exactitude du professeur et confiance moyenne (moyenne des probabilités de token)."),
    new_code_cell(CHECK + "nb.teacher_table(teacher_summary)\n"),
    new_code_cell("nb.show_figure(cfg, \"teacher_quality.png\")\n"),
    new_markdown_cell("**Une requête et sa réponse.** Voici les messages exacts envoyés au professeur pour la "
                      "première question du stage 1 (sur le profil demo : deux exemples résolus, puis la question "
                      "avec la bonne réponse en indice), puis le texte qu'il a renvoyé."),
    new_code_cell(CHECK + """from dasd_utils import teaching
records = teacher.load_records(cfg, 1)
request = records[0]
for message in request["messages"]:
    print(f"--- {message['role']} ---\\n{message['content']}\\n")
print(f"=== réponse (température {request['temperature']}, {len(request['tokens'] or [])} tokens) ===\\n{request['content']}")
"""),
    new_markdown_cell("Ses premiers tokens et leur probabilité $p = e^{\\text{logprob}}$ : c'est la confiance du "
                      "professeur que DAS utilisera (première réponse gardée du stage 1)."),
    new_code_cell(CHECK + "nb.teacher_example(cfg, stage=1)\n"),
    new_markdown_cell("**Les verdicts du filtre de qualité**, réponse par réponse, avec leur raison. Une question peut "
                      "avoir plusieurs tirages : le premier qui passe le filtre est gardé."),
    new_code_cell(CHECK + """verdicts = teaching.quality_verdicts(records)
print(verdicts["verdict"].value_counts().to_string(), "\\n")
verdicts[verdicts["verdict"] != "gardée"]
"""),
    new_markdown_cell("**Ce qu'a coûté la phase** : requêtes et tokens par stage, et ce que cette exécution a "
                      "envoyé ou relu dans le cache (une réexécution n'envoie rien)."),
    new_code_cell("""timing = teaching.phase_time(cfg, "generate")
if timing["computed_wall_s"] is not None:
    print(f"génération (les deux stages) : {timing['computed_wall_s'] / 60:.1f} min lors de son calcul"
          + (" ; cette exécution n'a fait que relire le cache" if timing["last_reused"] else ""))
teaching.teacher_cost(teacher_summary)
"""),
]

# --------------------------------------------------------------------------- 03 DAS
NOTEBOOKS["03_das.ipynb"] = header(
    "03 · Divergence-Aware Sampling (DAS)",
    """Toutes les réponses du professeur n'apprennent pas autant à l'élève. DAS les compare
**phrase par phrase** :

* $P_T$ : probabilité de la phrase pour le professeur (moyenne géométrique des probabilités de
  ses tokens, tirées des logprobs de l'API) ;
* $P_S$ : la même chose pour l'élève, calculée par *teacher forcing* : on fait lire la réponse du
  professeur à l'élève, dans le même contexte de conversation que pendant l'entraînement.

Chaque phrase reçoit l'un de trois types (`das.classify_sentence`, seuils de `cfg.das`) :

* **phrase professeur** : $P_T > 0{,}6$ et $P_T - P_S > 0{,}2$ ; le professeur est sûr de lui et
  l'élève ne l'aurait pas écrite : c'est là que l'élève a le plus à apprendre ;
* **phrase élève** : le cas symétrique, $P_S > 0{,}6$ et $P_S - P_T > 0{,}2$ ; l'élève est sûr d'une
  phrase que le professeur n'aurait pas privilégiée ;
* **phrase partagée** : *toutes les autres* ; les deux modèles sûrs, les deux incertains (une
  phrase improbable pour les deux est donc « partagée »), ou des probabilités trop proches.

« Supérieur » est strict : une valeur égale au seuil (à $10^{-9}$ près) ne le dépasse pas. Un
exemple est gardé quand **plus de 30 %** de ses phrases sont des phrases professeur (ratio
strictement supérieur à 0,3). Comme dans le cours, ce filtre ne sert qu'au stage 2 : le stage 1
s'entraîne sur toutes les réponses qui passent le filtre de qualité (`das.filter_stage1`).

**Alignement.** Le professeur (gpt-oss) et l'élève (Qwen3) n'ont pas le même tokenizer : on ne
peut pas compter les tokens. Tout est aligné sur les **positions de caractères** dans le texte de
la réponse : chaque phrase est un intervalle de caractères, chaque token (professeur ou élève) est
rattaché aux phrases par ses positions. Une réponse dont les tokens ne reconstituent pas
exactement le texte est écartée avec une raison comptée, jamais complétée par une valeur par
défaut.""",
) + [
    new_code_cell("from dasd_utils import das, teaching\ndas_summary = das.run_phase(cfg, force=FORCE)\n"
                  "print(\"scores relus (mêmes entrées)\" if das_summary.get(\"reused\") else \"réponses notées par cette exécution\")\n"),
    new_code_cell(CHECK + "nb.das_table(das_summary)\n"),
    new_markdown_cell("### L'algorithme pas à pas, sur une réponse de ce run\n\n"
                      "Voici la première réponse notée du stage 1, découpée en phrases, avec $P_T$, $P_S$ et le type "
                      "que DAS a enregistré pour chacune."),
    new_code_cell(CHECK + """records = {stage: das.load_das_records(cfg, stage) for stage in (1, 2)}
example = next(r for r in records[1] if r["scorable"])
teaching.sentence_table(example)
"""),
    new_markdown_cell("**La règle de classification, écrite en entier.** Modifiez-la (un seuil, une inégalité) : la "
                      "cellule suivante la compare à `das.classify_sentence` sur **toutes** les phrases du run."),
    new_code_cell(CHECK + """T = cfg.das.teacher_prob_threshold   # 0,6 : seuil de confiance
D = cfg.das.divergence_threshold     # 0,2 : écart minimal entre les deux modèles
EPS = das.THRESHOLD_TOLERANCE        # « strictement supérieur », à 1e-9 près

def ma_regle(p_t, p_s):
    if p_t > T + EPS and p_t - p_s > D + EPS:
        return "teacher"   # phrase professeur
    if p_s > T + EPS and p_s - p_t > D + EPS:
        return "student"   # phrase élève
    return "shared"        # phrase partagée : tout le reste

for p_t, p_s in [(0.9, 0.1), (0.1, 0.9), (0.2, 0.2), (0.9, 0.8)]:
    print(f"P_T = {p_t}, P_S = {p_s} -> {ma_regle(p_t, p_s)} ({teaching.TYPE_FR[ma_regle(p_t, p_s)]})")
"""),
    new_code_cell(CHECK + """all_records = records[1] + records[2]
check = teaching.check_rule(ma_regle, all_records, cfg.das)
print(f"{check['sentences']} phrases notées dans ce run (stages 1 et 2)")
print(f"même type que das.classify_sentence : {check['same_as_package']} / {check['sentences']}")
print(f"même type que celui enregistré par la phase DAS : {check['same_as_stored']} / {check['sentences']}")
assert check["same_as_package"] == check["sentences"], check["disagreements"][:5]
"""),
    new_markdown_cell("**Le ratio et la décision** pour cette réponse : la part de phrases professeur, comparée au "
                      "seuil de 0,3, recalculée ici à côté de la décision enregistrée."),
    new_code_cell(CHECK + "teaching.keep_decision(example, cfg.das)\n"),
    new_markdown_cell("**Et si on changeait les seuils ?** Nombre de réponses du stage 2 gardées pour d'autres "
                      "valeurs du seuil de ratio (les phrases gardent leur type), puis pour d'autres seuils de "
                      "confiance et d'écart (les phrases sont reclassées depuis $P_T$ et $P_S$, ratio 0,3)."),
    new_code_cell(CHECK + "teaching.kept_by_thresholds(records[2], cfg.das)\n"),
    new_code_cell(CHECK + "teaching.kept_grid(records[2], cfg.das)\n"),
    new_markdown_cell("**Distribution du ratio de phrases professeur**, exemples gardés et rejetés, avec le seuil "
                      "de 0,3 (figure analogue à celles du rapport du cours)."),
    new_code_cell("nb.show_figure(cfg, \"das_stage1.png\")\n"),
    new_code_cell("nb.show_figure(cfg, \"das_stage2.png\")\n"),
    new_markdown_cell("**$P_T$ contre $P_S$** pour toutes les phrases. Zone orange : les phrases professeur "
                      "($P_T > 0{,}6$ et $P_T - P_S > 0{,}2$) ; zone verte : les phrases élève (le cas symétrique) ; "
                      "tout le reste est partagé, y compris le nuage de phrases improbables pour les deux en bas à "
                      "gauche. Le décompte par type :"),
    new_code_cell(CHECK + """from collections import Counter
for stage in (1, 2):
    counts = Counter(s["type"] for s in teaching.scored_sentences(records[stage]))
    print(f"stage {stage} : " + ", ".join(f"{teaching.TYPE_FR[t]} {counts.get(t, 0)}" for t in das.SENTENCE_TYPES))
"""),
    new_code_cell("nb.show_figure(cfg, \"das_scatter.png\")\n"),
    new_markdown_cell("**Profil d'une réponse** phrase par phrase ($P_T$ et $P_S$ le long du texte, fond coloré "
                      "par type de phrase), comme la figure 5 du papier DASD."),
    new_code_cell("nb.show_figure(cfg, \"das_profile.png\")\n"),
]

# --------------------------------------------------------------------------- 04 SFT stage 1
NOTEBOOKS["04_sft_stage1.ipynb"] = header(
    "04 · SFT stage 1 : LoRA sur les réponses à basse température",
    """On adapte l'élève avec **LoRA** (Low-Rank Adaptation) : les poids du modèle restent gelés et
on n'entraîne que de petites matrices de rang 16 (alpha 32) ajoutées aux couches linéaires. C'est
ce qui rend l'entraînement d'un modèle de 4 milliards de paramètres possible sur un T4 de 16 Go.

Le **stage 1** (« burn-in ») utilise toutes les réponses à température 0,3 qui ont passé le filtre
de qualité (DAS ne les filtre pas, comme dans le cours) : taux d'apprentissage 2e-4, 3 époques, batch 2 × accumulation 4. La perte n'est
calculée que sur la réponse de l'assistant (le prompt système et la question sont masqués), avec
le même gabarit de conversation et le même prompt système que la génération et l'évaluation.

L'entraînement passe par `SFTTrainer` de TRL ; l'adaptateur, le journal de perte et un manifeste
(modèle de base, empreinte des données, configuration) sont écrits dans `sft/stage1/`. Une
réexécution avec les mêmes entrées réutilise l'adaptateur au lieu de réentraîner.""",
) + [
    new_code_cell("from dasd_utils import sft, teaching\nstage1 = sft.train_stage(cfg, 1, force=FORCE)\n"
                  "print(\"adaptateur relu dans sft/stage1 (mêmes entrées)\" if stage1.get(\"reused\") else \"adaptateur entraîné par cette exécution\")\n"),
    new_code_cell(CHECK + "nb.sft_table(stage1)\n"),
    new_code_cell("nb.loss_table(cfg, 1).tail()\n"),
    new_markdown_cell("### Ce que l'élève apprend : le masque de perte\n\n"
                      "Le premier exemple d'entraînement, tokenisé exactement comme pendant l'entraînement "
                      "(`sft.tokenize_sft_example`). Les tokens **supervisés** (label ≠ −100 : la perte porte sur "
                      "eux) sont entre ⟦ et ⟧ : la réponse du professeur et le token de fin de tour. Le prompt "
                      "système et la question ne sont jamais supervisés."),
    new_code_cell(CHECK + """mask = teaching.loss_mask_for_run(cfg, stage=1)
print(mask["text"])
print(f"\\n{mask['tokens']} tokens, dont {mask['supervised']} supervisés ({mask['prompt_tokens']} tokens de prompt masqués)")
print("texte supervisé = réponse du professeur + fin de tour :", mask["supervised_text"].startswith(mask["assistant_text"]))
"""),
    new_markdown_cell("### La configuration LoRA et TRL réellement utilisées\n\n"
                      "`sft.lora_config(cfg)` est le `LoraConfig` passé à PEFT. Chaque couche linéaire $W$ "
                      "($d_\\text{sortie} \\times d_\\text{entrée}$, gelée) reçoit deux matrices $A$ ($r \\times "
                      "d_\\text{entrée}$) et $B$ ($d_\\text{sortie} \\times r$) : $r\\,(d_\\text{entrée} + "
                      "d_\\text{sortie})$ paramètres entraînables. Le tableau refait ce compte couche par couche."),
    new_code_cell(CHECK + """lora = teaching.lora_for_run(cfg)
print(lora["fields"])
print(f"paramètres entraînables : {lora['trainable']:,} sur {lora['total']:,} ({100 * lora['trainable'] / lora['total']:.2f} %)".replace(",", " "))
print("somme du tableau = paramètres entraînables :", int(lora["table"]["paramètres"].sum()) == lora["trainable"])
print("= valeur du manifeste du stage 1 :", stage1.get("trainable_parameters") == lora["trainable"])
lora["table"]
"""),
    new_markdown_cell("Les réglages principaux du `SFTConfig` de TRL que `sft.train_stage` construit pour ce stage :"),
    new_code_cell(CHECK + "teaching.trl_config_for_run(cfg, 1)\n"),
]

# --------------------------------------------------------------------------- 05 SFT stage 2
NOTEBOOKS["05_sft_stage2.ipynb"] = header(
    "05 · SFT stage 2 : DASD sur les réponses à haute température filtrées par DAS",
    """Le **stage 2** repart de l'adaptateur du stage 1 (chargé comme entraînable, on ne repart pas
de zéro) et l'entraîne sur les réponses à température 0,9 **gardées par DAS**, avec un taux
d'apprentissage plus faible (1e-4). C'est l'apprentissage « programmé en température » du papier
DASD : d'abord les raisonnements les plus probables du professeur, puis une couverture plus large
de sa distribution, limitée aux exemples où l'élève a encore à apprendre.""",
) + [
    new_code_cell("from dasd_utils import sft, teaching\nstage2 = sft.train_stage(cfg, 2, force=FORCE)\n"
                  "print(\"adaptateur relu dans sft/stage2 (mêmes entrées)\" if stage2.get(\"reused\") else \"adaptateur entraîné par cette exécution\")\n"),
    new_code_cell(CHECK + "nb.sft_table(stage2)\n"),
    new_markdown_cell("**D'où part le stage 2, et ce qui change.** Les deux stages côte à côte, lus dans leurs "
                      "manifestes : le point de départ (le stage 2 charge l'adaptateur du stage 1, dont l'empreinte "
                      "est vérifiée), les données (réponses à haute température gardées par DAS) et le taux "
                      "d'apprentissage."),
    new_code_cell(CHECK + "teaching.stage_start_for_run(cfg)\n"),
    new_markdown_cell("Courbes de perte des deux stages (la perte d'entraînement n'est pas une mesure de "
                      "qualité : seule l'évaluation du notebook suivant l'est)."),
    new_code_cell("sft.plot_loss(cfg)\nnb.show_figure(cfg, \"sft_loss.png\")\n"),
]

# --------------------------------------------------------------------------- 06 evaluation
NOTEBOOKS["06_evaluation.ipynb"] = header(
    "06 · Évaluation : base, stage 1, stage 2",
    """On évalue trois modèles sur les mêmes questions de validation, avec le même prompt système et
le même gabarit de conversation que l'entraînement, en décodage glouton : l'élève de base, l'élève
après le stage 1, l'élève après le stage 2.

**Lire les statistiques honnêtement.** Sur 50 questions, une exactitude de 82 % a un intervalle
de confiance à 95 % (Wilson) d'environ ±11 points : deux modèles à 80 % et 84 % ne sont pas
distinguables. Pour comparer deux modèles sur les *mêmes* questions, on utilise le **test exact
de McNemar**, qui ne regarde que les questions où les deux modèles diffèrent (l'un juste, l'autre
faux). On mesure aussi le **respect du format** (`Final Answer: X`), et une seconde métrique sans
génération : l'exactitude par **log-vraisemblance** des lettres A-E (formulation de
lm-evaluation-harness).""",
) + [
    new_code_cell("from dasd_utils import evaluation\nmetrics = evaluation.run_phase(cfg, force=FORCE)\n"
                  "for name in metrics[\"model_order\"]:\n"
                  "    print(f\"{name} : {metrics['generated'][name]} réponses générées par cette exécution, {metrics['reused'][name]} relues dans le cache\")\n"),
    new_code_cell(CHECK + "evaluation.metrics_table(metrics)\n"),
    new_code_cell(CHECK + "evaluation.comparisons_table(metrics)\n"),
    new_markdown_cell("### Une question, de bout en bout\n\n"
                      "Le prompt (messages de chat), la réponse générée par l'élève après le stage 2, puis "
                      "`prompts.extract_answer` relancé sur cette réponse, comparé à la lettre enregistrée."),
    new_code_cell(CHECK + """from dasd_utils import data, teaching
question = data.load_run_questions(cfg, "eval")[0]
for message in teaching.question_messages(cfg, "eval", 0):
    print(f"--- {message['role']} ---\\n{message['content']}\\n")
predictions = teaching.predictions_for_run(cfg)
answer = next(p for p in predictions["stage2"] if p["question_id"] == question["id"])
print(f"=== réponse de stage2 ===\\n{answer['response']}\\n")
teaching.answer_check(answer)
"""),
    new_markdown_cell("**Les tableaux 2 × 2 derrière chaque test de McNemar.** Le test n'utilise que les deux cases "
                      "où les modèles diffèrent (l'un juste, l'autre faux) ; la p-valeur est recalculée ici et "
                      "comparée à celle de `metrics.json`."),
    new_code_cell(CHECK + "teaching.show_paired_tables(cfg)\n"),
    new_markdown_cell("**La log-vraisemblance répond-elle toujours la même lettre ?** Si oui, son exactitude n'est que "
                      "la part des questions dont c'est la bonne réponse : elle ne mesure rien d'autre."),
    new_code_cell(CHECK + """constant = teaching.always_same_letter(metrics)
for name, m in metrics["models"].items():
    print(f"{name} : lettres choisies {m.get('loglik_distribution')}"
          + (f" -> toujours {constant[name]}, exactitude {m['loglik_accuracy']:.2f} = part des questions dont la bonne réponse est {constant[name]}" if name in constant else ""))
"""),
    new_code_cell("nb.show_figure(cfg, \"eval_accuracy.png\")\n"),
    new_code_cell("nb.show_figure(cfg, \"eval_confusion.png\")\n"),
    new_markdown_cell("**Analyse qualitative** : la question du crabe (item 49, ou l'item choisi par "
                      "`eval.qualitative_index`), réponse de chaque modèle ; si ce run ne l'évalue pas, la "
                      "cellule le dit."),
    new_code_cell("nb.qualitative(cfg)\n"),
]

# --------------------------------------------------------------------------- 07 report
NOTEBOOKS["07_rapport.ipynb"] = header(
    "07 · Rapport",
    """Le rapport en français est construit **à partir des fichiers du run** (`metrics.json`,
résumés de chaque phase, figures) : aucun chiffre n'y est tapé à la main, sauf les trois
exactitudes publiées par le cours (`dasd_utils/course.py`, avec leur source). Il est rendu en
Markdown et en HTML autonome (figures intégrées).

Il suit le plan d'un rapport de cours : introduction, méthode, résultats (dont un tableau « ce projet /
rapport du cours » sur les mêmes 50 questions), analyse, limites, conclusion, références.""",
) + [
    new_code_cell("from dasd_utils import report\npaths = report.run_phase(cfg, force=True)\n"
                  "print(nb.relative(paths[\"markdown\"]))\nprint(nb.relative(paths[\"html\"]))\n"),
    new_markdown_cell("Le rapport HTML autonome (figures intégrées) s'affiche ci-dessous ; le lien l'ouvre "
                      "dans un nouvel onglet (sur Colab, il est aussi dans le dossier du run sur Drive)."),
    new_code_cell("nb.show_report(paths[\"html\"])\n"),
    new_markdown_cell("**Ce projet et le rapport du cours**, sur les mêmes 50 questions : le tableau de la section "
                      "3.1 du rapport (exactitudes publiées par le cours, avec leurs intervalles de Wilson)."),
    new_code_cell(CHECK + "nb.course_table(cfg)\n"),
]

# --------------------------------------------------------------------------- 08 analyses
NOTEBOOKS["08_analyses.ipynb"] = header(
    "08 · Le filtrage DAS aide-t-il ?",
    """Du stage 1 au stage 2, tout change à la fois : les données, la température, la quantité
d'entraînement et le filtre DAS. Pour isoler l'effet du **filtre**, on refait le stage 2 (même
adaptateur de stage 1, même recette) sur des ensembles de **même taille** tirés du **même pool**
de réponses à T = 0,9 retenues par le filtre de qualité (papier DASD, tableau 3) :

* **(a) DAS** : les exemples conservés par DAS, c'est le stage 2 du run (réutilisé, pas réentraîné) ;
* **(b) tirage aléatoire** : autant d'exemples tirés au hasard dans le pool (graine fixée, donc
  reproductible ; `analyses.random_seeds`) ;
* **(c) pool entier** (optionnel, `analyses.full_pool`, activé sur le profil `colab`) ;
* **(d) politique mixte** (papier, sections 5 et 6.4.2 ; `analyses.mixed_policy`) : l'élève
  distillé répond lui-même, le professeur termine ses réponses divergentes, et une époque de plus
  part de l'adaptateur du stage 2 (variante masquée en option : `analyses.mixed_masked` ; témoin
  entraîné la même époque sans les réponses mixtes : `analyses.mixed_control`, activé sur `colab`).

Chaque variante répond aux mêmes questions d'évaluation ; DAS est comparé à chaque autre par le
**test exact de McNemar** (p-valeurs corrigées de Holm). Puis la **provenance** des phrases du
modèle distillé (papier, section 4) : chaque phrase de ses réponses est notée par le professeur
(P_T), l'élève avant distillation (P_S) et l'élève distillé (P_D), puis classée *teacher*,
*boosted*, *shared* ou *student*.

Le tableau ci-dessous estime le temps que chaque analyse ajoute, à partir des durées mesurées
dans **ce** run (entraînement du stage 2, évaluation) : sur Colab, c'est du temps de GPU.""",
) + [
    new_code_cell("from dasd_utils import analyses\nanalyses.cost_table(cfg)\n"),
    new_code_cell("results = analyses.run_phase(cfg, force=FORCE)\n"),
    new_markdown_cell("Exactitude de chaque variante avec son intervalle de Wilson à 95 %, et comparaison "
                      "appariée avec DAS (questions réussies par un seul des deux modèles)."),
    new_code_cell("analyses.results_table(results)\n"),
    new_markdown_cell("Les ensembles d'entraînement : nombre d'exemples, part de phrases « professeur » "
                      "(le critère de DAS), longueurs."),
    new_code_cell("analyses.statistics_table(results)\n"),
    new_markdown_cell("Le verdict est choisi par les statistiques (significatif ou non, et dans quel sens), "
                      "jamais écrit d'avance."),
    new_code_cell("print(results[\"verdict\"])\nnb.show_figure(cfg, \"analyses_das_vs_random.png\")\n"),
    new_markdown_cell("**Provenance des phrases** du modèle distillé, selon leur position dans la réponse, "
                      "pour les réponses justes et fausses ; Δ est l'écart d'aire entre les deux courbes. Avec un "
                      "professeur par API, P_T vient des `prompt_logprobs` d'un serveur vLLM ; un fournisseur qui "
                      "ne les renvoie pas (OpenAI, Infomaniak…) arrête l'analyse, qui dit pourquoi."),
    new_code_cell("prov = results[\"provenance\"]\nif prov[\"available\"]:\n"
                  "    display(analyses.provenance_table(results))\n"
                  "    display(nb.show_figure(cfg, \"analyses_provenance.png\"))\n"
                  "else:\n    print(\"Provenance non calculée :\", prov[\"reason\"])\n"),
    new_markdown_cell("""**Distillation à politique mixte** (papier, sections 5 et 6.4.2). L'entraînement hors
politique n'apprend à l'élève que des textes du professeur ; à l'inférence, l'élève lit ses propres
phrases, et une erreur l'emmène là où il n'a jamais été guidé. Ici :

1. l'élève distillé (DAS) répond de nouveau aux questions d'entraînement du pool, chaque réponse
   limitée à 1,5 fois la longueur de celle du professeur (`analyses.mixed_length_cap`) ;
2. une réponse **diverge** si la limite l'a coupée, ou si sa réponse finale est fausse ou absente ;
3. elle est coupée à un mot tiré au hasard **au-delà du milieu** de son raisonnement (jamais dans
   sa conclusion), et le **professeur continue** ce texte : le professeur local lit son prompt suivi
   de ce début, un professeur par API le reçoit comme dernier message de l'assistant avec
   `continue_final_message` (vLLM) ; un serveur qui ne sait pas continuer est détecté par la
   première requête, et l'analyse s'arrête en disant pourquoi ;
4. la réponse jointe (début de l'élève + suite du professeur, exactement) passe le filtre de
   qualité, puis une époque d'entraînement part de l'adaptateur du stage 2, sur ces réponses
   mêlées aux exemples hors politique (ceux que DAS a conservés)."""),
    new_code_cell(CHECK + "analyses.mixed_policy_table(results)\n"),
    new_markdown_cell("Un exemple d'entraînement de ce run : entre ⟦ ⟧ la part écrite par l'élève (non supervisée "
                      "dans la variante masquée), puis la suite du professeur."),
    new_code_cell(CHECK + "analyses.show_mixed_example(cfg)\n"),
    new_markdown_cell("La variante à politique mixte a eu une époque de plus que DAS seul : le verdict la compare au "
                      "témoin (la même époque sur les seules données hors politique) quand il a été entraîné, et le "
                      "rappelle sinon."),
    new_code_cell("print(results[\"mixed_verdict\"] or \"Politique mixte non évaluée : \" + str(results[\"mixed_policy\"].get(\"reason\")))\n"),
    new_markdown_cell("Le rapport est reconstruit pour y ajouter la section « Le filtrage DAS aide-t-il ? »."),
    new_code_cell("from dasd_utils import report\npaths = report.run_phase(cfg, force=True)\n"
                  "print(nb.relative(paths[\"markdown\"]))\n"),
]


def build(names: list[str] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Write the notebooks (all, or those named) without outputs into ``out_dir`` (default notebooks/); returns their paths."""
    written = []
    out_dir = Path(out_dir) if out_dir is not None else NB_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        if names and name not in names:
            continue
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.metadata["colab"] = {"provenance": []}
        if name[:2] in GPU_NOTEBOOKS:
            # Colab reads "accelerator" + colab.gpuType; Kaggle reads its own "kaggle" block.
            nb.metadata["accelerator"] = "GPU"
            nb.metadata["colab"]["gpuType"] = "T4"
            nb.metadata["kaggle"] = {"accelerator": "nvidiaTeslaT4", "isGpuEnabled": True, "isInternetEnabled": True,
                                     "language": "python", "sourceType": "notebook"}
        else:
            nb.metadata["kaggle"] = {"accelerator": "none", "isGpuEnabled": False, "isInternetEnabled": True,
                                     "language": "python", "sourceType": "notebook"}
        path = out_dir / name
        nbformat.validate(nb)
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build(sys.argv[1:] or None):
        print(path.relative_to(ROOT))
