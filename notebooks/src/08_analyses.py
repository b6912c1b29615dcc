# Source of notebooks/08_analyses.ipynb (jupytext percent format). Edit here, then: make notebook NB=08

# %% [markdown]
# # 08 · Le filtrage DAS aide-t-il ?
#
# Du stage 1 au stage 2, tout change à la fois : les données, la température, la quantité
# d'entraînement et le filtre DAS. Pour isoler l'effet du **filtre**, on refait le stage 2 (même
# adaptateur de stage 1, même recette) sur des ensembles de **même taille** tirés du **même pool**
# de réponses à T = 0,9 gardées par le filtre de qualité (article DASD, tableau 3) :
#
# * **(a) DAS** : les exemples gardés par DAS, c'est le stage 2 du run (réutilisé, pas réentraîné) ;
# * **(b) tirage aléatoire** : autant d'exemples tirés au hasard dans le pool (graine fixée, donc
#   reproductible ; `analyses.random_seeds`, une graine sur les profils `demo` et `colab`) ;
# * **(c) pool entier** (optionnel, `analyses.full_pool` : le plan étendu ci-dessous, ou le profil `full`) ;
# * **(d) politique mixte** (article, sections 5 et 6.4.2 ; `analyses.mixed_policy`) : l'élève
#   distillé répond lui-même, le professeur termine ses réponses divergentes, et une époque de plus
#   part de l'adaptateur du stage 2 (variante masquée en option : `analyses.mixed_masked` ; témoin
#   entraîné la même époque sans les réponses mixtes : `analyses.mixed_control`, activé sur `colab`).
#
# Chaque variante répond aux mêmes questions d'évaluation. **Une question, une famille de tests** :
# « DAS fait-il mieux qu'un tirage aléatoire ? » a **un seul test prévu**, DAS contre les tirages
# aléatoires réunis (toutes les graines ensemble, test exact apparié ; c'est le test exact de
# McNemar quand il n'y a qu'une graine) ; la politique mixte a le sien, contre son témoin ; toutes
# les autres p-valeurs (chaque graine seule, pool entier, variantes mixtes contre DAS) sont
# **descriptives**. Ainsi le verdict ne dépend ni du nombre de variantes entraînées, ni d'une graine
# isolée. Puis la **provenance** des phrases du modèle distillé (article, section 4) : chaque phrase
# de ses réponses est notée par le professeur (P_T), l'élève avant distillation (P_S) et l'élève
# distillé (P_D), puis classée *professeur*, *renforcée*, *partagée*, *élève* ou *autre* (définitions plus bas).
#
# Le tableau ci-dessous estime le temps que chaque analyse ajoute, à partir des durées mesurées
# dans **ce** run (entraînement du stage 2, évaluation) : sur Colab, c'est du temps de GPU.
#
# *Temps attendu sur un T4 (profil `colab`, **estimation** : la vitesse d'un T4 n'a pas été mesurée,
# seulement celle d'un H200 ; voir docs/performance.md) : environ 1 à 2,5 h pour le plan par défaut
# (une graine aléatoire, la politique mixte et son témoin, la provenance), dont 15 à 40 min pour que
# l'élève distillé réponde à toutes les questions du pool. Le plan étendu ajoute 1 à 3 h. Une
# déconnexion ne perd que l'étape en cours : chaque variante entraînée est gardée sur Drive.*

# %% dasd_setup="analyses"

# %%
from dasd_utils import analyses
analyses.cost_table(cfg)

# %% [markdown]
# **Quel plan ?** Le plan par défaut (profils `demo` et `colab`) tient dans une session T4 : une
# graine aléatoire, sans le pool entier. Le plan étendu de l’article (trois graines aléatoires et le
# pool entier, soit trois entraînements et trois évaluations de plus) se choisit ici, après avoir lu
# son coût estimé à partir des durées de ce run. Avant tout calcul sur GPU, le professeur est
# interrogé une fois pour chaque analyse qui a besoin de lui (continuer une réponse, noter un texte
# donné) : s'il ne sait pas le faire, l'analyse est sautée avec sa raison, sans avoir rien coûté.

