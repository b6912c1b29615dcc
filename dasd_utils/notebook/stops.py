"""French notebook messages for the pipeline's expected errors, shown as one ⛔ line without a traceback.

The pipeline raises typed errors whose English messages are written for the command line
(``--set key=value``, ``python -m dasd_utils data ...``). In a notebook the same failure must say,
in French and in the notebook's own terms, what to change: a parameter (``OVERRIDES = {...}``,
``FORCE``, ``RUN_DIR``), a field of notebook 01's form, which notebook to run first, which secret
to add. :func:`notebook_message` maps each expected error to that message (the pipeline's detail
is quoted, scrubbed of secrets), and :func:`install_stop_handler` makes IPython show it as a
:class:`~dasd_utils.notebook.setup.NotebookStop` for every cell run after the set-up.

Only the error types of :func:`expected_errors` are handled: any other exception keeps IPython's
full traceback, since it is a bug to look at, not a mistake to fix.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from ..config import ConfigError, MissingSetting, RunConfigMismatch
from ..layout import MissingPhaseOutput
from ..secrets import MissingAPIKey, scrub
from .setup import COLAB, KAGGLE, NotebookStop, detect_environment, mismatch_message, relative

#: The notebook that runs each phase (SFT: one per stage).
PHASE_NOTEBOOKS = {
    "data": "01_donnees", "generate": "02_generation_professeur", "das": "03_das", "train": "04_sft_stage1",
    "train-2": "05_sft_stage2", "evaluate": "06_evaluation", "report": "07_rapport", "analyses": "08_analyses",
}
#: Batch settings that only change speed and memory (config.OPERATIONAL_KEYS), per phase, for a GPU out of memory.
BATCH_KEYS = {"das": "das.batch_size", "evaluate": "eval.batch_size", "analyses": "eval.batch_size"}
INFOMANIAK_URL = "https://api.infomaniak.com/2/ai/<product_id>/openai/v1"


def notebook_for(phase: str | None, stage: int | None = None) -> str | None:
    """Return the notebook that runs ``phase`` (``05_sft_stage2`` for the second SFT stage), or None."""
    if phase == "train" and stage == 2:
        return PHASE_NOTEBOOKS["train-2"]
    return PHASE_NOTEBOOKS.get(phase or "")


def _value(text: str) -> str:
    """Return a ``--set`` value written as Python (``3`` -> ``3``, ``true`` -> ``True``, ``x`` -> ``"x"``)."""
    lowered = text.lower()
    if lowered in ("true", "false", "null", "none"):
        return {"true": "True", "false": "False"}.get(lowered, "None")
    try:
        float(text)
        return text
    except ValueError:
        return json.dumps(text.strip("'\""), ensure_ascii=False)


def in_notebook_terms(text: str) -> str:
    """Return a command-line message with its options written as notebook parameters.

    ``--set teacher.base_url=https://...`` becomes ``OVERRIDES = {"teacher.base_url": "https://..."}``,
    ``--force`` ``FORCE = True``, ``--run-dir`` ``RUN_DIR``; ``(python -m dasd_utils ...)`` is dropped.
    """
    text = re.sub(r"\s*\(python -m dasd_utils [^)]*\)", "", text)
    text = re.sub(r"--set\s+([A-Za-z_][\w.]*)=(\S+?)(?=[\s;,)]|$)",
                  lambda m: f'OVERRIDES = {{"{m.group(1)}": {_value(m.group(2))}}}', text)
    text = re.sub(r"(?<![\w-])--force\b", "FORCE = True", text)
    return re.sub(r"(?<![\w-])--run-dir\b", "RUN_DIR", text)


def _detail(exc: BaseException) -> str:
    return scrub(in_notebook_terms(" ".join(str(exc).split())))


# ------------------------------------------------------------------ one message per kind of mistake
def setting_message(exc: ConfigError) -> str:
    """Return the French message of a missing or refused setting."""
    if isinstance(exc, RunConfigMismatch):
        return mismatch_message(exc)
    if isinstance(exc, MissingSetting) and exc.key == "teacher.base_url":
        return (
            "Adresse du professeur manquante : le profil colab appelle le professeur par une API compatible OpenAI "
            "et doit connaître son URL. Dans le notebook 01, remplissez le champ TEACHER_URL du formulaire « Réglages "
            f"du run » (Infomaniak : {INFOMANIAK_URL}, l'identifiant de produit est dans la console Infomaniak ; un "
            "serveur vLLM : http://<hôte>:8000/v1) et exécutez-le de nouveau : les notebooks suivants la relisent "
            "dans la configuration du run. Depuis un autre notebook : OVERRIDES = {\"teacher.base_url\": \"https://...\"}."
        )
    if isinstance(exc, MissingSetting):
        return (f"Réglage manquant : {exc.key}. Donnez-le dans la cellule des paramètres, en haut du notebook : "
                f"OVERRIDES = {{\"{exc.key}\": ...}}. Détail : {_detail(exc)}")
    return ("Réglage refusé. Les réglages se changent dans la cellule des paramètres, en haut du notebook "
            "(OVERRIDES = {\"clé\": valeur}, dans le notebook 01 pour tout le run). Détail : " + _detail(exc))


def api_key_message(exc: MissingAPIKey, environment: str | None = None) -> str:
    """Return the French message of a missing API key, with the steps of this environment's secrets store."""
    name = exc.name or "OPENAI_API_KEY"
    if "bad_name" in exc.problems:
        return ("teacher.api_key_env doit être le NOM de la variable qui contient la clé (par exemple OPENAI_API_KEY), "
                "pas la clé elle-même (la valeur donnée n'est pas affichée) : OVERRIDES = "
                "{\"teacher.api_key_env\": \"OPENAI_API_KEY\"}.")
    environment = environment or detect_environment()
    head = f"Pas de clé d'API pour le professeur (secret {name}). "
    if environment == COLAB and "colab_no_access" in exc.problems:
        return (f"Le secret Colab {name} existe, mais ce notebook n'a pas le droit de le lire : panneau « Secrets » "
                f"(icône de clé, barre de gauche), activez « Accès au notebook » à côté de {name}, puis relancez "
                "cette cellule.")
    if environment == COLAB:
        return (head + "Ajoutez-la comme secret Colab : panneau « Secrets » (icône de clé, barre de gauche) → "
                f"« Ajouter un secret », nom {name}, valeur : votre jeton (Infomaniak : console → API), activez "
                "« Accès au notebook », puis relancez cette cellule. La clé n'est écrite ni dans le run ni dans le notebook.")
    if environment == KAGGLE:
        return (head + f"Ajoutez-la comme secret Kaggle : menu Add-ons → Secrets → « Add a new secret », label {name}, "
                "valeur : votre jeton, et cochez-le pour ce notebook ; puis relancez cette cellule. Vérifiez aussi "
                "que l'accès Internet est activé (Settings → Internet).")
    return (head + f"Localement : exportez-la avant de lancer Jupyter (export {name}=...) ou mettez-la dans un fichier "
            f".env à côté des notebooks (ligne {name}=...), puis relancez cette cellule.")


