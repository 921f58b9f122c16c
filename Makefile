# torchyard: every target is a thin call into `python -m builder`.
# TAG defaults to the tag matrix.yaml names as default; TAG=all means every tag.
TAG ?=
REPO ?= torchyard
VENV := .venv
PY := $(VENV)/bin/python
NOCACHE ?=
REQUIRE_GPU ?=
DATA ?=
WORKSPACE ?= workspace
BIND ?= 127.0.0.1
JUPYTER_PORT ?= 8888
SSH_PORT ?= 2222
TAG_ARG := $(if $(TAG),--tag $(TAG))
REGISTRY ?=
REGISTRY_ARG := $(if $(REGISTRY),--registry $(REGISTRY))
BUILDER := $(PY) -m builder --repo $(REPO)

.DEFAULT_GOAL := help
.PHONY: help list validate render lock base build smoke run size verify push pull test unit-test docker-test clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

list: $(VENV)/.installed ## every tag with its torch, torchvision, CUDA, cuDNN, NCCL, Python, minimum driver
	@$(BUILDER) list

validate: $(VENV)/.installed ## check matrix.yaml (or TAG=…) against the compatibility facts
	@$(BUILDER) validate $(TAG_ARG)

render: $(VENV)/.installed ## regenerate images/<tag>/ from matrix.yaml for every tag
	@$(BUILDER) render

lock: $(VENV)/.installed ## resolve TAG=… (or all) to images/<tag>/requirements.lock: every package's version and sha256
	@$(BUILDER) lock $(TAG_ARG)

base: $(VENV)/.installed ## make the base image TAG=… needs (mmdebstrap + docker import, or pull by digest)
	@$(BUILDER) base $(TAG_ARG)

build: $(VENV)/.installed ## validate, render and build TAG=… as torchyard:<tag> (NOCACHE=1: every step anew)
	@$(BUILDER) build $(TAG_ARG) $(if $(NOCACHE),--no-cache)

smoke: $(VENV)/.installed ## run the smoke suite in torchyard:<tag> (GPUs when present); reports/<tag>/smoke.json
	@$(BUILDER) smoke $(TAG_ARG) $(if $(REQUIRE_GPU),--require-gpu) $(if $(DATA),--data $(DATA))

run: $(VENV)/.installed ## start TAG=…'s workspace: JupyterLab (URL with token printed), SSH with your key, ./workspace mounted
	@$(BUILDER) run $(TAG_ARG) --workspace $(WORKSPACE) --bind $(BIND) --jupyter-port $(JUPYTER_PORT) --ssh-port $(SSH_PORT)

size: $(VENV)/.installed ## size report of TAG=… (total, layers, largest packages) into reports/<tag>/; checks size_budget
	@$(BUILDER) size $(TAG_ARG)

verify: $(VENV)/.installed ## rebuild TAG=… without cache; compare package sets and file contents, name what differs
	@$(BUILDER) verify $(TAG_ARG)

push: $(VENV)/.installed ## push TAG=… to REGISTRY=host[:port]/ns as <REGISTRY>/torchyard:<tag>; record the digest in digests/<tag>.json
	@$(BUILDER) push $(TAG_ARG) $(REGISTRY_ARG)

pull: $(VENV)/.installed ## pull <REGISTRY>/torchyard:<tag>, refused unless its digest is the recorded one
	@$(BUILDER) pull $(TAG_ARG) $(REGISTRY_ARG)

test: $(VENV)/.installed ## unit tests and docker tests (CI=true: a missing engine fails)
	$(PY) -m pytest

unit-test: $(VENV)/.installed ## unit tests only (no Docker engine needed)
	$(PY) -m pytest -m 'not docker'

docker-test: $(VENV)/.installed ## docker tests only: build a real image and check it
	$(PY) -m pytest -m docker

clean: $(VENV)/.installed ## remove the torchyard:* images (the base images and build cache stay)
	@$(BUILDER) clean