# %%
PLAN_ETENDU = False  # True : 3 graines aléatoires et le pool entier (coût estimé ci-dessous, en heures de GPU sur Colab)
analyses.plan_costs(cfg)

# %%
plan = analyses.larger_plan(cfg) if PLAN_ETENDU else cfg
results = analyses.run_phase(plan, force=FORCE)

# %% [markdown]
# Exactitude de chaque variante avec son intervalle de Wilson à 95 %, et comparaison appariée avec DAS (questions réussies par un seul des deux modèles).

# %%
# NBVAL_CHECK_OUTPUT
analyses.results_table(results)

# %% [markdown]
# Les **tests prévus**, chacun seul dans sa famille (pas de correction à faire) : l'écart
# d'exactitude, la p-valeur exacte, et s'il est significatif au seuil de 5 %.

# %%
analyses.tests_table(results)

# %% [markdown]
# Les ensembles d'entraînement : nombre d'exemples, taux de phrases professeur (le critère de DAS, avec et sans la ligne de réponse finale), longueurs.

# %%
# NBVAL_CHECK_OUTPUT
analyses.statistics_table(results)

# %% [markdown]
# **Chaque variante a-t-elle vraiment appris ?** Une variante qui n'aurait fait aucun pas
# d'optimisation à taux d'apprentissage non nul serait son propre parent (l'adaptateur du stage 1,
# ou celui du stage 2 pour la politique mixte) : la comparer à DAS comparerait un modèle à lui-même.
# L'entraînement s'arrête avec une erreur dans ce cas (`sft.min_learning_steps`) ; le tableau donne
# les pas qui ont appris et le déplacement de l'adaptateur par rapport à son parent.

# %%
# NBVAL_CHECK_OUTPUT
analyses.training_table(results)

# %% [markdown]
# Le verdict est choisi par les statistiques (significatif ou non, et dans quel sens), jamais écrit d'avance.

# %%
print(results["verdict"])
nb.show_figure(cfg, "analyses_das_vs_random.png")

# %% [markdown]
# **Provenance des phrases** du modèle distillé. Les règles, lecture de l'article **propre à ce
# projet** (seuils τ = 0,6 et δ = 0,2 de DAS ; « proches » : écart d'au plus δ), appliquées dans
# cet ordre :
#
# | provenance | règle |
# | --- | --- |
# | *professeur* | P_T > τ et P_T − P_S > δ (la règle de DAS) |
# | *élève* | P_S > τ et P_S − P_T > δ |
# | *renforcée* | P_T et P_S proches, P_D > τ et P_D − max(P_T, P_S) > δ : l'entraînement l'a rendue probable |
# | *partagée* | les trois proches (plus grand moins plus petit ≤ δ) |
# | *autre* | ce qu'aucune règle ne décrit (P_T et P_S éloignés sans que l'un dépasse τ, P_D loin des deux…) : compté, jamais rangé dans *partagée* |
#
# **D'où vient P_T.** Il doit être lu comme DAS l'a lu, et jamais à partir de l'issue de la
# réponse :
#
# * professeur **local** (la démo) : teacher forcing dans son prompt, **sans l'indice** de la bonne
#   réponse avec lequel le professeur de substitution a généré (sinon P_T lirait justement ce que Δ
#   compare, juste ou faux) ;
# * **gpt-oss** servi par vLLM : l'API de conversation range toute réponse donnée dans un canal final
#   sans analyse avant, ce que gpt-oss n'écrit jamais. La route **harmony** envoie un prompt brut sur
#   `/v1/completions`, rendu comme vLLM a rendu les requêtes du professeur (vérifié auprès du
#   serveur) : avec `teacher.reasoning_source=analysis` le raisonnement de la réponse dans le canal
#   d'analyse, comme DAS ; sinon la réponse dans le canal final, après l'analyse que le professeur
#   écrit lui-même pour cette question ;
# * autre modèle servi par vLLM : les `prompt_logprobs` de la réponse en dernier message de l'assistant.
#
# Un fournisseur qui ne donne pas les probabilités d'un texte donné (OpenAI, Infomaniak…) arrête
# l'analyse, qui dit pourquoi. Les parts sont données par position relative (5 tranches) et par rang
# absolu (les 8 premières phrases, comme l'article), avec et sans la phrase « Final Answer » (sa place
# est fixe et tous les modèles la prédisent bien) ; Δ est l'écart d'aire entre réponses justes et
# fausses, descriptif.

