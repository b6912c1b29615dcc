"""The notebooks' French stops: each expected pipeline error mapped to one message that names the fix, shown by IPython
without a traceback; an unexpected error keeps its traceback."""

from __future__ import annotations

import re

import pytest

from dasd_utils.config import ConfigError, MissingSetting, RunConfigMismatch, load_config, require_api_endpoint
from dasd_utils.layout import MissingPhaseOutput
from dasd_utils.notebook import stops
from dasd_utils.notebook.setup import COLAB, KAGGLE, LOCAL, NotebookStop
from dasd_utils.secrets import MissingAPIKey
from dasd_utils.teacher.api import TeacherFatalError, TeacherPreflightError

KEY = "sk-stops-secret-0123456789"


def test_command_line_options_become_notebook_parameters():
    text = ("the colab profile needs its URL: --set teacher.base_url=https://x/v1 (Infomaniak); or --set "
            "sft.epochs=2, --set teacher.require_logprobs=false; start a new run (--run-dir) or pass --force; "
            "run the 'data' phase first (python -m dasd_utils data ...)")
    out = stops.in_notebook_terms(text)
    assert 'OVERRIDES = {"teacher.base_url": "https://x/v1"}' in out and 'OVERRIDES = {"sft.epochs": 2}' in out
    assert 'OVERRIDES = {"teacher.require_logprobs": False}' in out
    assert "RUN_DIR" in out and "FORCE = True" in out
    assert "--" not in out and "python -m" not in out


def test_missing_teacher_url_names_the_form_field_of_notebook_01():
    with pytest.raises(MissingSetting) as exc:
        require_api_endpoint(load_config("colab"))
    assert exc.value.key == "teacher.base_url" and "--set teacher.base_url" in str(exc.value)  # the CLI keeps English
    message = stops.notebook_message(exc.value)
    assert message.startswith("Adresse du professeur manquante") and "TEACHER_URL" in message
    assert "notebook 01" in message and 'OVERRIDES = {"teacher.base_url"' in message and "--set" not in message


def test_other_settings_are_refused_in_notebook_terms():
    message = stops.notebook_message(ConfigError("unknown key 'data.n_trian'; use --set data.n_train=10"))
    assert message.startswith("Réglage refusé.") and 'OVERRIDES = {"data.n_train": 10}' in message
    assert "data.n_trian" in message  # the pipeline's detail is kept
    mismatch = RunConfigMismatch("/r/config.json", [("sft.lr_stage2", 1e-4, 5e-5)])
    assert "valeur enregistrée 0.0001" in stops.notebook_message(mismatch)


@pytest.mark.parametrize("environment, problems, wanted", [
    (COLAB, ("colab_not_found",), ["panneau « Secrets »", "« Ajouter un secret », nom OPENAI_API_KEY", "Accès au notebook"]),
    (COLAB, ("colab_no_access",), ["existe, mais ce notebook n'a pas le droit", "activez « Accès au notebook »"]),
    (KAGGLE, ("kaggle_not_attached",), ["Add-ons → Secrets", "label OPENAI_API_KEY", "cochez-le"]),
    (LOCAL, (), ["export OPENAI_API_KEY=", "fichier .env"]),
])
def test_missing_key_says_which_secret_to_add_where(environment, problems, wanted):
    exc = MissingAPIKey("no API key found in the variable OPENAI_API_KEY", "OPENAI_API_KEY", problems)
    message = stops.api_key_message(exc, environment)
    for part in wanted:
        assert part in message, (part, message)


def test_a_key_pasted_as_the_variable_name_is_never_shown():
    from dasd_utils.secrets import get_api_key

    with pytest.raises(MissingAPIKey) as exc:
        get_api_key(KEY)
    message = stops.notebook_message(exc.value)
    assert "NOM de la variable" in message and KEY not in message