def missing_phase_message(exc: MissingPhaseOutput) -> str:
    """Return the French message of a phase run before the one whose files it needs."""
    notebook = notebook_for(exc.phase, exc.stage)
    if notebook is None:
        return f"Fichier introuvable. Détail : {_detail(exc)}"
    return (f"Il manque {relative(exc.path)} : la phase « {exc.phase} » n'a pas encore été exécutée pour ce run. "
            f"Exécutez d'abord le notebook {notebook} (même PROFILE et même RUN_DIR), puis relancez celui-ci.")


_PREFLIGHT_FIXES = {
    "unreachable": ("Le professeur est injoignable. Vérifiez TEACHER_URL dans le formulaire du notebook 01 (Infomaniak : "
                    f"{INFOMANIAK_URL}) et, sur Kaggle, que l'accès Internet est activé (Settings → Internet)."),
    "auth": ("La clé d'API a été refusée (401) : vérifiez le secret qui la contient (le jeton copié en entier, sans "
             "espace ; Colab : panneau « Secrets » ; Kaggle : Add-ons → Secrets), puis relancez la cellule."),
    "forbidden": ("La clé n'a pas le droit d'utiliser ce modèle à cette adresse (403) : vérifiez TEACHER_MODEL dans "
                  "le formulaire du notebook 01 et que le jeton donne accès à ce produit."),
    "not_found": ("Modèle ou adresse introuvable (404) : vérifiez TEACHER_URL (Infomaniak : "
                  f"{INFOMANIAK_URL}, avec votre identifiant de produit) et TEACHER_MODEL (par exemple "
                  "openai/gpt-oss-120b) dans le formulaire du notebook 01. Changer le modèle d'un run commencé "
                  "demande FORCE = True dans le notebook 01 (rien n'a encore été généré : rien n'est perdu)."),
    "no_logprobs": ("Le professeur répond sans les log-probabilités de ses tokens, dont DAS (notebook 03) a besoin : "
                    "choisissez un fournisseur ou un serveur qui les renvoie pour ce modèle (Infomaniak, vLLM, OpenAI), "
                    "ou, pour ne produire que des données de SFT, OVERRIDES = {\"teacher.require_logprobs\": False}."),
    "max_tokens": ("La réponse a été coupée avant d'arriver à son contenu (gpt-oss écrit d'abord son analyse) : "
                   "augmentez la limite dans le notebook 01, OVERRIDES = {\"teacher.max_tokens\": 2048} (avec "
                   "FORCE = True si le run existe déjà)."),
    "analysis_logprobs": ("teacher.reasoning_source=analysis demande le texte d'analyse et ses log-probabilités, que ce "
                          "serveur ne renvoie pas : OVERRIDES = {\"teacher.reasoning_source\": \"content\"}."),
}


