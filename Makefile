# The two commands: `make run` and `make test`. Both start from a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
CONFIG ?=

.PHONY: bench-tools run test fuzz memcheck bench bench-report soak faults redis-server prometheus lock audit clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies only, exactly as pinned (with hashes) in the lock file.
$(VENV)/.runtime: requirements.lock requirements-build.lock pyproject.toml gateway/safety/_wordscore.c | $(PY)
	$(PIP) --require-hashes -r requirements-build.lock
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	@$(PY) -c "import gateway.safety._wordscore" 2>/dev/null || echo "note: no C compiler or Python headers: the injection detector's word scoring runs in Python, several times slower (install gcc and python3-dev, then: make clean run)"
	touch $@

$(VENV)/.dev: requirements-dev.lock $(VENV)/.runtime
	$(PIP) --require-hashes -r requirements-dev.lock
	touch $@

run: $(VENV)/.runtime
	$(VENV)/bin/switchyard serve $(if $(CONFIG),--config $(CONFIG))

# Tests start their own private redis-server processes on free ports; it only has to be installed.
redis-server:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# The observability tests run a real Prometheus against the gateway, and promtool on the shipped alert rules.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus)

# tests/test_bench_smoke.py runs the benchmark harness briefly: wrk loads, nginx is its mock upstream.
bench-tools:
	@command -v wrk >/dev/null && command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk nginx-light)

test: $(VENV)/.dev redis-server prometheus bench-tools
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest $(PYTEST_ARGS)

# The fuzz tests at length: thousands of random examples each instead of `make test`'s few repeatable ones.
fuzz: $(VENV)/.dev
	SWITCHYARD_FUZZ=1 LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest tests/test_openapi_schemathesis.py tests/test_parser_fuzz.py $(PYTEST_ARGS)

# The C module under valgrind (a minute or two): fails on any memcheck error reported inside it. CPython's own
# reports (it is not built for valgrind) are left out by keeping only those whose stack passes through the module.
IN_WORDSCORE := '^==[0-9]+== +(at|by) .*_wordscore\.(c:|cpython)'
memcheck: $(VENV)/.runtime
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	PYTHONMALLOC=malloc valgrind --error-exitcode=0 --num-callers=12 --log-file=.memcheck.log $(PY) tests/memcheck_wordscore.py
	@if grep -Eq $(IN_WORDSCORE) .memcheck.log; then \
		grep -E -B4 -A12 $(IN_WORDSCORE) .memcheck.log | head -60; echo "memcheck: errors in _wordscore.c"; exit 1; fi
	@echo "memcheck: nothing reported inside _wordscore.c (log: .memcheck.log)"

bench: $(VENV)/.runtime redis-server
	$(PY) bench/run.py $(BENCH_ARGS)

# The full benchmark (several minutes; not part of `make test`): rewrites docs/benchmarks.md and its chart.
bench-report: $(VENV)/.dev redis-server
	$(PY) bench/run.py --rounds 3 --out docs/benchmarks.md --chart docs/img/benchmarks.png $(BENCH_ARGS)

# Robustness runs (minutes; `make test` runs their short versions). See docs/robustness.md.
soak: $(VENV)/.runtime redis-server
	$(PY) bench/soak.py --redis $(SOAK_ARGS)

FAULTS_SCALE ?= 4
faults: $(VENV)/.dev redis-server
	FAULTS_SCALE=$(FAULTS_SCALE) LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest tests/test_faults_under_load.py $(PYTEST_ARGS)

# Re-pin after editing pyproject.toml dependencies (needs network access to PyPI).
lock:
	$(PYTHON) -m venv /tmp/switchyard-lock && /tmp/switchyard-lock/bin/pip install --quiet pip-tools
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --extra dev -o requirements-dev.lock pyproject.toml
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements-build.lock requirements-build.in

# Known vulnerabilities of every pinned package, from PyPI's advisory data (AUDIT_ARGS="-s osv" asks OSV instead).
# --strict: a package the service cannot look up fails the audit rather than passing unaudited.
audit: $(VENV)/.dev
	@for lock in requirements.lock requirements-dev.lock requirements-build.lock; do \
		echo "== $$lock"; \
		$(VENV)/bin/pip-audit --strict --disable-pip --require-hashes --progress-spinner off -r $$lock $(AUDIT_ARGS) || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info gateway/safety/*.so
