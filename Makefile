# Two commands on a fresh machine: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup lock demo test test-fast lint bench bench-gpu bench-peer models reports proto certs images-check clean

# The Debian check runs every time (it is a few dpkg queries); the venv only when the lock
# changes. Everything Python comes from requirements/lock.txt (exact pins and hashes, made by
# `make lock`), so what a registry publishes later cannot change an install.
setup:
	bash scripts/setup-system.sh
	$(MAKE) --no-print-directory $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolves pyproject.toml into requirements/{lock,server,edge,bench-peer}.txt and pylock.toml
# (scripts/lock.sh, uv); uv itself comes from the lock's own hashed entry.
lock:
	test -x $(VENV)/bin/uv || { test -x $(PY) || python3 -m venv $(VENV); \
		awk '/^uv==/{p=1} p{print} p&&!/\\$$/{exit}' requirements/lock.txt > $(VENV)/uv-lock.txt && \
		$(PY) -m pip install -q --require-hashes --no-deps -r $(VENV)/uv-lock.txt; }
	bash scripts/lock.sh

demo: setup
	$(PY) scripts/demo.py

# Two test processes (pytest-xdist), one per core of the 2-core machines CI runs on; each test
# file stays in one process, so a module's corpus or servers are built once.
PYTEST = $(PY) -m pytest -q -n 2 --dist loadfile

test: setup
	$(PYTEST) --durations=25

test-fast: setup
	$(PYTEST) -m 'not slow'

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The quick set (under 10 minutes on 2 CPU cores; the generated corpora the runtime check reads
# are made first if absent, with make-models.sh's seeds); each benchmark's --help gives its full size.
bench: setup
	$(PY) -m benchmarks.codec_speed
	$(PY) -m benchmarks.ensemble_speed
	$(PY) -m benchmarks.runtime_speed
	test -d data/scenes || $(PY) -m training.cli synth --out data/scenes --clips-per-class 100 --seed 0
	test -d data/lossless || $(PY) -m training.cli synth-lossless --out data/lossless --tracks 200 --seed 0
	$(PY) -m benchmarks.runtime_agreement --quick --lossless data/lossless
	$(PY) -m benchmarks.server_profile --streams 32 --clips 3 --runtimes auto --threads 2
	$(PY) -m benchmarks.server_throughput --streams 1,8,32 --clips 1
	$(PY) -m benchmarks.stream_latency --streams 1,8 --clips 2
	$(PY) -m benchmarks.edge_cost
	$(PY) -m benchmarks.wire_efficiency
	$(PY) -m benchmarks.features_speed
	$(PY) -m benchmarks.coding_pipeline
	$(PY) -m benchmarks.abuse --seconds 20
	$(PY) -m benchmarks.decode_sandbox
	$(PY) -m benchmarks.grid_tests

# The GPU set (issue targets for a GPU server): the paper-size and compact ensembles in fp32,
# bf16 and compiled; the batcher, latency and stream capacity on CUDA; the front end on the GPU.
# The figures in docs/performance.md (On a GPU) come from these commands, one H200, one run.
bench-gpu: setup
	$(PY) -m benchmarks.gpu_ensemble --device cuda --preset paper --clips 96
	$(PY) -m benchmarks.gpu_ensemble --device cuda --preset compact --clips 96
	$(PY) -m benchmarks.stream_latency --device cuda --streams 1,8,64 --clips 2
	$(PY) -m benchmarks.stream_capacity --device cuda --start 256 --clips 1
	$(PY) -m benchmarks.stream_capacity --device cuda --preset paper --start 256 --clips 1
	$(PY) -m benchmarks.server_throughput --device cuda --streams 1,8,32,128 --clips 2
	$(PY) -m benchmarks.features_speed --device cuda

# This server beside BentoML serving the same ensemble (benchmarks/peer_bentoml.py). BentoML is
# benchmark-only: its own hashed lock, requirements/bench-peer.txt (lock.txt's pins for every
# shared package), goes into .venv here and nowhere else; the server and edge never get it.
bench-peer: setup
	$(PY) -m pip install -q --require-hashes -r requirements/bench-peer.txt
	$(PY) -m benchmarks.peer_bentoml

# Regenerates the gRPC code from proto/scene_classifier.proto (a test checks it is current).
proto: setup
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/scene_classifier.proto

# Rebuilds the shipped checkpoints (uses a GPU when one is present; hours on 2 CPU cores).
models: setup
	bash scripts/make-models.sh

# Reruns both papers' experiments into reports/ (scripts/make-reports.sh; over an hour of
# training on 2 CPU cores at the committed scale: train_seconds in each report's results.json).
reports: setup
	bash scripts/make-reports.sh

# Development CA, server, Envoy and device certificates and device tokens under certs/
# (README: Security). DEVICES="a b" adds devices; CERTS_GID=N makes keys group-readable.
certs: setup
	PY=$(PY) DEVICES="$(DEVICES)" CERTS_GID="$(CERTS_GID)" bash scripts/make-certs.sh

# Builds the server and edge images for real from requirements/*.txt and runs them together:
# healthcheck, labelled clips from the edge container, /metrics, SIGTERM drain. Sets itself up
# (root: Debian's docker.io and debootstrap, a daemon when none runs); needs no .venv.
images-check:
	bash scripts/images-check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
