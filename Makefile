# The two commands: `make run` and `make test`. Both start from a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
CONFIG ?=

.PHONY: run test test-fast bench redis-server prometheus lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies only, exactly as pinned (with hashes) in the lock file.
$(VENV)/.runtime: requirements.lock requirements-build.lock pyproject.toml | $(PY)
	$(PIP) --require-hashes -r requirements-build.lock
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
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

test: $(VENV)/.dev redis-server prometheus
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.runtime
	$(PY) bench/run.py $(BENCH_ARGS)

# Re-pin after editing pyproject.toml dependencies (needs network access to PyPI).
lock:
	$(PYTHON) -m venv /tmp/switchyard-lock && /tmp/switchyard-lock/bin/pip install --quiet pip-tools
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --extra dev -o requirements-dev.lock pyproject.toml
	/tmp/switchyard-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements-build.lock requirements-build.in

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
