# feast-parity: everything a newcomer runs goes through these targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: install demo test test-unit lint bench-serve bench-check bench-load clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m feast_parity.demo

test: install
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not e2e"

lint: install
	$(VENV)/bin/ruff check feast_parity tests benchmarks feast_repo
	$(VENV)/bin/ruff format --check feast_parity tests benchmarks feast_repo
	$(VENV)/bin/mypy feast_parity/parity

bench-serve: install
	$(PY) benchmarks/serve_overhead.py --out docs/performance.md

bench-check: install
	$(PY) benchmarks/check_throughput.py --out docs/performance.md

bench-load: install
	$(PY) benchmarks/serve_load.py --out docs/performance.md

clean:
	rm -rf $(VENV) feast_repo/data .pytest_cache .hypothesis
