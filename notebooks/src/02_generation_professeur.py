# Source of notebooks/02_generation_professeur.ipynb (jupytext percent format). Edit here, then: make notebook NB=02

# %% [markdown]
# # 02 · Génération par le professeur (avec logprobs)
#
# Le professeur répond à chaque question d'entraînement **deux fois** :
#
# * **Stage 1, température 0,3** : des réponses sûres et régulières, pour que l'élève apprenne
#   d'abord le format (`<reasoning>…</reasoning>` puis `Final Answer: X`) et les raisonnements les
#   plus probables du professeur ;
# * **Stage 2, température 0,9** : des réponses plus variées qui couvrent davantage de la
#   distribution du professeur. L'article DASD montre qu'apprendre d'abord à basse température puis
#   à haute température stabilise l'entraînement et améliore la généralisation.
#
# Pour chaque réponse, l'API renvoie la **log-probabilité de chaque token** (`logprobs=True`) : c'est
# la confiance du professeur, dont la phase DAS a besoin phrase par phrase.
#
# Un **filtre de qualité** écarte, avec une raison : les réponses vides ou de moins de 30
# caractères, sans réponse finale claire, fausses (le cours ne vérifiait pas ce point), répétitives
# (n-grammes répétés, comme l'article) ou plus longues que le contexte de l'élève.
#
# Les appels sont **mis en cache** : chaque requête est écrite sur disque dès son arrivée ; une
# réexécution ne renvoie rien à l'API (les appels coûtent de l'argent). La clé d'API vient de
# l'environnement (`OPENAI_API_KEY`), d'un fichier `.env` ou des secrets Colab ; elle n'est jamais
# écrite nulle part.
#
# *Profil demo : le « professeur » est SmolLM2-135M-Instruct exécuté localement, un simple
# substitut (exemples résolus en contexte et bonne réponse donnée en indice, comme dans STaR). Ses
# réponses n'ont rien de la qualité de gpt-oss-120b.*
#
# *Temps attendu (profil `colab`) : 10 à 30 min pour 1 100 requêtes, selon le fournisseur ; pas de
# GPU (estimation). L'adresse du professeur et la clé ont été vérifiées par le notebook 01.*

# %% dasd_setup="generate"

# %%
from dasd_utils import teacher
teacher_summary = teacher.run_phase(cfg, force=FORCE)
for key, s in teacher_summary["stages"].items():
    print(f"{key} : {s.get('sent', 0)} requêtes envoyées par cette exécution, {s.get('reused', 0)} relues dans le cache")

# %% [markdown]
# Bilan par stage : requêtes envoyées, échecs, rejets par raison, exemples gardés, exactitude du professeur et confiance moyenne (moyenne des probabilités de token).

# %%
# NBVAL_CHECK_OUTPUT
nb.teacher_table(teacher_summary)

# %%
nb.show_figure(cfg, "teacher_quality.png")

# %% [markdown]
# **Une requête et sa réponse.** Voici les messages exacts envoyés au professeur pour la première question du stage 1 (sur le profil demo : deux exemples résolus, puis la question avec la bonne réponse en indice), puis le texte qu'il a renvoyé.

# %%
# NBVAL_CHECK_OUTPUT
from dasd_utils.notebook import examples
records = teacher.load_records(cfg, 1)
request = records[0]
for message in request["messages"]:
    print(f"--- {message['role']} ---\n{message['content']}\n")
print(f"=== réponse (température {request['temperature']}, {len(request['tokens'] or [])} tokens) ===\n{request['content']}")

# %% [markdown]
# Ses premiers tokens et leur probabilité $p = e^{\text{logprob}}$ : c'est la confiance du professeur que DAS utilisera (première réponse gardée du stage 1).

# %%
# NBVAL_CHECK_OUTPUT
nb.teacher_example(cfg, stage=1)

# %% [markdown]
# **Les verdicts du filtre de qualité**, réponse par réponse, avec leur raison. Une question peut avoir plusieurs tirages : le premier qui passe le filtre est gardé.

# %%
# NBVAL_CHECK_OUTPUT
verdicts = examples.quality_verdicts(records)
print(verdicts["verdict"].value_counts().to_string(), "\n")
verdicts[verdicts["verdict"] != "gardée"]

# %% [markdown]
# **Ce qu'a coûté la phase** : requêtes et tokens par stage, et ce que cette exécution a envoyé ou relu dans le cache (une réexécution n'envoie rien).

# %%
timing = examples.phase_time(cfg, "generate")
if timing["computed_wall_s"] is not None:
    print(f"génération (les deux stages) : {timing['computed_wall_s'] / 60:.1f} min lors de son calcul"
          + (" ; cette exécution n'a fait que relire le cache" if timing["last_reused"] else ""))
examples.teacher_cost(teacher_summary)
