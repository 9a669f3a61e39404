# One-command install and entry points; see README.md.
#
# mmcv 2.1.0 ships only as a source archive and must be compiled against the
# torch that is already installed, without build isolation, so the order
# below matters: torch, then a setuptools that still has pkg_resources, then
# mmcv, then this project. The stamp file makes a second `make` a no-op.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Extra pip arguments for the torch install, e.g. a CUDA wheel index:
#   make TORCH_PIP_ARGS="--index-url <CUDA wheel index>" install
TORCH_PIP_ARGS ?=
# Which mmcv ops to compile: empty (auto: CUDA ops if torch sees a GPU) or
# "cpu" to hide the GPU during the build and compile CPU ops only, which is
# all FPN, PSPNet and FCN need (README, "GPU machines").
MMCV_OPS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test repro demo clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip "setuptools>=77,<81" wheel ninja
	$(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	@echo ">>> building mmcv 2.1.0 with ops against the installed torch (about 40 min on 2 cores the first time; pip caches the wheel)"
	$(if $(filter cpu,$(MMCV_OPS)),CUDA_VISIBLE_DEVICES= FORCE_CUDA=0,) MMCV_WITH_OPS=1 \
		$(BIN)/python -m pip install --no-build-isolation mmcv==2.1.0
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The paper's reproduction: every dataset is fetched and converted first, so
# that a missing release stops the run before any training starts; then the
# rest of the pipeline (README, "The pipeline").
repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro fetch convert
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro report environment

# The same pipeline on CPU, offline, on the CCP photos bundled with the
# tests (params.yaml, `demo:`); writes results/demo/.
demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro demo-report

clean-venv:
	rm -rf $(VENV)
