"""A Colab rehearsal: the seven generated notebooks, headless, each in a fresh kernel, as on Colab.

What stands in for Colab: ``google.colab`` is the package in ``tests/support/colab_stub`` (Drive = a
directory, secrets = a JSON file; the API key is *only* there, not in the environment),
``COLAB_RELEASE_TAG`` is set, the repository is cloned by the set-up cell from a local git
snapshot of this working tree (pip skipped: the environment is complete), the teacher is the
real-HTTP fake OpenAI server, and the student is a tiny random Qwen3 with the real Qwen3 tokenizer
and Qwen3-4B-Instruct-2507's chat template. All notebooks share one run directory "on Drive".

Checked: notebook 01 alone carries the run's parameters, later notebooks get none and load them
from Drive (03 run alone after 02 finds its teacher records); a kill of the kernel during 04
resumes from the last checkpoint; a changed parameter in 05 is refused with the key, the saved
value and the two ways out; the clone is updated (not nested) on a re-run; 07 inlines the report.
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

ROOT = Path(__file__).resolve().parents[2]
STUB = Path(__file__).resolve().parents[1] / "support" / "colab_stub"
KEY = "sk-rehearsal-colab-secret-4242"

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


def _outputs(path: Path, cell: int) -> str:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    text = []
    for output in code[cell].get("outputs", []):
        if output.get("output_type") == "stream":
            text.append(output["text"])
        elif "data" in output:
            text.append(output["data"].get("text/html", "") + output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            text.append(output["evalue"])
    return "".join(text)


def test_colab_rehearsal(tmp_path, tiny_qwen3_dir, monkeypatch):
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
    secrets.write_text(json.dumps({"OPENAI_API_KEY": KEY}))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name, value in {
        "COLAB_RELEASE_TAG": "release-colab-rehearsal", "DASD_DRIVE_MOUNT": str(drive),
        "DASD_REPO_URL": str(source), "DASD_REPO_DIR": str(clone), "DASD_SKIP_PIP": "1",
        "FAKE_COLAB_SECRETS": str(secrets), "FAKE_COLAB_DOWNLOADS": str(tmp_path / "downloads.txt"), "PYTHONPATH": str(STUB), "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(name, value)
    run_dir = drive / "MyDrive" / "dasd" / "runs" / "colab"

    rows = load_split("bundled", "validation")
    # vLLM-style harmony token lists (analysis channel, markers, trailing <|return|>): the real path.
    with FakeOpenAIServer(answers=answers_from_rows(rows), default="harmony") as server:
        first_params = {
            # PROFILE and RUN_DIR stay None: colab profile, run on Drive, chosen by the set-up cell.
            "OVERRIDES": {
                "data.source": "bundled", "data.train_split": "validation", "data.train_offset": 50,
                "data.n_train": 8, "data.n_eval": 4, "teacher.base_url": server.base_url, "teacher.concurrency": 4,
                "teacher.max_tokens": 256, "student.model": str(tiny_qwen3_dir), "student.device": "cpu",
                "das.teacher_prob_threshold": 0.3, "das.keep_ratio_threshold": 0.05,
                "sft.epochs": 3, "sft.per_device_batch_size": 2, "sft.grad_accum": 1, "sft.checkpoint_steps": 2,
                "sft.cutoff_len": 512, "eval.max_new_tokens": 8, "eval.batch_size": 4,
                "eval.qualitative_index": 2, "eval.n_random_examples": 1,
            },
        }

        def run(number: str, params: dict | None = None, tag: str = "") -> Path:
            target = executed / f"{notebooks[number].stem}{tag}.ipynb"
            pm.execute_notebook(str(notebooks[number]), str(target), parameters=params or {},
                                cwd=str(tmp_path), kernel_name="python3", progress_bar=False, log_output=False)
            return target

        # 01: clones the repository, mounts "Drive", writes the run's one config.json there.
        nb01 = run("01", first_params)
        setup = _outputs(nb01, 1)
        assert "Environnement : Google Colab. Profil : colab." in setup
        assert "GPU : aucun (CPU seulement)." in setup and "run sur Google Drive" in setup
        assert (run_dir / "config.json").is_file() and (clone / "dasd_utils" / "colab.py").is_file()
        # the repository moves on: the next notebook's set-up updates the clone instead of nesting one
        (source / "UPDATED.txt").write_text("new commit\n")
        _git("add", "-A", cwd=source)
        _git("commit", "-qm", "update", cwd=source)

        # 02: no parameter at all; the key comes from the Colab secrets stand-in only.
        nb02 = run("02")
        assert (clone / "UPDATED.txt").is_file() and not (clone / "dasd-course").exists()
        assert server.n_requests == 16 and all(r["auth"] == f"Bearer {KEY}" for r in server.requests)

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
        assert "reprise depuis le checkpoint checkpoint-" in _outputs(nb04, 3)
        manifest = json.loads((run_dir / "sft" / "stage1" / "manifest.json").read_text())
        assert manifest["resumed_from"].startswith("checkpoint-") and not checkpoints.exists()

        # 05 with a changed result-changing parameter is refused, with the key, the saved value, the ways out.
        with pytest.raises(pm.PapermillExecutionError) as refused:
            run("05", {"OVERRIDES": {"sft.lr_stage2": 5e-5}}, tag="_refused")
        message = str(refused.value)
        assert "sft.lr_stage2" in message and "0.0001" in message and "5e-05" in message
        assert "RUN_DIR" in message and "FORCE = True" in message
        assert json.loads((run_dir / "config.json").read_text())["sft"]["lr_stage2"] == 1e-4
        run("05")
        run("06")
        nb07 = run("07")
    shown = _outputs(nb07, 6)
    assert "<iframe srcdoc=" in shown and "rapport.html</a>" in shown and "data:image/png;base64" in shown
    assert (run_dir / "report" / "rapport.html").is_file()
    # the student's notes: the skeleton copied next to the run on Drive, included by the report
    assert "notes_etudiant.md (à côté du run) ; c'est encore le squelette" in _outputs(nb07, 3)
    assert (run_dir / "notes_etudiant.md").is_file()
    assert "Discussion pas encore écrite" in (run_dir / "report" / "rapport.md").read_text(encoding="utf-8")
    # the report to hand in: a standalone folder and its zip next to the run, offered for download
    archive = run_dir / "rapport_colab.zip"
    assert "rapport_colab.zip" in _outputs(nb07, 8) and archive.is_file()
    assert (tmp_path / "downloads.txt").read_text(encoding="utf-8").split() == [str(archive)]
    assert (run_dir / "rapport_colab" / "notes_etudiant.md").is_file()
    # the key never reached the run directory on Drive or any notebook output
    for path in [*run_dir.rglob("*"), *executed.glob("*.ipynb")]:
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html", ".ipynb", ".txt"):
            assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    for number in ("02", "03"):
        assert "Profil : colab." in _outputs(executed / f"{notebooks[number].stem}.ipynb", 1)
