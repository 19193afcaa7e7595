# make demo: set up .venv and run the pipeline on MovieLens-100K (pulled at run time).
# make test: set up .venv and run the test suite.
VENV ?= .venv
# Interpreter for the venv: CPython 3.11 (default: python3.11, else python3 if it is 3.11).
PYTHON ?=
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: setup demo test clean

setup:
	@VENV='$(VENV)' PYTHON='$(PYTHON)' bash scripts/setup_env.sh

# Three methods, 2 seeds; CVAR and CSDM train their generator on the current warm split for one
# epoch per warm phase (README, "make demo"). Library logs: $(DEMO_OUT)/logs/pipeline.log.
DEMO_SET ?= --set cvar.warm_epochs=1 --set csdm.warm_epochs=1 --set csdm.warm_data=current
# 5 pretraining epochs: ML-100K's base split is 32 batches, so 5 epochs give the backbone the
# optimizer steps one epoch gives on ML-1M (159 batches); with 1 it is barely trained (README).
DEMO_PRETRAIN ?= --pretrain-epochs 5

demo: setup
	$(VENV)/bin/coldstart run --dataset ml-100k --backbone deepfm --methods base,cvar,csdm \
	  --runs 2 --seed 0 $(DEMO_PRETRAIN) $(DEMO_SET) --output $(DEMO_OUT) --fresh
	@echo "plot: $(DEMO_OUT)/auc_by_phase.png"

# One pytest worker per core (pytest-xdist), each test file on one worker: much of the suite is
# single-threaded Beam and Python, so two workers on these 2 cores halve its wall time.
TEST_WORKERS ?= auto

test: setup
	$(PY) -m pytest tests -q -rs -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) runs
