# Satchel: `make run` starts the service, `make test` runs the whole suite.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PHOTOS  ?= photos
DATA    ?= data

.PHONY: run test lint bench image clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,uvloop]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/satchel admin demo --photos $(PHOTOS)
	$(VENV)/bin/satchel serve --photos $(PHOTOS) --data $(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/mypy tests

# The whole suite keeps at least the share of lines it covered when the floor was set
# (83.3%, issue 17). A run of a few tests: make test COVERAGE= PYTEST_ARGS=tests/unit
COVERAGE ?= --cov=satchel --cov-report=term:skip-covered --cov-fail-under=83
# Tests run in two processes (pytest-xdist): most of the suite waits on real peers and
# sockets, so two halve it (837 -> 412 s here). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) $(COVERAGE) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/archive_bench.py
	$(PY) bench/small_files_bench.py
	$(PY) bench/shares_bench.py
	$(PY) bench/files_bench.py
	$(PY) bench/throttle_bench.py
	$(PY) bench/s3_bench.py
	$(PY) bench/metrics_bench.py

# The container image, built with buildah and started by chroot (deploy/build-image.sh)
image:
	bash deploy/build-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
