# Source of notebooks/06_evaluation.ipynb (jupytext percent format). Edit here, then: make notebook NB=06

# %% [markdown]
# # 06 · Évaluation : base, stage 1, stage 2
#
# On évalue trois modèles sur les mêmes questions de validation, avec le même prompt système et
# le même gabarit de conversation que l'entraînement, en décodage glouton : l'élève de base, l'élève
# après le stage 1, l'élève après le stage 2.
#
# **Lire les statistiques honnêtement.** Sur 50 questions, une exactitude de 82 % a un intervalle
# de confiance à 95 % (Wilson) d'environ ±11 points : deux modèles à 80 % et 84 % ne sont pas
# distinguables. Pour comparer deux modèles sur les *mêmes* questions, on utilise le **test exact
# de McNemar**, qui ne regarde que les questions où les deux modèles diffèrent (l'un juste, l'autre
# faux). On mesure aussi le **respect du format** (`Final Answer: X`), et une seconde métrique sans
# génération : l'exactitude par **log-vraisemblance** des lettres A-E (formulation de
# lm-evaluation-harness).
#
# **Lire la lettre : deux modes.** Le *mode strict* ne lit que la ligne `Final Answer: X` (une seule
# lettre) : c'est le respect du format. Le *mode tolérant*, celui de l'exactitude, lit aussi une
# conclusion sans cette ligne, comme « The correct answer is E » ou « Answer: E »
# (`prompts.extract_answer`). Un modèle de base qui n'écrit jamais la ligne peut donc avoir de bonnes
# réponses : la colonne « format respecté » le montre à côté de l'exactitude.
#
# *Temps attendu sur un T4 (profil `colab`, 50 questions, 3 modèles) : 15 à 30 min ;
# **estimation**, la vitesse d'un T4 n'a pas été mesurée (docs/performance.md).*

# %% dasd_setup="evaluate"

# %%
from dasd_utils import evaluation
metrics = evaluation.run_phase(cfg, force=FORCE)
for name in metrics["model_order"]:
    print(f"{name} : {metrics['generated'][name]} réponses générées par cette exécution, {metrics['reused'][name]} relues dans le cache")

# %%
# NBVAL_CHECK_OUTPUT
nb.french_table(evaluation.metrics_table(metrics))

# %%
# NBVAL_CHECK_OUTPUT
nb.french_table(evaluation.comparisons_table(metrics), digits=4)

# %% [markdown]
# ### Une question, de bout en bout
#
# Le prompt (messages de chat), la réponse générée par l'élève après le stage 2, puis `prompts.extract_answer` relancé sur cette réponse, comparé à la lettre enregistrée.

# %%
# NBVAL_CHECK_OUTPUT
from dasd_utils import data
from dasd_utils.notebook import examples
question = data.load_run_questions(cfg, "eval")[0]
for message in examples.question_messages(cfg, "eval", 0):
    print(f"--- {message['role']} ---\n{message['content']}\n")
predictions = examples.predictions_for_run(cfg)
answer = next(p for p in predictions["stage2"] if p["question_id"] == question["id"])
print(f"=== réponse de stage2 ===\n{answer['response']}\n")
nb.object_table({"valeur": examples.answer_check(answer)})

# %% [markdown]
# **Les tableaux 2 × 2 derrière chaque test de McNemar.** Le test n'utilise que les deux cases où les modèles diffèrent : $b$ questions où seul A est juste, $c$ où seul B l'est. Si les deux modèles se valent, chacune de ces $n = b + c$ questions discordantes penche d'un côté ou de l'autre à pile ou face ; la p-valeur exacte est la probabilité d'un partage au moins aussi déséquilibré, des deux côtés :
#
# $$p = \min\Big(1,\; 2\,P\big(\mathrm{Bin}(n, \tfrac12) \le k\big)\Big) = \min\Big(1,\; 2 \sum_{i=0}^{k} \binom{n}{i} \big/ 2^n\Big), \qquad k = \min(b, c).$$
#
# Par exemple $b = 1$, $c = 3$ : $p = 2\,P(\mathrm{Bin}(4, \tfrac12) \le 1) = 2 \times (1 + 4)/16 = 0{,}625$. Ci-dessous, la formule sur les tableaux de ce run ; la p-valeur est recalculée et comparée à celle de `metrics.json`.

# %%
# NBVAL_CHECK_OUTPUT
examples.show_paired_tables(cfg)

# %% [markdown]
# **La log-vraisemblance répond-elle toujours la même lettre ?** Si oui, son exactitude n'est que la part des questions dont c'est la bonne réponse : elle ne mesure rien d'autre.

# %%
# NBVAL_CHECK_OUTPUT
constant = examples.always_same_letter(metrics)
for name, m in metrics["models"].items():
    print(f"{name} : lettres choisies {m.get('loglik_distribution')}"
          + (f" -> toujours {constant[name]}, exactitude {m['loglik_accuracy']:.2f} = part des questions dont la bonne réponse est {constant[name]}" if name in constant else ""))

# %%
nb.show_figure(cfg, "eval_accuracy.png")

# %%
nb.show_figure(cfg, "eval_confusion.png")

# %% [markdown]
# **Analyse qualitative** : la question du crabe (item 49, ou l'item choisi par `eval.qualitative_index`), réponse de chaque modèle ; si ce run ne l'évalue pas, la cellule le dit.

# %%
nb.qualitative(cfg)
