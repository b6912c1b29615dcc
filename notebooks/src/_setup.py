# The cells every notebook starts with, injected where a source has its `# %% dasd_setup="PHASE"` cell.
# "DASD_PHASE" is replaced by that phase's name. Edit here, then: make notebooks

# %% tags=["parameters"]
# Paramètres (cellule étiquetée « parameters » pour papermill). Un run se règle une fois, dans le notebook 01 ;
# laissez-les à None ailleurs : chaque notebook relit le run du notebook 01 (config.json, et ses réglages sur Drive / Kaggle).
PROFILE = None     # None : celui du notebook 01 (colab sur Colab/Kaggle, demo en local) | demo : CPU, hors ligne, substituts | colab : T4 | full : A100/H100
RUN_DIR = None     # None : celui du notebook 01 (Google Drive sur Colab, /kaggle/working sur Kaggle, runs/<PROFILE> en local)
USE_DRIVE = True   # Colab : False pour ne pas monter Drive (le run est alors perdu à la déconnexion)
FORCE = False      # True : recalculer cette phase, et accepter des paramètres différents du run
OVERRIDES = {}     # ex. {"data.n_train": 100, "teacher.max_tokens": 2048}

# %%
PHASE = "DASD_PHASE"  # la phase de ce notebook (remplacée par le générateur)
# Mise en place : environnement (Colab, Kaggle, local), installation, GPU, dossier du run, configuration.
import glob, json, os, re, subprocess, sys
DEFAULT_REPO_URL = "https://github.com/OWNER/dasd-course.git"  # le dépôt publié (python tools/set_repo_url.py URL le change)
FORM = {k: globals()[k] for k in ("REPO_URL", "TEACHER_URL", "TEACHER_MODEL") if k in globals()}  # formulaire du notebook 01
KAGGLE = "KAGGLE_KERNEL_RUN_TYPE" in os.environ
ON_CLOUD = KAGGLE or "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules
class Stop(Exception):  # an explained stop: IPython shows the French message without a traceback
    def _render_traceback_(self):
        return [f"⛔ {self}"]
def git(*args):
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode:
        error = re.sub(r"://[^/@\s]+@", "://***@", done.stderr.strip()[-400:])  # a token in the URL is never shown
        raise Stop(f"git {args[-2] if args[0] == '-C' else args[0]} a échoué : {error}")
    return done.stdout
def saved_settings():
    # What notebook 01 saved next to the runs (on Drive, in /kaggle/working or an attached input), read before the clone exists.
    if KAGGLE:
        inputs = os.environ.get("DASD_KAGGLE_INPUT", "/kaggle/input")
        homes = [os.environ.get("DASD_KAGGLE_WORKING", "/kaggle/working"), *sorted(glob.glob(f"{inputs}/*/") + glob.glob(f"{inputs}/*/*/") + glob.glob(f"{inputs}/*/*/*/"))]
    elif USE_DRIVE:
        mount = os.environ.get("DASD_DRIVE_MOUNT", "/content/drive")
        if not os.path.isdir(f"{mount}/MyDrive"):
            from google.colab import drive
            try:
                drive.mount(mount)
            except Exception as exc:  # the student declined the authorisation, or it timed out
                raise Stop(f"Google Drive n'est pas monté ({type(exc).__name__}) : relancez la cellule et acceptez "
                           "l'accès à Drive, ou mettez USE_DRIVE = False (le run sera alors perdu à la déconnexion).") from None
        homes = [f"{mount}/MyDrive/dasd"]
    else:
        homes = ["/content/dasd-runs"]
    for home in homes:
        try:
            with open(os.path.join(home, "notebook_settings.json"), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            pass
    return {}
if ON_CLOUD:
    SAVED = saved_settings()
    REPO_URL = os.environ.get("DASD_REPO_URL") or FORM.get("REPO_URL") or SAVED.get("repo_url") or DEFAULT_REPO_URL
    REPO_DIR = os.environ.get("DASD_REPO_DIR") or ("/kaggle/working/dasd-course" if KAGGLE else "/content/dasd-course")
    if not os.path.isdir(os.path.join(REPO_DIR, ".git")):
        if "OWNER/" in REPO_URL:
            raise Stop("Adresse du dépôt inconnue (REPO_URL contient encore OWNER) : dans le notebook 01, mettez l'adresse de "
                       "votre fork dans le champ REPO_URL du formulaire et exécutez-le ; les notebooks suivants la relisent.")
        git("clone", "-q", REPO_URL, REPO_DIR)
    HEAD = git("-C", REPO_DIR, "rev-parse", "HEAD")
    git("-C", REPO_DIR, "pull", "-q", "--ff-only")  # a re-run updates the clone (never a nested one)
    CODE_CHANGED = "dasd_utils" in sys.modules and HEAD != git("-C", REPO_DIR, "rev-parse", "HEAD")
    os.chdir(REPO_DIR)
    sys.path.insert(0, REPO_DIR)
    from dasd_utils.notebook import setup as notebook_setup
    notebook_setup.install(REPO_DIR, code_changed=CODE_CHANGED, profile=PROFILE or SAVED.get("profile") or "colab")
from dasd_utils import notebook as nb
nb.install_stop_handler(PHASE)  # from here on, a mistake (setting, key, order of notebooks) stops with one French message
cfg = nb.setup_notebook(PHASE, PROFILE, RUN_DIR, OVERRIDES, force=FORCE, use_drive=USE_DRIVE, form=FORM,
                        repo_url=REPO_URL if ON_CLOUD else None)
print(nb.stand_in_banner(cfg))

# %%
# NBVAL_CHECK_OUTPUT
nb.show_config(cfg)
