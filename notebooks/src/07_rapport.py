# Source of notebooks/07_rapport.ipynb (jupytext percent format). Edit here, then: make notebook NB=07

# %% [markdown]
# # 07 · Rapport
#
# Le rapport en français est construit **à partir des fichiers du run** (`metrics.json`,
# résumés de chaque phase, figures) : aucun chiffre n'y est tapé à la main, sauf les trois
# exactitudes publiées par le cours (`dasd_utils/course.py`, avec leur source). Il est rendu en
# Markdown et en HTML autonome (figures intégrées).
#
# Il suit le plan d'un rapport de cours : introduction, méthode, résultats (dont un tableau « ce projet /
# rapport du cours » sur les mêmes 50 questions), analyse, limites, conclusion, références.
#
# *Temps attendu : moins d'une minute (pas de GPU).*

# %% dasd_setup="report"

# %%
from dasd_utils import report
paths = report.run_phase(cfg, force=True)
print(nb.relative(paths["markdown"]))
print(nb.relative(paths["html"]))

# %% [markdown]
# Le rapport HTML autonome (figures intégrées) s'affiche ci-dessous ; le lien l'ouvre dans un nouvel onglet (sur Colab, il est aussi dans le dossier du run sur Drive).

# %%
nb.show_report(paths["html"])

# %% [markdown]
# **Ce projet et le rapport du cours**, sur les mêmes 50 questions : le tableau de la section 3.1 du rapport (exactitudes publiées par le cours, avec leurs intervalles de Wilson).

# %%
# NBVAL_CHECK_OUTPUT
nb.course_table(cfg)
