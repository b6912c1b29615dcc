"""A Colab rehearsal: the eight generated notebooks, headless, each in a fresh kernel, as a student runs them on Colab.

What stands in for Colab: a **new virtual environment** holding only what Colab preinstalls and the
set-up needs before its own pip (torch, ipykernel, PyYAML), whose kernel runs every notebook;
``google.colab`` is the package in ``tests/support/colab_stub`` (Drive = a directory, secrets = a
JSON file; the API key is *only* there, not in the environment); ``COLAB_RELEASE_TAG`` is set; the
repository is cloned by the set-up cell from a local git snapshot of this working tree, whose URL is
given once, to notebook 01's form field; the teacher is the real-HTTP fake OpenAI server speaking
like vLLM serving gpt-oss (harmony); the student is a tiny random Qwen3 with the real Qwen3
tokenizer and Qwen3-4B-Instruct-2507's chat template. All notebooks share one run directory "on Drive".

Checked, in the order a student meets them:

* notebook 01 runs the **real install path** (pip, not skipped: requirements.txt and the package into
  the new environment), says that pip runs and prints the versions it ended with;
* the three first mistakes stop with one French ⛔ line and no stack frame: no teacher URL (notebook 01's
  teacher check), no key in Colab's secrets (same check, once the URL is given), notebook 03 before 02;
* notebook 01's teacher check sends one request, which notebook 02 never sends again; notebooks 02-08 get
  no parameter at all: the repository URL and the run come from notebook 01's settings on Drive;
* a kill of the kernel during 04 resumes from the last checkpoint; a changed parameter in 05 is refused
  with the key, the saved value and the two ways out; the clone is updated (not nested); 07 inlines the report;
* notebook 08 on the colab profile's defaults (one random seed, no whole pool): a teacher that can
  neither score given text nor continue an answer (like vLLM serving gpt-oss, or Infomaniak) is found
  out before any GPU work (the distilled student never regenerates the pool), and the DAS-vs-random
  comparison and the report section are made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.real_tokenizers import tokenizer_dir

ROOT = Path(__file__).resolve().parents[2]
STUB = Path(__file__).resolve().parents[1] / "support" / "colab_stub"
KEY = "sk-rehearsal-colab-secret-4242"
KERNEL = "dasd-fresh-colab"
#: What the new environment holds before the set-up's pip: Colab preinstalls these (and much more).
PREINSTALLED = ("ipykernel", "pyyaml")

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def tiny_qwen3_dir(tmp_path_factory):
    """A tiny random Qwen3 (2 layers, hidden 64) with the real Qwen3 tokenizer and the Instruct-2507 template."""
    import torch
    from support.real_tokenizers import load_tokenizer, qwen3_instruct_2507_template
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from dasd_utils.models import ensure_pad_token

    tokenizer = load_tokenizer("qwen3")
    tokenizer.chat_template = qwen3_instruct_2507_template
    ensure_pad_token(tokenizer)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("tiny_qwen3")
    Qwen3ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def fresh_kernel(tmp_path_factory):
    """A new virtual environment with torch, ipykernel and PyYAML only, and a Jupyter kernel spec for it.

    Returns the folder to put on JUPYTER_PATH. Torch comes from tools/install_torch.sh (the
    Makefile's choice of wheel); everything else the notebooks need, their set-up installs.
    """
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    python = venv / "bin" / "python"
    timings = {}
    for label, cmd in (("venv", [sys.executable, "-m", "venv", str(venv)]),
                       ("torch", ["sh", str(ROOT / "tools" / "install_torch.sh"), str(python)]),
                       ("ipykernel", [str(python), "-m", "pip", "install", "-q", *PREINSTALLED])):
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{label}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        timings[label] = round(time.perf_counter() - started, 1)
    spec = base / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh Colab-like environment", "language": "python"}))
    print(f"fresh environment: {timings} s")
    return base / "jupyter"


def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.org",
               GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.org")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def _snapshot_repo(target: Path) -> Path:
    """Return a git repository holding this working tree's files (tracked and untracked, not ignored)."""
    files = _git("ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith("notebooks/") or name == "notebooks/sanitize.cfg":
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    _git("init", "-q", "-b", "main", cwd=target)
    _git("add", "-A", cwd=target)
    _git("commit", "-qm", "snapshot", cwd=target)
    return target


def _kernel_pids() -> list:
    import psutil

    return [p for p in psutil.Process().children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline())]


def _code_cells(path: Path) -> list:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return [c for c in notebook.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def _text(cell) -> str:
    text = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text.append(output["text"])
        elif "data" in output:
            text.append(output["data"].get("text/html", "") + output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            text.append(output["evalue"])
    return "".join(text)


def _setup_output(path: Path) -> str:
    """Return what the set-up cell printed (the cell that starts with ``PHASE = ``)."""
    return next(_text(c) for c in _code_cells(path) if c.source.startswith("PHASE = "))


def _outputs(path: Path, cell: int) -> str:
    return _text(_code_cells(path)[cell])


def _output_of(path: Path, call: str) -> str:
    """Return what the one code cell whose source contains ``call`` showed."""
    cells = [c for c in _code_cells(path) if call in c.source]
    assert len(cells) == 1, (call, len(cells))
    return _text(cells[0])


def _stop(path: Path) -> str:
    """Return the French stop a failed notebook ended with, after checking it is one ⛔ line without stack frames."""
    errors = [o for c in _code_cells(path) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1, errors
    error = errors[0]
    assert error["ename"] == "NotebookStop", error
    assert len(error["traceback"]) == 1 and error["traceback"][0].startswith("⛔ "), error["traceback"]
    shown = error["traceback"][0]
    for frame_mark in ("Traceback (most recent call last)", 'File "', "---->", "site-packages", ".py:"):
        assert frame_mark not in shown, (frame_mark, shown)
    return shown


def test_colab_rehearsal(tmp_path, tiny_qwen3_dir, fresh_kernel, monkeypatch):
    import papermill as pm

    from support.fake_openai_server import FakeOpenAIServer, answers_from_rows
    from support.scripts import build_notebooks

    from dasd_utils.data import load_split

    notebooks = {p.name[:2]: p for p in build_notebooks().write(out_dir=tmp_path / "generated")}
    executed = tmp_path / "executed"
    executed.mkdir()
    source = _snapshot_repo(tmp_path / "origin")
    clone = tmp_path / "content" / "dasd-course"
    drive = tmp_path / "drive"
    secrets = tmp_path / "colab_secrets.json"
    secrets.write_text(json.dumps({}))  # the student has not added the key yet
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name in ("DASD_REPO_URL", "DASD_SKIP_PIP", "VIRTUAL_ENV", "PYTHONHOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "COLAB_RELEASE_TAG": "release-colab-rehearsal", "DASD_DRIVE_MOUNT": str(drive),
        "DASD_REPO_DIR": str(clone), "FAKE_COLAB_SECRETS": str(secrets), "FAKE_COLAB_DOWNLOADS": str(tmp_path / "downloads.txt"), "PYTHONPATH": str(STUB),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg", "JUPYTER_PATH": str(fresh_kernel),
    }.items():
        monkeypatch.setenv(name, value)
    run_dir = drive / "MyDrive" / "dasd" / "runs" / "colab"

    def run(number: str, params: dict | None = None, tag: str = "") -> Path:
        target = executed / f"{notebooks[number].stem}{tag}.ipynb"
        pm.execute_notebook(str(notebooks[number]), str(target), parameters=params or {},
                            cwd=str(tmp_path), kernel_name=KERNEL, progress_bar=False, log_output=False)
        return target

    def refused(number: str, params: dict | None = None, tag: str = "") -> str:
        with pytest.raises(pm.PapermillExecutionError):
            run(number, params, tag)
        return _stop(executed / f"{notebooks[number].stem}{tag}.ipynb")

    rows = load_split("bundled", "validation")
    # vLLM-style harmony token lists (analysis channel, markers, trailing <|return|>): the real path.
    with FakeOpenAIServer(answers=answers_from_rows(rows), default="harmony") as server:
        overrides = {
            "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50,
            "data.n_train": 8, "data.n_eval": 4, "teacher.concurrency": 4,
            "teacher.max_tokens": 256, "student.model": str(tiny_qwen3_dir), "student.device": "cpu",
            "das.teacher_prob_threshold": 0.3, "das.keep_ratio_threshold": 0.05,
            "sft.epochs": 3, "sft.per_device_batch_size": 2, "sft.grad_accum": 1, "sft.checkpoint_steps": 2,
            "sft.cutoff_len": 512, "eval.batch_size": 4,
            # not below the teacher's answers: the quality filter rejects an answer longer than the
            # student may write at evaluation (too_long_to_generate), and 8 tokens rejected them all
            "eval.max_new_tokens": 128,
            "eval.qualitative_index": 2, "eval.n_random_examples": 1,
            # gpt-oss's tokenizer (on Colab it comes from the Hub): the analyses' harmony route needs it
            "teacher.tokenizer": str(tokenizer_dir("gptoss")),
        }
        # PROFILE and RUN_DIR stay None: colab profile, run on Drive. The form's fields as a student fills them.
        form = {"REPO_URL": str(source), "OVERRIDES": overrides}

        # 01, first try: the real install, then the teacher check finds no URL.
        message = refused("01", form, tag="_no_url")
        assert message.startswith("⛔ Adresse du professeur manquante") and "TEACHER_URL" in message
        setup = _setup_output(executed / "01_donnees_no_url.ipynb")
        assert "Installation des dépendances avec pip (requirements.txt) : 1 à 2 minutes" in setup
        assert "Installation : terminée en " in setup and "Versions : torch " in setup and "transformers " in setup
        assert "Environnement : Google Colab. Profil : colab." in setup and "run sur Google Drive" in setup
        assert (clone / ".dasd_install_stamp").is_file() and (run_dir / "data" / "train.jsonl").is_file()

        # 01, second try: the URL is given, the key is not in Colab's secrets yet.
        form["TEACHER_URL"] = server.base_url
        message = refused("01", form, tag="_no_key")
        assert "Pas de clé d'API pour le professeur" in message and "panneau « Secrets »" in message
        assert "OPENAI_API_KEY" in message and server.n_requests == 0
        assert "Installation : déjà à jour" in _setup_output(executed / "01_donnees_no_key.ipynb")

        # 01, third try: the key is in the secrets; the check sends one request, kept for notebook 02.
        secrets.write_text(json.dumps({"OPENAI_API_KEY": KEY}))
        nb01 = run("01", form)
        text01 = "".join(_text(c) for c in _code_cells(nb01))
        assert "Professeur joignable" in text01 and server.n_requests == 1
        assert "request_hash" not in text01  # the verdict, not the stored record
        settings = json.loads((drive / "MyDrive" / "dasd" / "notebook_settings.json").read_text())
        assert settings == {"repo_url": str(source), "profile": "colab", "run_dir": "runs/colab"}
        assert json.loads((run_dir / "config.json").read_text())["teacher"]["base_url"] == server.base_url
        # the repository moves on: the next notebook's set-up updates the clone instead of nesting one
        (source / "UPDATED.txt").write_text("new commit\n")
        _git("add", "-A", cwd=source)
        _git("commit", "-qm", "update", cwd=source)

        # 03 before 02: stops before loading any model, naming the notebook to run first.
        message = refused("03", tag="_before_02")
        assert "Exécutez d'abord le notebook 02_generation_professeur" in message and "/teacher/stage" in message

        # 02: no parameter at all (URL and run from notebook 01's settings); its first request was 01's.
        nb02 = run("02")
        assert (clone / "UPDATED.txt").is_file() and not (clone / "dasd-course").exists()
        assert server.n_requests == 16 and all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
        text02 = "".join(_text(c) for c in _code_cells(nb02))
        assert "stage1 : 7 requêtes envoyées par cette exécution, 1 relues dans le cache" in text02

        # 03 in its own fresh kernel finds 02's teacher records on Drive and sends nothing.
        run("03")
        assert server.n_requests == 16
        assert (run_dir / "das" / "stage1_sft.jsonl").is_file()
        # The harmony streams were located, not dropped: every teacher answer was scored by DAS.
        das_summary = json.loads((run_dir / "das" / "summary.json").read_text())
        for stage in das_summary["stages"].values():
            assert stage["scored"] > 0 and stage["n_unscorable"] == 0, stage

        # 04: the kernel is killed once a checkpoint is on Drive; the re-run resumes from it.
        checkpoints = run_dir / "sft" / "stage1" / "checkpoints"
        failure: dict = {}

        def first_try():
            try:
                run("04", tag="_killed")
            except Exception as exc:  # noqa: BLE001 - the dead kernel is the point
                failure["error"] = exc

        thread = threading.Thread(target=first_try)
        thread.start()
        deadline = time.time() + 300
        while time.time() < deadline and not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
            time.sleep(0.02)
        for process in _kernel_pids():
            process.kill()
        thread.join(120)
        assert "error" in failure, "notebook 04 finished before it could be killed"
        assert not (run_dir / "sft" / "stage1" / "manifest.json").exists()
        nb04 = run("04")
        assert "reprise depuis le checkpoint checkpoint-" in "".join(_text(c) for c in _code_cells(nb04))
        manifest = json.loads((run_dir / "sft" / "stage1" / "manifest.json").read_text())
        assert manifest["resumed_from"].startswith("checkpoint-") and not checkpoints.exists()

        # 05 with a changed result-changing parameter is refused, with the key, the saved value, the ways out.
        message = refused("05", {"OVERRIDES": {"sft.lr_stage2": 5e-5}}, tag="_refused")
        assert "sft.lr_stage2" in message and "0.0001" in message and "5e-05" in message
        assert "RUN_DIR" in message and "FORCE = True" in message
        assert json.loads((run_dir / "config.json").read_text())["sft"]["lr_stage2"] == 1e-4
        run("05")
        run("06")
        nb07 = run("07")
        # 08 on the colab profile's defaults: capability checks first, then one random-seed variant.
        before = server.n_requests
        nb08 = run("08")
        analysis_requests = server.requests[before:]
    shown = _output_of(nb07, "nb.show_report(")
    assert "<iframe srcdoc=" in shown and "rapport.html</a>" in shown and "data:image/png;base64" in shown
    assert (run_dir / "report" / "rapport.html").is_file()
    # the student's notes: the skeleton copied next to the run on Drive, included by the report
    assert "notes_etudiant.md (à côté du run) ; c'est encore le squelette" in _output_of(nb07, "nb.student_notes(")
    assert (run_dir / "notes_etudiant.md").is_file()
    assert "Discussion pas encore écrite" in (run_dir / "report" / "rapport.md").read_text(encoding="utf-8")
    # the report to hand in: a standalone folder and its zip next to the run, offered for download
    archive = run_dir / "rapport_colab.zip"
    assert "rapport_colab.zip" in _output_of(nb07, "nb.deliver_report(") and archive.is_file()
    assert (tmp_path / "downloads.txt").read_text(encoding="utf-8").split() == [str(archive)]
    assert (run_dir / "rapport_colab" / "notes_etudiant.md").is_file()

    results = json.loads((run_dir / "analyses" / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["das", "random_s1"]  # one seed, no whole pool
    # gpt-oss takes the harmony route (/v1/completions), which this chat-only server refuses: both analyses say so
    assert "harmony route" in results["provenance"]["reason"] and "prompt_logprobs" in results["provenance"]["reason"]
    assert "continuation request" in results["mixed_policy"]["reason"] and "raw harmony prompt" in results["mixed_policy"]["reason"]
    # three single requests (the route's rendering check, then one per analysis), and the distilled
    # student never answered the pool for nothing
    assert len(analysis_requests) == 3 and not (run_dir / "analyses" / "mixed_policy" / "student_answers.jsonl").exists()
    text08 = "".join(_text(c) for c in _code_cells(nb08))
    assert "plan étendu (3 graines aléatoires, pool entier)" in text08 and "Provenance non calculée" in text08
    assert "Le filtrage DAS aide-t-il" in (run_dir / "report" / "rapport.md").read_text(encoding="utf-8")
    # the key never reached the run directory on Drive or any notebook output
    for path in [*drive.rglob("*"), *executed.glob("*.ipynb")]:
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html", ".ipynb", ".txt"):
            assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    for number in ("02", "03", "08"):
        assert "Profil : colab." in _setup_output(executed / f"{notebooks[number].stem}.ipynb")
