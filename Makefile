# kubetask — everything a developer runs. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: all install lock run test lint format mypy bench clean cluster-build cluster-up cluster-down s3-build

all: lint mypy test

$(STAMP): pyproject.toml constraints.txt
	@echo "installing kubetask and its ML dependencies (PyTorch, Optuna, SDV): a few minutes the first time..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,server,ml]'
	touch $(STAMP)

install: $(STAMP)

## lock: record the versions installed now (after a dependency change) in constraints.txt
lock: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,server,ml]'
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

## run: the embedded default — API + controller + local backend + a real Redis, on 127.0.0.1
run: install
	$(PY) -m kubetask.api --port $(PORT)

## test: the whole suite (unit, component, integration, the real control plane); tiny data
test: install cluster-build s3-build
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

mypy: install
	$(VENV)/bin/mypy

## bench: figures as ratios against baselines measured in the same run (not tests); the
## kubernetes figure runs against the real control plane, built by cluster-build
bench: install cluster-build
	$(PY) -m bench

## cluster-build: kube-apiserver, kube-controller-manager, kube-scheduler and etcd from the
## official Go modules (once: ~8 min cold on 2 cores; seconds when nothing changed)
cluster-build:
	scripts/cluster.sh build

## cluster-up: that control plane on 127.0.0.1 with a process node; then
## eval "$$(scripts/cluster.sh env)"; make run   -- kubetask on real Kubernetes
cluster-up: install cluster-build
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

## s3-build: MinIO from the Go module proxy, the real S3-compatible server the artifact store's
## tests run against (tests/s3/; once: ~4 CPU-min cold; seconds when nothing changed)
s3-build:
	scripts/s3.sh build

clean:
	rm -rf $(VENV) .kubetask .pytest_cache .mypy_cache .ruff_cache

.PHONY: images e2e-kind chart-lint

## images: the controller, trainer and gan images, with docker or podman (whichever runs);
## BASE_IMAGE=..., IMAGE_TAG=..., IMAGE_PREFIX=..., ENGINE=docker|podman; `make images IMAGES=controller`
IMAGES ?= controller trainer gan
images:
	scripts/build-images.sh $(IMAGES)

## e2e-kind: kind cluster + built images + helm install + a datagen job over REST (needs Docker and network)
e2e-kind:
	scripts/e2e-kind.sh

## chart-lint: render, lint and validate the Helm chart (also part of `make test`)
chart-lint: install
	$(PY) -m pytest tests/component/test_chart.py -q
