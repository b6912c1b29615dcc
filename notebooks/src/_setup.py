# The cells every notebook starts with, injected where a source has its `# %% dasd_setup="PHASE"` cell.
# "DASD_PHASE" is replaced by that phase's name. Edit here, then: make notebooks

# %% tags=["parameters"]
# Paramètres (cellule étiquetée « parameters » pour papermill). Mettez les mêmes dans les 7 notebooks
# d'un run, ou seulement dans le premier : les suivants relisent la configuration du run (config.json).
PROFILE = None     # None : colab sur Colab/Kaggle, demo en local | demo : CPU, hors ligne, substituts | colab : T4 | full : A100/H100
RUN_DIR = None     # None : Google Drive (Colab), /kaggle/working (Kaggle), runs/<PROFILE> (local)
USE_DRIVE = True   # Colab : False pour ne pas monter Drive (le run est alors perdu à la déconnexion)
FORCE = False      # True : recalculer cette phase, et accepter des paramètres différents du run
OVERRIDES = {}     # ex. {"data.n_train": 100, "teacher.base_url": "https://..."}

# %%
PHASE = "DASD_PHASE"  # la phase de ce notebook (remplacée par le générateur)
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

# %%
# NBVAL_CHECK_OUTPUT
nb.show_config(cfg)
