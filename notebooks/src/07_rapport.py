# Source of notebooks/07_rapport.ipynb (jupytext percent format). Edit here, then: make notebook NB=07

# %% [markdown]
# # 07 · Rapport
#
# Le rapport en français est construit **à partir des fichiers du run** (`metrics.json`,
# résumés de chaque phase, figures) : aucun chiffre n'y est tapé à la main, sauf les trois
# exactitudes publiées par le cours (`dasd_utils/report/course.py`, avec leur source). Il est rendu en
# Markdown et en HTML autonome (figures intégrées).
#
# Il suit le plan d'un rapport de cours : introduction, méthode, résultats (dont un tableau « ce projet /
# rapport du cours » sur les questions de validation 0 à 49), analyse, limites, **votre discussion**,
# conclusion (tirée des résultats du run), références.
#
# **Votre discussion** est un fichier Markdown, `notes_etudiant.md`, que le rapport inclut tel quel
# (section 6). En local, c'est `report/notes_etudiant.md` du dépôt : un squelette de questions à
# remplacer par vos réponses. Sur Colab, le dépôt est recloné à chaque session : la cellule suivante
# copie ce squelette **à côté du run, sur Drive**, et c'est cette copie que vous éditez (elle passe
# avant celle du dépôt). Relancez ensuite ce notebook pour reconstruire le rapport.
#
# *Temps attendu : moins d'une minute (pas de GPU).*

# %% dasd_setup="report"

# %%
print(nb.student_notes(cfg))

# %%
from dasd_utils import report
paths = report.run_phase(cfg, force=True)
print(nb.relative(paths["markdown"]))
print(nb.relative(paths["html"]))

# %% [markdown]
# **L'essentiel du rapport** : son avertissement, la comparaison avec le cours et la conclusion (le rapport complet, figures comprises, est dans le fichier HTML ci-dessous).

# %%
nb.report_summary(paths["markdown"])

# %% [markdown]
# Le rapport HTML autonome (figures intégrées) s'affiche ci-dessous ; le lien l'ouvre dans un nouvel onglet (sur Colab, il est aussi dans le dossier du run sur Drive).

# %%
nb.show_report(paths["html"])

# %% [markdown]
# **Ce projet et le rapport du cours**, sur les mêmes 50 questions : le tableau de la section 3.1 du rapport (exactitudes publiées par le cours, avec leurs intervalles de Wilson).

# %%
# NBVAL_CHECK_OUTPUT
nb.course_table(cfg)

# %% [markdown]
# **Le rapport à rendre.** Sur Colab et Kaggle, le rapport est aussi écrit à côté du run comme un dossier autonome (`rapport.md`, `rapport.html`, `figures/`, vos notes) et son archive zip, que Colab propose de télécharger ; en local, il est dans le dossier `report/` du run.

# %%
print(nb.deliver_report(cfg))
