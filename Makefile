# feast-parity: everything a newcomer runs goes through these targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: install demo test test-unit test-extras lint bench bench-serve bench-check bench-check-10m bench-spark bench-log bench-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m feast_parity.demo_story

# Test workers (pytest-xdist, one per core by default; JOBS=0: one process). An e2e file's tests
# stay on one worker (--dist loadscope, tests/conftest.py), so its module fixtures are built once.
# What each lane runs, how long it takes, what it needs: docs/testing.md
JOBS ?= auto
PYTEST := $(PY) -m pytest -q -n $(JOBS) --dist loadscope --no-loadscope-reorder

test: install
	$(PYTEST)

test-unit: install
	$(PYTEST) -m "not e2e"

# Each extra alone in a fresh venv (uv), running the path the docs give for it: apply, serve, check
test-extras: install
	$(PY) -m pytest -q -p no:cacheprovider tests/extras

lint: install
	$(VENV)/bin/ruff check feast_parity tests benchmarks feast_repo
	$(VENV)/bin/ruff format --check feast_parity tests benchmarks feast_repo
	$(VENV)/bin/mypy feast_parity/parity

# Benchmarks: each writes its own section of docs/performance.md (docs/performance.md says how).
bench: bench-serve bench-check bench-log

bench-serve: install
	$(PY) benchmarks/serve_overhead.py --out docs/performance.md

bench-deps: install
	@$(PY) -c "import evidently" 2>/dev/null || $(PIP) install --quiet "evidently==0.7.23"

bench-check: bench-deps
	$(PY) benchmarks/check_throughput.py --rows 100000 1000000 --out docs/performance.md

bench-check-10m: bench-deps
	$(PY) benchmarks/check_throughput.py --rows 100000 1000000 10000000 --out docs/performance.md

bench-spark: install
	$(PY) benchmarks/check_spark.py --rows 1000000 10000000 --out docs/performance.md

bench-log: install
	$(PY) benchmarks/log_size.py --out docs/performance.md

clean:
	rm -rf $(VENV) feast_repo/data .pytest_cache .hypothesis
