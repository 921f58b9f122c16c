# torchyard: every target is a thin call into `python -m builder`.
# TAG defaults to the tag matrix.yaml names as default; TAG=all means every tag.
#
# Settings reach the CLI as environment variables it reads (TAG= becomes TORCHYARD_TAG), never pasted into
# a recipe's shell line, and $(value ...) hands them over unexpanded: a value is data, which the CLI checks
# by its grammar (exit 2), so `make validate TAG='v2.6-cu124;touch /tmp/x'` runs nothing.
VENV := .venv
PY := $(VENV)/bin/python
BUILDER := $(PY) -m builder
SETTINGS := TAG REPO REGISTRY NOCACHE REQUIRE_GPU DATA WORKSPACE BIND JUPYTER_PORT SSH_PORT PRUNE NODES GPUS KEY SIGNING_KEY UPGRADE DEVCONTAINER_DIR

# export TORCHYARD_<NAME> (or the name given second) = NAME's value, unexpanded, when NAME is given
# (so TORCHYARD_REPO=… alone still counts)
define pass-setting
ifneq ($$(origin $(1)),undefined)
export $(or $(2),TORCHYARD_$(1)) = $$(value $(1))
endif
endef
$(foreach name,$(filter-out GPUS,$(SETTINGS)),$(eval $(call pass-setting,$(name))))
# GPUS= is a cluster job's GPUs per node; TORCHYARD_GPUS=all|none already says whether make smoke/run pass GPUs
$(eval $(call pass-setting,GPUS,TORCHYARD_GPUS_PER_NODE))
# ...and not NAME itself: make would expand a command-line value to put it in the environment
unexport $(SETTINGS)

.DEFAULT_GOAL := help
.PHONY: help list validate render lock fetch base build smoke run size verify push pull sbom verify-image matrix report doctor k8s slurm devcontainer ci test unit-test docker-test mutation docs clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

list: $(VENV)/.installed ## every tag with its torch, torchvision, torchaudio, CUDA, cuDNN, NCCL, Python, minimum driver
	@$(BUILDER) list

validate: $(VENV)/.installed ## check matrix.yaml (or TAG=…) against the compatibility facts
	@$(BUILDER) validate

render: $(VENV)/.installed ## regenerate images/<tag>/ from matrix.yaml for every tag (PRUNE=1: remove folders of other tags)
	@$(BUILDER) render

lock: $(VENV)/.installed ## resolve TAG=a,b,… (or all) with uv to images/<tag>/requirements*.lock: every package's version, wheel and sha256; keeps what a lock holds (UPGRADE=1: the newest)
	@$(BUILDER) lock

fetch: $(VENV)/.installed ## download what TAG=a,b,… (or all)'s locks name into the wheel cache (TORCHYARD_CACHE), sha256 checked; builds read only it
	@$(BUILDER) fetch

base: $(VENV)/.installed ## make the base image TAG=… needs (mmdebstrap + docker import, or pull by digest)
	@$(BUILDER) base

build: $(VENV)/.installed ## validate, render and build TAG=… as torchyard:<tag> (NOCACHE=1: every step anew)
	@$(BUILDER) build

smoke: $(VENV)/.installed ## run the smoke suite in torchyard:<tag> (GPUs when present); reports/<tag>/smoke.json (SIGNING_KEY=: attached to the pushed digest); NODES=n: torchrun across n containers
	@$(BUILDER) smoke

run: $(VENV)/.installed ## start TAG=…'s workspace: JupyterLab (URL with token printed), SSH with your key, ./workspace mounted
	@$(BUILDER) run

size: $(VENV)/.installed ## size report of TAG=… (total, layers, largest packages) into reports/<tag>/; checks size_budget
	@$(BUILDER) size

verify: $(VENV)/.installed ## rebuild TAG=… without cache; compare package sets and file contents, name what differs
	@$(BUILDER) verify

push: $(VENV)/.installed ## push TAG=… to REGISTRY=host[:port]/ns; record the digest in digests/<tag>.json; SIGNING_KEY=key.pem: attach signed provenance, SBOM, smoke
	@$(BUILDER) push

pull: $(VENV)/.installed ## pull <REGISTRY>/torchyard:<tag>, refused unless its digest is the recorded one
	@$(BUILDER) pull

sbom: $(VENV)/.installed ## CycloneDX 1.6 SBOM of torchyard:<tag> (TAG=…) from its manifest and locks: reports/<tag>/sbom.cdx.json
	@$(BUILDER) sbom

verify-image: $(VENV)/.installed ## check TAG=…'s attestations in REGISTRY=… with KEY=pub.pem (offline); print commit, locks, smoke verdicts
	@$(BUILDER) verify-image

matrix: $(VENV)/.installed ## for TAG=a,b,… (default: all): lock check, build, size, smoke, resuming; reports/index.html
	@$(BUILDER) matrix

report: $(VENV)/.installed ## reports/matrix.{json,md} and reports/index.html from the results reports/ holds
	@$(BUILDER) report

doctor: $(VENV)/.installed ## which tags run on this host, and why not (driver, GPU archs, Docker's GPU runtime, shm, disk)
	@$(BUILDER) doctor

k8s: $(VENV)/.installed ## print Kubernetes manifests smoke-testing TAG=… on GPUS=n per node, NODES=m (| kubectl apply -f -)
	@$(BUILDER) k8s

slurm: $(VENV)/.installed ## print an sbatch script (pyxis/enroot) smoke-testing TAG=… on GPUS=n per node, NODES=m (| sbatch)
	@$(BUILDER) slurm

devcontainer: $(VENV)/.installed ## write .devcontainer/<tag>/devcontainer.json (DEVCONTAINER_DIR=…): TAG=…'s image in VS Code or the Dev Containers CLI
	@$(BUILDER) devcontainer

ci: $(VENV)/.installed ## write .github/workflows/images.yml: build, smoke and push per buildable tag, GPU smoke on a self-hosted runner
	@$(BUILDER) ci

test: $(VENV)/.installed ## unit tests and docker tests (CI=true: a missing engine fails)
	$(PY) -m pytest

unit-test: $(VENV)/.installed ## unit tests only (no Docker engine needed)
	$(PY) -m pytest -m 'not docker'

docker-test: $(VENV)/.installed ## docker tests only: build a real image and check it
	$(PY) -m pytest -m docker

$(VENV)/.mutation: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,mutation]'
	touch $@

mutation: $(VENV)/.mutation ## mutation testing (mutmut) of the verdicts, measurements, matrix, compat and lock: prints the score (~8 min; not in CI)
	rm -rf mutants && mkdir -p reports
	$(VENV)/bin/mutmut run > reports/mutation.log 2>&1 || { tail -20 reports/mutation.log; exit 1; }
	$(PY) tests/mutation_score.py

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about its end of life; the build itself is what counts
docs: $(VENV)/.installed ## build the docs site (docs/, mkdocs.yml) into site/ with mkdocs build --strict
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean: $(VENV)/.installed ## remove the torchyard:* images (the base images and build cache stay)
	@$(BUILDER) clean
