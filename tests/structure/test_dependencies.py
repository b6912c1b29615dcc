"""What Colab installs: requirements.txt's lower bounds (each one tested by tools/check_min_versions.py), no test-only
tool, and a set-up bootstrap that imports nothing pip has not installed yet but PyYAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def minver():
    return load_script("tools/check_min_versions.py")


def test_every_requirement_has_a_lower_bound_the_job_pins():
    lines = minver().requirement_lines(ROOT / "requirements.txt")
    pins = minver().lower_bound_pins(lines)
    assert len(pins) == len(lines) and all("==" in p for p in pins)
    assert "transformers==5.0" in pins and "peft==0.18" in pins  # an upper bound (<6) is dropped
    assert minver().lower_bound_pins(["foo[bar]>=1.2,<2"]) == ["foo[bar]==1.2"]
    for bad in ("foo", "foo<2", "foo==1.0", "foo>=1,>=2"):
        with pytest.raises(minver().RequirementError):
            minver().lower_bound_pins([bad])


def test_colab_installs_no_test_only_tool():
    names = {minver()._name(line) for line in minver().requirement_lines(ROOT / "requirements.txt")}
    assert not names & {"papermill", "ipykernel", "scipy", "pytest", "nbval", "nbclient", "jupyterlab", "torch"}
    dev = {minver()._name(line) for line in minver().requirement_lines(ROOT / "requirements-dev.txt")}
    assert {"papermill", "ipykernel", "scipy", "pytest"} <= dev
    assert "jupyterlab" not in {minver()._name(x) for x in minver().test_tools(sorted(dev))}


def test_installed_versions_are_compared_release_by_release():
    check = minver().check_pins
    assert check(["numpy==2.0"], {"numpy": "2.0.0"}) == []
    assert check(["torch==2.13.0"], {"torch": "2.13.0+cpu"}) == []
    assert check(["numpy==2.0"], {"numpy": "2.1.0"}) == ["numpy: pinned 2.0, installed 2.1.0"]
    assert check(["python-dotenv==1.0"], {}) == ["python-dotenv: pinned 1.0, installed None"]


def test_the_setup_imports_only_the_standard_library_and_pyyaml_before_pip():
    """On a new machine the set-up imports its install code before pip runs: only what Colab and Kaggle preinstall."""
    code = ("import sys; before = set(sys.modules); import dasd_utils.notebook.setup; "
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    third_party = {m for m in out if m not in sys.stdlib_module_names and m not in ("dasd_utils", "_distutils_hack")
                   and not m.startswith("_")}
    assert third_party <= {"yaml", "cython_runtime"}, third_party  # cython_runtime: made by PyYAML's C extension


def test_set_repo_url_rewrites_the_setup_cells_and_the_badges(tmp_path):
    tool = load_script("tools/set_repo_url.py")
    for relative, _, _ in tool.PLACES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text((ROOT / relative).read_text(encoding="utf-8"), encoding="utf-8")
    counts = tool.set_repo_url("git@github.com:someone/my-dasd.git", "tp4", root=tmp_path)
    assert counts == {"notebooks/src/_setup.py": 1, "notebooks/src/01_donnees.py": 1, "README.md": 8}
    setup = (tmp_path / "notebooks/src/_setup.py").read_text()
    assert 'DEFAULT_REPO_URL = "https://github.com/someone/my-dasd.git"' in setup
    assert 'REPO_URL = "https://github.com/someone/my-dasd.git"  # @param' in (tmp_path / "notebooks/src/01_donnees.py").read_text()
    readme = (tmp_path / "README.md").read_text()
    assert readme.count("colab.research.google.com/github/someone/my-dasd/blob/tp4/notebooks/") == 8
    assert "OWNER/dasd-course" not in setup
    before = {p: (tmp_path / p).read_text() for p, _, _ in tool.PLACES}
    tool.set_repo_url("https://github.com/someone/my-dasd", "tp4", root=tmp_path)  # the same again: nothing changes
    assert {p: (tmp_path / p).read_text() for p, _, _ in tool.PLACES} == before
    for bad in ("https://gitlab.com/a/b", "not a url", "https://github.com/only-owner"):
        with pytest.raises(tool.UrlError):
            tool.set_repo_url(bad, root=tmp_path)
