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
# Which mmcv ops to compile: "cpu" (the default: the GPU is hidden during
# the build, which is all FPN, PSPNet and FCN need, and the models still run
# on the GPU) or "cuda" (mmcv's CUDA kernels too: needs an nvcc matching
# torch's CUDA and takes far longer; docs/install.md, "GPU machines").
MMCV_OPS ?= cpu
# Compiler flags for mmcv's ops. Python's own flags carry `-g`, and debug
# information for torch's template-heavy headers is most of the compile
# time; these replace them (they are not added to them), so the
# optimisation level and defines are given as well.
MMCV_CFLAGS ?= -DNDEBUG -fwrapv -O2 -g0

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What was asked for: a change (another torch, other pip arguments, CUDA
# ops) makes the next `make install` reinstall torch and rebuild mmcv.
REQUEST := $(VENV)/.install-request
REQUEST_TEXT := torch=$(TORCH_SPEC) pip=$(TORCH_PIP_ARGS) mmcv_ops=$(MMCV_OPS) cflags=$(MMCV_CFLAGS)

ifeq ($(MMCV_OPS),cpu)
MMCV_BUILD_ENV := CUDA_VISIBLE_DEVICES= FORCE_CUDA=0
else ifeq ($(MMCV_OPS),cuda)
MMCV_BUILD_ENV := FORCE_CUDA=1
else
$(error MMCV_OPS must be cpu or cuda, not '$(MMCV_OPS)')
endif

.PHONY: install test test-fast repro demo gpu-check clean-venv check-stack FORCE \
	wheelhouse offline-install

install: check-stack

# Rewritten only when its text changes, so that it is newer than the stamp
# exactly when the request changed.
$(REQUEST): FORCE
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(REQUEST_TEXT)" ]; then \
		echo '$(REQUEST_TEXT)' > $@; fi

$(STAMP): pyproject.toml Makefile constraints.txt $(REQUEST)
	@rm -f $(STAMP)
	$(BIN)/python -m pip install --upgrade pip "setuptools>=77,<81" wheel ninja
	$(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(MAKE) --no-print-directory build-mmcv
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# mmcv's compiled ops, against the torch in .venv. pip caches the wheel it
# builds, keyed by the source archive alone: a wheel built for another
# request (another torch, CUDA ops) is not reused, and one whose ops do not
# load against this torch is rebuilt without the cache.
MMCV_BUILT_FOR := $(VENV)/.mmcv-built-for
# The compiler runs as tools/mmcv-cxx, which precompiles the header of
# torch's that most of mmcv's files start with, once (about 430 MB here
# for the length of the build): the build takes half the time.
MMCV_PCH := $(abspath $(VENV))/.mmcv-pch
MMCV_PIP := $(MMCV_BUILD_ENV) MMCV_WITH_OPS=1 CFLAGS="$(MMCV_CFLAGS)" CXXFLAGS="$(MMCV_CFLAGS)" \
	MMCV_REAL_CXX="$${CXX:-c++}" CXX="$(CURDIR)/tools/mmcv-cxx" MMCV_PCH_DIR="$(MMCV_PCH)" \
	$(BIN)/python -m pip install --no-build-isolation -c constraints.txt
MMCV_REBUILD := $(MMCV_PIP) --no-cache-dir --force-reinstall --no-deps mmcv==2.1.0
MMCV_OPS_LOAD := $(BIN)/python -c "import mmcv._ext" 2>/dev/null
.PHONY: build-mmcv
build-mmcv:
	@echo ">>> building mmcv 2.1.0 ($(MMCV_OPS) ops) against the installed torch (about 3 min on 2 cores the first time; pip caches the wheel)"
	@rm -rf $(MMCV_PCH) && mkdir -p $(MMCV_PCH)
	@if $(BIN)/python -m pip show -q mmcv 2>/dev/null && \
		[ "$$(cat $(MMCV_BUILT_FOR) 2>/dev/null)" != '$(REQUEST_TEXT)' ]; then \
		echo ">>> mmcv in $(VENV) was built for another request: rebuilding it"; \
		set -x; $(MMCV_REBUILD); \
	else set -x; $(MMCV_PIP) mmcv==2.1.0; fi || { rm -rf $(MMCV_PCH); exit 1; }
	@$(MMCV_OPS_LOAD) || { \
		echo ">>> mmcv's compiled ops do not load against this torch (built for another one): rebuilding without pip's cache"; \
		set -x; $(MMCV_REBUILD); } || { rm -rf $(MMCV_PCH); exit 1; }
	@rm -rf $(MMCV_PCH)
	@echo '$(REQUEST_TEXT)' > $(MMCV_BUILT_FOR)

# Every entry point checks, in about a second, that mmcv's ops still load
# against the torch in .venv (a torch changed by hand breaks them with an
# undefined symbol) and rebuilds mmcv if not.
check-stack: $(STAMP)
	@$(MMCV_OPS_LOAD) || { \
		echo ">>> mmcv's compiled ops in $(VENV) do not load against its torch ($$($(BIN)/python -c 'import torch; print(torch.__version__)')): rebuilding mmcv"; \
		$(MAKE) --no-print-directory build-mmcv; }

# The suite runs one pytest-xdist worker per core (each file on one worker,
# the longest files first, one thread per worker: tests/conftest.py);
# TEST_JOBS=0 runs it in this process, one test after the other.
TEST_JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile \
	--no-loadscope-reorder

test: check-stack
	$(PYTEST)

# The fast tests alone (no end-to-end run of the DVC pipeline, the
# gpu-check, torch.compile, the trainings with and without the speed-ups
# or the tools in fresh interpreters: the tests marked slow).
test-fast: check-stack
	$(PYTEST) -m "not slow"

# The paper's reproduction: every dataset is fetched and converted first, so
# that a missing release stops the run before any training starts; then the
# rest of the pipeline (docs/pipeline.md).
#
# JOBS=N and EXECUTOR=local|slurm run the independent stages side by side
# as submitit jobs (tools/grid.py; `grid:` in params.yaml; GRID_ARGS for
# more, e.g. GRID_ARGS="--partition gpu --account proj"); dvc.lock ends as
# `dvc repro` leaves it. Without them, `dvc repro` runs one stage at a time.
JOBS ?=
EXECUTOR ?=
GRID_ARGS ?=
GRID := $(if $(JOBS)$(EXECUTOR)$(GRID_ARGS),$(BIN)/python tools/grid.py $(if $(JOBS),--jobs $(JOBS)) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(GRID_ARGS))
repro: check-stack
	$(BIN)/dvc repro fetch convert
	$(if $(GRID),$(GRID),$(BIN)/dvc repro) report environment

# Every GPU path checked and timed on this machine's GPU (tools/gpu_check.py;
# README, "GPU machines"): results/gpu_check/gpu_check.{json,md}.
# A .venv made by `make offline-install` (over a GPU machine's own torch,
# without network) is used as it is.
OFFLINE_STAMP := $(VENV)/.offline-install
gpu-check: $(if $(wildcard $(OFFLINE_STAMP)),,check-stack)
	$(BIN)/python tools/gpu_check.py --out results/gpu_check $(GPU_CHECK_ARGS)

# A GPU machine with its own CUDA PyTorch and no network (docs/install.md,
# "A GPU machine without network"): `make wheelhouse` on a networked
# machine writes $(WHEELHOUSE) for that machine's Python; `make
# offline-install` there installs from it over its python3.
WHEELHOUSE ?= wheelhouse
WHEEL_PYTHON ?= 3.12.3
WHEEL_HAVE ?=
wheelhouse: check-stack
	$(BIN)/python tools/wheelhouse.py download --out $(WHEELHOUSE) \
		--python-version $(WHEEL_PYTHON) $(if $(WHEEL_HAVE),--have $(WHEEL_HAVE))

offline-install:
	$(PYTHON) tools/wheelhouse.py install --from $(WHEELHOUSE) --venv $(VENV) \
		--python $(PYTHON)

# The same pipeline on CPU, offline, on the CCP photos bundled with the
# tests (params.yaml, `demo:`); writes results/demo/.
demo: check-stack
	$(if $(GRID),$(GRID),$(BIN)/dvc repro) demo-report

clean-venv:
	rm -rf $(VENV)

FORCE:
