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

demo: setup
	$(VENV)/bin/coldstart run --dataset ml-100k --backbone deepfm --methods base \
	  --runs 3 --seed 0 --output $(DEMO_OUT) --fresh

test: setup
	$(PY) -m pytest tests -q -rs

clean:
	rm -rf $(VENV) runs
