# Source of notebooks/05_sft_stage2.ipynb (jupytext percent format). Edit here, then: make notebook NB=05

# %% [markdown]
# # 05 · SFT stage 2 : DASD sur les réponses à haute température filtrées par DAS
#
# Le **stage 2** repart de l'adaptateur du stage 1 (chargé comme entraînable, on ne repart pas
# de zéro) et l'entraîne sur les réponses à température 0,9 **gardées par DAS**, avec un taux
# d'apprentissage plus faible (1e-4). C'est l'apprentissage « programmé en température » de l'article
# DASD : d'abord les raisonnements les plus probables du professeur, puis une couverture plus large
# de sa distribution, limitée aux exemples où l'élève a encore à apprendre.
#
# *Temps attendu sur un T4 (profil `colab`) : 15 à 45 min (les réponses gardées par DAS, 3 époques) ;
# **estimation**, la vitesse d'un T4 n'a pas été mesurée (docs/performance.md).*

# %% dasd_setup="train"

# %%
from dasd_utils import sft
from dasd_utils.notebook import examples
stage2 = sft.train_stage(cfg, 2, force=FORCE)
print("adaptateur relu dans sft/stage2 (mêmes entrées)" if stage2.get("reused") else "adaptateur entraîné par cette exécution")

# %% [markdown]
# Le stage 2 a peu d'exemples (ceux que DAS a gardés) : le tableau dit combien de pas ont appris et
# de combien l'adaptateur s'est éloigné de celui du stage 1. Un stage 2 qui n'aurait pas bougé
# serait le stage 1 lui-même, et toute comparaison entre les deux comparerait un modèle à lui-même.

# %%
# NBVAL_CHECK_OUTPUT
nb.sft_table(stage2)

# %% [markdown]
# **D'où part le stage 2, et ce qui change.** Les deux stages côte à côte, lus dans leurs manifestes : le point de départ (le stage 2 charge l'adaptateur du stage 1, dont l'empreinte est vérifiée), les données (réponses à haute température gardées par DAS) et le taux d'apprentissage.

# %%
# NBVAL_CHECK_OUTPUT
examples.stage_start_for_run(cfg)

# %% [markdown]
# Courbes de perte des deux stages (la perte d'entraînement n'est pas une mesure de qualité : seule l'évaluation du notebook suivant l'est).

# %%
sft.plot_loss(cfg)
nb.show_figure(cfg, "sft_loss.png")