def teacher_message(exc: Exception) -> str:
    """Return the French message of a teacher that stopped the run (preflight verdict, 401/403/404, no logprobs)."""
    from ..teacher.api import TeacherPreflightError

    if isinstance(exc, TeacherPreflightError):
        fatal = [c for c in exc.checks if c.get("level") == "FATAL"]
        lines = [f"  - {_PREFLIGHT_FIXES.get(c.get('code'), 'Vérification refusée.')} (détail : {_detail(c.get('text', ''))})"
                 for c in fatal] or [f"  - {_detail(exc)}"]
        return ("Le contrôle du professeur (sa première requête, envoyée seule) a arrêté le run avant toute autre "
                "requête :\n" + "\n".join(lines) + "\nLes réponses déjà reçues sont gardées et ne seront jamais renvoyées.")
    fix = _PREFLIGHT_FIXES.get(getattr(exc, "reason", None) or "")
    if fix:
        return f"{fix}\nDétail : {_detail(exc)}"
    return f"Le professeur a arrêté le run. Détail : {_detail(exc)}"


def incomplete_message(exc: Exception) -> str:
    """Return the French message of teacher requests that failed (everything else is saved)."""
    return ("Des requêtes au professeur ont échoué ; tout ce qui a été reçu est enregistré. Relancez cette cellule : "
            "seules les requêtes en échec repartiront (aucune réponse déjà reçue n'est renvoyée). Détail : " + _detail(exc))