@pytest.mark.parametrize("phase, stage, notebook", [
    ("data", None, "01_donnees"), ("generate", None, "02_generation_professeur"), ("das", None, "03_das"),
    ("train", 1, "04_sft_stage1"), ("train", 2, "05_sft_stage2"), ("evaluate", None, "06_evaluation"),
])
def test_a_phase_run_too_early_names_the_notebook_to_run_first(phase, stage, notebook):
    message = stops.notebook_message(MissingPhaseOutput("/run/some/file.jsonl", phase, stage))
    assert f"Exécutez d'abord le notebook {notebook}" in message and f"la phase « {phase} »" in message


def test_the_real_missing_files_are_typed(demo_cfg):
    """What the phases raise when run out of order carries the phase to run (and stays a FileNotFoundError)."""
    from dasd_utils import das, data, sft

    with pytest.raises(MissingPhaseOutput) as no_data:
        data.load_run_questions(demo_cfg, "train")
    assert no_data.value.phase == "data" and isinstance(no_data.value, FileNotFoundError)
    assert "run the 'data' phase first" in str(no_data.value)  # the command line's message is unchanged
    with pytest.raises(MissingPhaseOutput) as no_teacher:
        das.run_phase(demo_cfg)
    assert no_teacher.value.phase == "generate"
    with pytest.raises(MissingPhaseOutput) as no_das:
        sft.stage_inputs(demo_cfg, 1)
    assert no_das.value.phase == "das"


@pytest.mark.parametrize("reason, wanted", [
    ("auth", "clé d'API a été refusée (401)"), ("forbidden", "TEACHER_MODEL"), ("not_found", "TEACHER_URL"),
    ("no_logprobs", "teacher.require_logprobs"),
])
def test_teacher_refusals_say_what_to_fix(reason, wanted):
    exc = TeacherFatalError(f"teacher API answered 401: the API key was refused. Server said: Bearer {KEY}", 401, reason)
    message = stops.notebook_message(exc)
    assert wanted in message and KEY not in message


def test_a_preflight_stop_lists_each_fatal_check_with_its_fix():
    checks = [{"level": "ok", "text": "authentication and model accepted", "code": None},
              {"level": "FATAL", "text": "no usable logprobs: none returned", "code": "no_logprobs"},
              {"level": "FATAL", "text": "the probe request failed: connection error to h:1", "code": "unreachable"}]
    message = stops.notebook_message(TeacherPreflightError("teacher preflight: ... -> STOP", checks))
    assert message.startswith("Le contrôle du professeur") and message.count("\n  - ") == 2
    assert "log-probabilités" in message and "injoignable" in message and "authentication" not in message


def test_unexpected_errors_are_not_translated():
    assert stops.notebook_message(ValueError("a bug")) is None
    assert stops.notebook_message(KeyError("x")) is None


# ------------------------------------------------------------------ in IPython
@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    instance = InteractiveShell.instance()
    yield instance
    instance.set_custom_exc((), None)
    InteractiveShell.clear_instance()


def test_ipython_shows_one_french_line_and_keeps_the_cell_failed(shell, capsys):
    assert stops.install_stop_handler("generate", shell)
    shell.user_ns["MissingAPIKey"] = MissingAPIKey
    result = shell.run_cell(f"raise MissingAPIKey('no API key found; Bearer {KEY}', 'OPENAI_API_KEY', ('colab_not_found',))")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert not result.success and isinstance(result.error_in_exec, MissingAPIKey)  # "run all" and papermill stop here
    assert "⛔ Pas de clé d'API pour le professeur" in shown
    assert "Traceback" not in shown and "File " not in shown and "---->" not in shown and KEY not in shown


def test_ipython_keeps_the_traceback_of_an_unexpected_error(shell, capsys):
    stops.install_stop_handler("das", shell)
    result = shell.run_cell("def broken():\n    return {}['missing']\nbroken()")
    shown = capsys.readouterr()
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.out + shown.err)  # without IPython's colours
    assert not result.success and "KeyError" in text and "broken()" in text and "⛔" not in text


def test_a_notebook_stop_stays_one_line(shell, capsys):
    stops.install_stop_handler(None, shell)
    shell.user_ns["NotebookStop"] = NotebookStop
    shell.run_cell("raise NotebookStop('Arrêt expliqué.')")
    text = capsys.readouterr().out
    assert "⛔ Arrêt expliqué." in text and "Traceback" not in text