# %%
# NBVAL_CHECK_OUTPUT
prov = results["provenance"]
if prov["available"]:
    display(analyses.provenance_table(results))
    display(nb.show_figure(cfg, "analyses_provenance.png"))
else:
    print("Provenance non calculée :", prov["reason"])

# %% [markdown]
# **Distillation à politique mixte** (article, sections 5 et 6.4.2). L'entraînement hors
# politique n'apprend à l'élève que des textes du professeur ; à l'inférence, l'élève lit ses propres
# phrases, et une erreur l'emmène là où il n'a jamais été guidé. Ici :
#
# 1. l'élève distillé (DAS) répond de nouveau aux questions d'entraînement du pool, chaque réponse
#    limitée à 1,5 fois la longueur de celle du professeur (`analyses.mixed_length_cap`) ;
# 2. une réponse **diverge** si la limite l'a coupée, ou si sa réponse finale est fausse ou absente ;
# 3. elle est coupée à un mot tiré au hasard **au-delà du milieu** de son raisonnement (jamais dans
#    sa conclusion), et le **professeur continue** ce texte : le professeur local lit son prompt suivi
#    de ce début ; gpt-oss (route harmony, `/v1/completions`) le reçoit ouvert dans le canal que la
#    cible d'entraînement utilise (l'analyse avec `teacher.reasoning_source=analysis`, sinon le canal
#    final après l'analyse qu'il avait écrite pour cette question) ; un modèle à gabarit de
#    conversation le reçoit en dernier message de l'assistant avec `continue_final_message` (vLLM).
#    Une suite revenue comme un **nouveau tour** (le professeur recommence sa réponse au lieu de
#    continuer) n'est jamais entraînée, et elle est comptée ; un serveur qui ne sait pas continuer est
#    détecté par la première requête, et l'analyse s'arrête en disant pourquoi ;
# 4. la réponse jointe (début de l'élève + suite du professeur, exactement) passe le filtre de
#    qualité (répétitions, discours sur le format, longueur en tokens de l'élève), puis une époque
#    d'entraînement part de l'adaptateur du stage 2, sur ces réponses mêlées aux exemples hors
#    politique (ceux que DAS a gardés).
#
# **Écarts à l'article**, assumés et dits : la divergence compte aussi les réponses complètes mais
# fausses ou sans réponse (l'article : coupées par la limite seulement ; ce sous-ensemble fidèle à
# l'article est compté à part dans le tableau) ; l'élève répond de façon gloutonne, comme à
# l'évaluation ; tout le pool est repris, y compris les questions dont l'exemple hors politique est
# déjà dans l'entraînement ; et la variante a une époque de plus que DAS seul (seul le témoin isole
# l'effet des réponses mixtes).

# %%
# NBVAL_CHECK_OUTPUT
analyses.mixed_policy_table(results)

# %% [markdown]
# Un exemple d'entraînement de ce run : entre ⟦ ⟧ la part écrite par l'élève (non supervisée dans la variante masquée), puis la suite du professeur.

# %%
# NBVAL_CHECK_OUTPUT
analyses.show_mixed_example(cfg)

# %% [markdown]
# La variante à politique mixte a eu une époque de plus que DAS seul : le verdict la compare au témoin (la même époque sur les seules données hors politique) quand il a été entraîné, et le rappelle sinon.

# %%
print(results["mixed_verdict"] or "Politique mixte non évaluée : " + str(results["mixed_policy"].get("reason")))

# %% [markdown]
# Le rapport est reconstruit pour y ajouter la section « Le filtrage DAS aide-t-il ? ».

# %%
from dasd_utils import report
paths = report.run_phase(cfg, force=True)
print(nb.relative(paths["markdown"]))
