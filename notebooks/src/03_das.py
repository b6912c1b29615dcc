# Source of notebooks/03_das.ipynb (jupytext percent format). Edit here, then: make notebook NB=03

# %% [markdown]
# # 03 · Divergence-Aware Sampling (DAS)
#
# Toutes les réponses du professeur n'apprennent pas autant à l'élève. DAS les compare
# **phrase par phrase** :
#
# * $P_T$ : probabilité de la phrase pour le professeur (moyenne géométrique des probabilités de
#   ses tokens, tirées des logprobs de l'API) ;
# * $P_S$ : la même chose pour l'élève, calculée par *teacher forcing* : on fait lire la réponse du
#   professeur à l'élève, dans le même contexte de conversation que pendant l'entraînement.
#
# Chaque phrase reçoit l'un de trois types (`das.classify_sentence`, seuils de `cfg.das`) :
#
# * **phrase professeur** : $P_T > 0{,}6$ et $P_T - P_S > 0{,}2$ ; le professeur est sûr de lui et
#   l'élève ne l'aurait pas écrite : c'est là que l'élève a le plus à apprendre ;
# * **phrase élève** : le cas symétrique, $P_S > 0{,}6$ et $P_S - P_T > 0{,}2$ ; l'élève est sûr d'une
#   phrase que le professeur n'aurait pas privilégiée ;
# * **phrase partagée** : *toutes les autres* ; les deux modèles sûrs, les deux incertains (une
#   phrase improbable pour les deux est donc « partagée »), ou des probabilités trop proches.
#
# « Supérieur » est strict : une valeur égale au seuil (à $10^{-9}$ près) ne le dépasse pas. Un
# exemple est gardé quand **plus de 30 %** de ses phrases sont des phrases professeur (son **taux de
# phrases professeur** est strictement supérieur à 0,3). Comme dans le cours, ce filtre ne sert qu'au stage 2 : le stage 1
# s'entraîne sur toutes les réponses qui passent le filtre de qualité (`das.filter_stage1`).
#
# *Temps attendu sur un T4 (profil `colab`) : environ 10 min, chargement de Qwen3-4B compris ;
# **estimation**, la vitesse d'un T4 n'a pas été mesurée (docs/performance.md).*
#
# **Alignement.** Le professeur (gpt-oss) et l'élève (Qwen3) n'ont pas le même tokenizer : on ne
# peut pas compter les tokens. Tout est aligné sur les **positions de caractères** dans le texte de
# la réponse : chaque phrase est un intervalle de caractères, chaque token (professeur ou élève) est
# rattaché aux phrases par ses positions. Une réponse dont les tokens ne reconstituent pas
# exactement le texte est **non notable** : écartée avec une raison comptée, jamais complétée par une
# valeur par défaut.

# %% dasd_setup="das"

# %%
from dasd_utils import das
from dasd_utils.notebook import examples
das_summary = das.run_phase(cfg, force=FORCE)
print("scores relus (mêmes entrées)" if das_summary.get("reused") else "réponses notées par cette exécution")

# %%
# NBVAL_CHECK_OUTPUT
nb.das_table(das_summary)

# %% [markdown]
# ### L'algorithme pas à pas, sur une réponse de ce run
#
# Voici la première réponse notée du stage 1, découpée en phrases, avec $P_T$, $P_S$ et le type que DAS a enregistré pour chacune.

# %%
# NBVAL_CHECK_OUTPUT
records = {stage: das.load_das_records(cfg, stage) for stage in (1, 2)}
example = next((r for r in records[1] if r["scorable"]), None)
if example is None:  # every stage-1 answer rejected or unscorable: nothing to show, nor to train on
    raise nb.NotebookStop("Aucune réponse du stage 1 n'a été notée par DAS : le filtre de qualité les a toutes "
                          "rejetées (leurs raisons sont dans le tableau du notebook 02). Changez les réglages en "
                          "cause (par exemple eval.max_new_tokens, sous lequel une réponse du professeur doit tenir) "
                          "et relancez les notebooks 02 et 03.")
nb.french_table(examples.sentence_table(example))

# %% [markdown]
# **La règle de classification, écrite en entier.** Modifiez-la (un seuil, une inégalité) : la cellule suivante la compare à `das.classify_sentence` sur **toutes** les phrases du run.

# %%
# NBVAL_CHECK_OUTPUT
T = cfg.das.teacher_prob_threshold   # 0,6 : seuil de confiance
D = cfg.das.divergence_threshold     # 0,2 : écart minimal entre les deux modèles
EPS = das.THRESHOLD_TOLERANCE        # « strictement supérieur », à 1e-9 près

