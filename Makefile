# Two entry points for a fresh machine with only Python and pip:
#   make demo   -- installs into .venv, trains a small tokenizer on the built-in emoji set
#   make test   -- installs into .venv (with the dev extra) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --output_dir outputs/demo

test: $(STAMP)
	$(PY) -m pytest tests

bench: $(STAMP)
	$(PY) benchmarks/bench_tokenizer.py

clean:
	rm -rf $(VENV) outputs
