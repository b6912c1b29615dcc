# Source of notebooks/01_donnees.ipynb (jupytext percent format). Edit here, then: make notebook NB=01

# %% [markdown]
# # 01 · Données : CommonsenseQA
#
# Ce notebook prépare les questions utilisées par tout le pipeline DASD (Distribution-Aligned
# Sequence Distillation).
#
# **CommonsenseQA** est un QCM de sens commun : une question, cinq options A-E, une seule bonne
# réponse (`answerKey`). Le professeur (un grand modèle) rédigera pour chaque question d'entraînement
# un raisonnement pas à pas ; l'élève (un petit modèle) apprendra à reproduire ce raisonnement.
#
# * Profil `colab` / `full` : questions d'entraînement tirées du split *train* du Hub
#   (`tau/commonsense_qa`), évaluation sur les questions 0 à 49 de *validation* (`data.n_eval=-1`
#   pour les 1 221). Le rapport du cours dit seulement « un sous-ensemble de validation (50
#   exemples) » ; que ce soient les 50 premières est une déduction : sa question du crabe est la
#   question de validation 49.
# * Profil `demo` (hors ligne) : seul le split de validation est livré avec le projet (licence MIT).
#   On entraîne sur les items 50 et suivants et on évalue sur les items 0-49 : les deux ensembles
#   ne se recouvrent jamais (le code le vérifie).
#
# Chaque ligne est validée : une question manquante, un nombre d'options différent de cinq ou une
# `answerKey` absente des labels lèvent une erreur qui nomme la ligne et le champ.
#
# **Un run se règle ici, une seule fois.** Sur Colab ou Kaggle, remplissez le formulaire ci-dessous :
# l'adresse de votre copie du dépôt, et celles du professeur (profil `colab`). Elles sont enregistrées
# avec le run (sur Google Drive, ou dans la sortie du notebook sur Kaggle) : les notebooks 02 à 08
# les relisent et n'ont besoin d'aucun réglage. La clé d'API ne se met jamais ici : c'est un secret
# (Colab : panneau « Secrets », icône de clé ; Kaggle : Add-ons → Secrets), nommé `OPENAI_API_KEY`.
#
# *Temps attendu : moins d'une minute (pas de GPU).*

# %%
# @title Réglages du run (une seule fois, ici) { display-mode: "form" }
REPO_URL = "https://github.com/OWNER/dasd-course.git"  # @param {type:"string"}
TEACHER_URL = ""  # @param {type:"string"}
TEACHER_MODEL = "openai/gpt-oss-120b"  # @param {type:"string"}
# REPO_URL : votre fork (Colab / Kaggle clonent ce dépôt). TEACHER_URL : l'API du professeur, par exemple
# https://api.infomaniak.com/2/ai/<product_id>/openai/v1 (Infomaniak) ou http://<hôte>:8000/v1 (vLLM).
# Le profil demo (local ou PROFILE = "demo") n'utilise ni TEACHER_URL ni TEACHER_MODEL : son professeur est local.

# %% dasd_setup="data"

