# Source of notebooks/04_sft_stage1.ipynb (jupytext percent format). Edit here, then: make notebook NB=04

# %% [markdown]
# # 04 · SFT stage 1 : LoRA sur les réponses à basse température
#
# On adapte l'élève avec **LoRA** (Low-Rank Adaptation) : les poids du modèle restent gelés et
# on n'entraîne que de petites matrices de rang 16 (alpha 32) ajoutées aux couches linéaires. C'est
# ce qui rend l'entraînement d'un modèle de 4 milliards de paramètres possible sur un T4 de 16 Go.
#
# Le **stage 1** (« burn-in ») utilise toutes les réponses à température 0,3 qui ont passé le filtre
# de qualité (DAS ne les filtre pas, comme dans le cours) : taux d'apprentissage 2e-4, 3 époques, batch 2 × accumulation 4
# (profil demo : un exemple par pas d'optimisation, car il n'a qu'une quinzaine d'exemples). La perte n'est
# calculée que sur la réponse de l'assistant (le prompt système et la question sont masqués), avec
# le même gabarit de conversation et le même prompt système que la génération et l'évaluation.
#
# L'entraînement passe par `SFTTrainer` de TRL ; l'adaptateur, le journal de perte et un manifeste
# (modèle de base, empreinte des données, configuration) sont écrits dans `sft/stage1/`. Une
# réexécution avec les mêmes entrées réutilise l'adaptateur au lieu de réentraîner.

# %% dasd_setup="train"

# %%
from dasd_utils import sft
from dasd_utils.notebook import examples
stage1 = sft.train_stage(cfg, 1, force=FORCE)
print("adaptateur relu dans sft/stage1 (mêmes entrées)" if stage1.get("reused") else "adaptateur entraîné par cette exécution")

# %% [markdown]
# **L'entraînement a-t-il appris ?** Le tableau compte les pas d'optimisation faits à un taux
# d'apprentissage non nul (un échauffement linéaire part de 0 : son premier pas n'apprend rien) et
# mesure le déplacement de l'adaptateur : la norme de la différence entre ses poids après et avant
# l'entraînement, rapportée à celle des poids de départ. Un stage qui ferait moins de
# `sft.min_learning_steps` pas utiles s'arrête avant d'entraîner, en disant quels réglages changer
# (batch, accumulation, époques, échauffement).

# %%
# NBVAL_CHECK_OUTPUT
nb.sft_table(stage1)

# %%
nb.loss_table(cfg, 1).tail()

# %% [markdown]
# ### Ce que l'élève apprend : le masque de perte
#
# Le premier exemple d'entraînement, tokenisé exactement comme pendant l'entraînement (`sft.tokenize_sft_example`). Les tokens **supervisés** (label ≠ −100 : la perte porte sur eux) sont entre ⟦ et ⟧ : la réponse du professeur et le token de fin de tour. Le prompt système et la question ne sont jamais supervisés.

# %%
# NBVAL_CHECK_OUTPUT
mask = examples.loss_mask_for_run(cfg, stage=1)
print(mask["text"])
print(f"\n{mask['tokens']} tokens, dont {mask['supervised']} supervisés ({mask['prompt_tokens']} tokens de prompt masqués)")
print("texte supervisé = réponse du professeur + fin de tour :", mask["supervised_text"].startswith(mask["assistant_text"]))

# %% [markdown]
# ### La configuration LoRA et TRL réellement utilisées
#
# `sft.lora_config(cfg)` est le `LoraConfig` passé à PEFT. Chaque couche linéaire $W$ ($d_\text{sortie} \times d_\text{entrée}$, gelée) reçoit deux matrices $A$ ($r \times d_\text{entrée}$) et $B$ ($d_\text{sortie} \times r$) : $r\,(d_\text{entrée} + d_\text{sortie})$ paramètres entraînables. Le tableau refait ce compte couche par couche.

# %%
# NBVAL_CHECK_OUTPUT
lora = examples.lora_for_run(cfg)
print(lora["fields"])
print(f"paramètres entraînables : {lora['trainable']:,} sur {lora['total']:,} ({100 * lora['trainable'] / lora['total']:.2f} %)".replace(",", " "))
print("somme du tableau = paramètres entraînables :", int(lora["table"]["paramètres"].sum()) == lora["trainable"])
print("= valeur du manifeste du stage 1 :", stage1.get("trainable_parameters") == lora["trainable"])
lora["table"]

# %% [markdown]
# Les réglages principaux du `SFTConfig` de TRL que `sft.train_stage` construit pour ce stage :

# %%
# NBVAL_CHECK_OUTPUT
examples.trl_config_for_run(cfg, 1)