def training_message(exc: Exception) -> str:
    """Return the French message of a training stopped by a NaN or infinite loss."""
    return ("L'entraînement s'est arrêté : la perte est devenue NaN ou infinie (en fp16 sur un T4, un débordement). "
            "L'adaptateur serait inutilisable, rien n'est enregistré comme terminé. À essayer, dans la cellule des "
            "paramètres : un taux d'apprentissage plus faible (OVERRIDES = {\"sft.lr_stage1\": 1e-4}, avec FORCE = True), "
            "ou l'entraînement en fp32 (OVERRIDES = {\"sft.precision\": \"fp32\"}, plus lent). Détail : " + _detail(exc))


def out_of_memory_message(phase: str | None) -> str:
    """Return the French message of a GPU out of memory during ``phase``."""
    key = BATCH_KEYS.get(phase or "")
    fix = (f"réduisez la taille des lots, qui ne change pas les résultats : OVERRIDES = {{\"{key}\": 4}}, puis relancez "
           "(ce qui est déjà calculé est gardé)") if key else "réduisez la taille des lots ou la longueur maximale"
    return (f"Mémoire du GPU saturée (phase « {phase} ») : redémarrez la session pour libérer le GPU (Colab : Exécution → "
            f"Redémarrer la session), puis {fix}.")


def plain_message(title: str) -> Callable[[Exception], str]:
    """Return a message builder: ``title``, then the pipeline's detail."""
    return lambda exc: f"{title} Détail : {_detail(exc)}"


def expected_errors() -> dict[type, Callable[..., str]]:
    """Return ``{error type: message builder}`` for the errors a student can fix (most specific types first)."""
    from ..data import DataError
    from ..models import ModelUnavailable
    from ..sft.train import NonFiniteLoss
    from ..teacher.api import TeacherFatalError
    from ..teacher.phase import TeacherIncompleteError

    errors: dict[type, Callable[..., str]] = {
        ConfigError: setting_message,
        MissingAPIKey: api_key_message,
        MissingPhaseOutput: missing_phase_message,
        TeacherFatalError: teacher_message,
        TeacherIncompleteError: incomplete_message,
        NonFiniteLoss: training_message,
        ModelUnavailable: plain_message("Le modèle ne peut pas être chargé."),
        DataError: plain_message("Données refusées."),
    }
    try:
        import torch

        errors[torch.OutOfMemoryError] = lambda exc: out_of_memory_message(None)
    except (ImportError, AttributeError):  # no torch yet, or a torch without OutOfMemoryError
        pass
    return errors


def notebook_message(exc: BaseException, phase: str | None = None) -> str | None:
    """Return the French notebook message for an expected error, or None for an unexpected one (keep its traceback)."""
    if isinstance(exc, NotebookStop):
        return str(exc)
    for kind, build in expected_errors().items():
        if isinstance(exc, kind):
            if type(exc).__name__ == "OutOfMemoryError":
                return out_of_memory_message(phase)
            return scrub(build(exc))
    return None


def install_stop_handler(phase: str | None = None, shell: Any = None) -> bool:
    """Return True after making IPython show expected errors as one French ⛔ message (False outside IPython).

    Registered with ``set_custom_exc`` for the types of :func:`expected_errors` only: IPython still
    records the cell as failed (papermill and "run all" stop there), any other exception keeps its
    traceback, and a message builder that fails falls back to the traceback.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False

    def handler(self, etype, value, tb, tb_offset=None):
        try:
            message = notebook_message(value, phase)
        except Exception:  # noqa: BLE001 - never hide the real error behind a broken message
            message = None
        if message is None:
            self.showtraceback((etype, value, tb), tb_offset=tb_offset)
        else:
            self.showtraceback((NotebookStop, NotebookStop(message), None))
        return []

    shell.set_custom_exc(tuple(expected_errors()), handler)
    return True


__all__ = ["BATCH_KEYS", "PHASE_NOTEBOOKS", "api_key_message", "expected_errors", "in_notebook_terms",
           "install_stop_handler", "missing_phase_message", "notebook_for", "notebook_message", "setting_message",
           "teacher_message"]