# %% [markdown]
# **Glossaire.** Un terme par notion, le même dans les notebooks et le rapport (`docs/glossaire.md`).
#
# | terme | sens | à ne pas écrire |
# | :--- | :--- | :--- |
# | professeur | le grand modèle qui rédige les raisonnements (`openai/gpt-oss-120b` dans le cours) | teacher, enseignant |
# | élève | le petit modèle qu'on entraîne (`Qwen3-4B-Instruct-2507` dans le cours) | student, étudiant |
# | modèle distillé | l'élève après les deux stages (base + adaptateur du stage 2) | |
# | stage 1, stage 2 | les deux entraînements successifs de DASD et leurs jeux de données : stage 1 à température 0,3, stage 2 à 0,9 filtré par DAS (le mot du cours, des fichiers et du code) | étape, phase |
# | phase | une partie de la chaîne, un notebook : données, génération, DAS, SFT, évaluation, analyses, rapport | stage |
# | gardée | une réponse du professeur qui passe le filtre de qualité (au plus une par question) ; un exemple que DAS garde | conservée, retenue |
# | notée / non notable | une réponse dont DAS a calculé P_T et P_S phrase par phrase / qu'il a dû écarter (tokens qui ne reconstituent pas le texte, pas de logprobs…) | évaluée, non évaluable (l'évaluation est la phase du notebook 06) |
# | token | l'unité de texte d'un tokenizer | jeton |
# | P_T, P_S, P_D | probabilité d'une phrase (moyenne géométrique des probabilités de ses tokens) pour le professeur, l'élève de départ, le modèle distillé | |
# | phrase professeur / élève / partagée | P_T > 0,6 et P_T − P_S > 0,2 / le cas symétrique / toutes les autres | phrase teacher, student, shared |
# | taux de phrases professeur | part des phrases professeur d'une réponse ; DAS garde la réponse au-dessus de 0,3 | ratio, part de phrases « professeur » |
# | provenance | d'où vient une phrase du modèle distillé : professeur, élève, partagée, ou renforcée (ni P_T ni P_S ne la favorisaient, P_D si) | teacher, student, shared, boosted |
# | exactitude | part des bonnes réponses (lettre lue en mode tolérant) | accuracy, précision |
# | respect du format | part des réponses avec une unique ligne `Final Answer: X` (mode strict) | |
# | mode strict / mode tolérant | lecture de la lettre : la ligne `Final Answer` seule / aussi « The answer is C », « Answer: C » | |
# | intervalle de Wilson | intervalle de confiance à 95 % d'une exactitude | |
# | test de McNemar | test exact apparié de deux modèles sur les mêmes questions, à partir des questions que l'un seul réussit | |
# | article | l'article DASD (arXiv 2601.09088) | papier |
# | rapport du cours | le rapport TP4 que ce projet refait | |
# | profil `demo` | petits modèles de substitution (SmolLM2-135M joue le professeur et l'élève) sur CPU : des chiffres qui vérifient la chaîne, pas des résultats | |

# %%
from dasd_utils import data
summary = data.run_phase(cfg)

# %% [markdown]
# **Le professeur répond-il ?** Avec un professeur par API (profil `colab`), la première requête du
# run part seule, maintenant : l'adresse, le modèle et la clé sont vérifiés, et la réponse doit
# porter les log-probabilités dont DAS a besoin. En cas de problème, la cellule dit en français quoi
# corriger. La réponse est gardée : le notebook 02 ne la redemandera pas.

# %%
nb.check_teacher(cfg)

# %% [markdown]
# Combien de questions, et quelle répartition des bonnes réponses ? Une répartition déséquilibrée rendrait trompeuse une exactitude proche du hasard (20 %).

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd
counts = pd.DataFrame({"entraînement": summary["train_answer_counts"], "évaluation": summary["eval_answer_counts"]})
print(f"{summary['n_train']} questions d'entraînement (items {summary['train_indices']}), "
      f"{summary['n_eval']} d'évaluation (items {summary['eval_indices']})")
counts.T

# %% [markdown]
# Voici le message exact que verront le professeur et l'élève pour la question du crabe (item 49 de validation), celle de l'analyse qualitative du rapport du cours (`eval.qualitative_index` en choisit une autre ; si ce run ne l'évalue pas, la cellule le dit).

# %%
# NBVAL_CHECK_OUTPUT
nb.show_featured_prompt(cfg)

# %% [markdown]
# Une question d'entraînement telle qu'elle est stockée (`data/train.jsonl`), puis les messages de chat que le professeur en reçoit : un message système et un message utilisateur.

# %%
# NBVAL_CHECK_OUTPUT
from dasd_utils.notebook import examples
question = data.load_run_questions(cfg, "train")[0]
print({k: question[k] for k in ("index", "question", "choices", "answerKey")})
for message in examples.question_messages(cfg, "train", 0):
    print(f"--- {message['role']} ---\n{message['content']}")