def ma_regle(p_t, p_s):
    if p_t > T + EPS and p_t - p_s > D + EPS:
        return "teacher"   # phrase professeur
    if p_s > T + EPS and p_s - p_t > D + EPS:
        return "student"   # phrase élève
    return "shared"        # phrase partagée : tout le reste

for p_t, p_s in [(0.9, 0.1), (0.1, 0.9), (0.2, 0.2), (0.9, 0.8)]:
    print(f"P_T = {p_t}, P_S = {p_s} -> {ma_regle(p_t, p_s)} ({examples.TYPE_FR[ma_regle(p_t, p_s)]})")

# %%
# NBVAL_CHECK_OUTPUT
all_records = records[1] + records[2]
check = examples.check_rule(ma_regle, all_records, cfg.das)
print(f"{check['sentences']} phrases notées dans ce run (stages 1 et 2)")
print(f"même type que das.classify_sentence : {check['same_as_package']} / {check['sentences']}")
print(f"même type que celui enregistré par la phase DAS : {check['same_as_stored']} / {check['sentences']}")
assert check["same_as_package"] == check["sentences"], check["disagreements"][:5]

# %% [markdown]
# **Le taux et la décision** pour cette réponse : la part de phrases professeur, comparée au seuil de 0,3, recalculée ici à côté de la décision enregistrée.

# %%
# NBVAL_CHECK_OUTPUT
nb.object_table({"valeur": examples.keep_decision(example, cfg.das)})

# %% [markdown]
# ### Le poids de la ligne finale
#
# Pour DAS, la ligne `Final Answer: X` est une phrase comme les autres. Le professeur l'écrit avec
# certitude ($P_T$ proche de 1) ; l'élève de départ, qui ne connaît ni le format ni la bonne lettre,
# lui donne une probabilité faible : c'est presque toujours une **phrase professeur**, comme souvent
# la phrase qui l'annonce (« So the answer is C »). Dans une réponse courte (les trois à cinq phrases
# du professeur de substitution du profil `demo`), ces deux phrases font à elles seules la moitié du
# taux de phrases professeur, ou plus, et suffisent à passer le seuil de 0,3 : DAS garde alors les
# réponses qui **concluent** nettement, pas celles dont le raisonnement diverge de ce que l'élève
# écrirait. Dans les réponses de gpt-oss, longues de dizaines de phrases, la ligne finale pèse peu.
#
# Le tableau recalcule, pour chaque stage, le taux moyen de phrases professeur et le nombre de
# réponses gardées avec toutes les phrases (la règle du cours, celle du pipeline), sans la ligne
# finale, puis sans elle ni la conclusion ; et où sont les phrases professeur.

# %%
# NBVAL_CHECK_OUTPUT
examples.final_line_table(records, cfg.das)

# %% [markdown]
# **Et si on changeait les seuils ?** Nombre de réponses du stage 2 gardées pour d'autres valeurs du seuil de taux (les phrases gardent leur type), puis pour d'autres seuils de confiance et d'écart (les phrases sont reclassées depuis $P_T$ et $P_S$, seuil de taux 0,3).

# %%
# NBVAL_CHECK_OUTPUT
examples.kept_by_thresholds(records[2], cfg.das)

# %%
# NBVAL_CHECK_OUTPUT
examples.kept_grid(records[2], cfg.das)

# %% [markdown]
# **Distribution du taux de phrases professeur**, exemples gardés et rejetés, avec le seuil de 0,3 (figure analogue à celles du rapport du cours).

# %%
nb.show_figure(cfg, "das_stage1.png")

# %%
nb.show_figure(cfg, "das_stage2.png")

# %% [markdown]
# **$P_T$ contre $P_S$** pour toutes les phrases. Zone orange : les phrases professeur ($P_T > 0{,}6$ et $P_T - P_S > 0{,}2$) ; zone verte : les phrases élève (le cas symétrique) ; tout le reste est partagé, y compris le nuage de phrases improbables pour les deux en bas à gauche. Le décompte par type :

# %%
# NBVAL_CHECK_OUTPUT
from collections import Counter
for stage in (1, 2):
    counts = Counter(s["type"] for s in examples.scored_sentences(records[stage]))
    print(f"stage {stage} : " + ", ".join(f"{examples.TYPE_FR[t]} {counts.get(t, 0)}" for t in das.SENTENCE_TYPES))

# %%
nb.show_figure(cfg, "das_scatter.png")

# %% [markdown]
# **Profil d'une réponse** phrase par phrase ($P_T$ et $P_S$ le long du texte, fond coloré par type de phrase), comme la figure 5 de l'article DASD.

# %%
nb.show_figure(cfg, "das_profile.png")
