# The two commands that matter: `make serve` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
MODELS_DIR ?= models

.PHONY: serve test lint fmt bench bench-quick overload soak loadtest mutate fuzz demo services clean proto

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.runtime: $(PY) pyproject.toml
	$(PIP) install -q -e '.[onnx-export]'
	touch $@

$(VENV)/.dev: $(PY) pyproject.toml
	$(PIP) install -q -e '.[dev,torch]'
	touch $@ $(VENV)/.runtime

$(MODELS_DIR)/modelserve.yaml: | $(VENV)/.runtime
	$(VENV)/bin/modelserve demo --out $(MODELS_DIR)

demo: $(VENV)/.runtime
	$(VENV)/bin/modelserve demo --out $(MODELS_DIR)

serve: $(VENV)/.runtime $(MODELS_DIR)/modelserve.yaml
	$(VENV)/bin/modelserve serve --config $(MODELS_DIR)/modelserve.yaml --host $(HOST) --port $(PORT)

# System services the suite drives for real; the tests start and stop them themselves.
services:
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium unavailable: browser tests will fail"

# TEST_WORKERS=N runs the test files on N pytest-xdist workers: each test file on one worker
# (its module's servers start once), the cluster files together (see tests/conftest.py).
# Measured on a 2-core machine (6 e2e files, 45 tests): 81.5 s in one process, 80.6 s on 2
# workers at load average 2-3 from other work; 207 s and 201 s at load average 5-6. A whole
# run on 2 workers at load average 8-11 ran a fleet test past its 120 s timeout, as 3 workers
# did earlier. With no gain measured, the default runs everything in this process.
TEST_WORKERS ?= 0

test: $(VENV)/.dev services
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 -m "not soak" $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

fmt: $(VENV)/.dev
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(VENV)/.dev
	$(PY) -m benchmarks.run $(if $(PEERS),--peers,) $(BENCH_ARGS)

# Under 2 minutes, for development: single-row /predict and V2 against the no-op ceiling.
bench-quick: $(VENV)/.dev
	$(PY) -m benchmarks.run --quick --single-row --only modelserve,v2,noop $(BENCH_ARGS)

# 10x the measured capacity for 30 s against a real server (see README, Reliability).
overload: $(VENV)/.dev
	$(PY) -m benchmarks.overload $(OVERLOAD_ARGS)

# The minute-long soak test (marker `soak`; `make test` runs its 15 s smoke), then 10 minutes
# of mixed Locust load: RSS growth, failures, descriptors and threads (not in CI).
soak: $(VENV)/.dev
	$(PY) -m pytest -m soak -p no:cacheprovider tests/e2e/test_soak.py
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

# Locust alone (the `loadtest` extra), in its own venv: no models, no torch, no dev tools.
LOADTEST_VENV ?= .venv-loadtest
LOADTEST_EXTRA := import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["loadtest"], sep="\n")

$(LOADTEST_VENV)/.loadtest: pyproject.toml
	$(PYTHON) -m venv $(LOADTEST_VENV)
	$(PYTHON) -c '$(LOADTEST_EXTRA)' > $(LOADTEST_VENV)/requirements.txt
	$(LOADTEST_VENV)/bin/python -m pip install -q -r $(LOADTEST_VENV)/requirements.txt
	touch $@

loadtest: $(LOADTEST_VENV)/.loadtest
	$(LOADTEST_VENV)/bin/locust -f benchmarks/locustfile.py --headless -u $${USERS:-32} -r $${RATE:-8} -t $${DURATION:-30s} --host http://$(HOST):$(PORT) --only-summary

# Mutation testing, on demand and not in CI (see README, Development). MUTANTS narrows it,
# e.g. MUTANTS='modelserve.api.auth*'; results stay in mutants/ for `mutmut show NAME`.
mutate: $(VENV)/.dev
	rm -rf .mutmut-demo  # rebuilt by the first test run, then shared by every mutant's run
	MODELSERVE_TEST_DEMO_DIR=$(CURDIR)/.mutmut-demo \
		$(VENV)/bin/mutmut run --max-children $${JOBS:-2} $(MUTANTS)
	$(VENV)/bin/mutmut results

# schemathesis against a live server's /openapi.json, longer than the run in `make test` (8
# examples per operation and mode); not in CI. FUZZ_EXAMPLES sets the count.
fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest tests/e2e/test_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOADTEST_VENV) build dist src/*.egg-info

# The gRPC message code is generated from src/modelserve/rpc/proto/inference.proto and committed.
# Its descriptors go to a pool of their own rather than protobuf's default one, where they
# would clash with other copies of the same protocol (tritonclient's) in the same process.
proto: $(VENV)/.dev
	$(PY) -m grpc_tools.protoc -I src/modelserve/rpc/proto --python_out=src/modelserve/rpc \
		--mypy_out=src/modelserve/rpc src/modelserve/rpc/proto/inference.proto
	sed -i -e 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile(/' \
		src/modelserve/rpc/inference_pb2.py
	printf 'from google.protobuf.descriptor_pool import DescriptorPool\nPOOL: DescriptorPool\n' >> src/modelserve/rpc/inference_pb2.pyi
