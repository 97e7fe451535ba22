# ecr-guard — `make demo` runs the webhook against a local ECR emulator,
# `make test` runs every test. Both install what they need first.

CARGO ?= cargo
PYTHON := .venv/bin/python

.PHONY: all tools build demo test lint unit manifests bench soak clean

all: build

## tools: moto + kubernetes-validate (.venv), helm + kubectl (.tools/bin)
tools:
	bash scripts/install-tools.sh

build:
	$(CARGO) build --locked --bins

## demo: HTTPS webhook + example policies + local ECR emulator, sample Pods admitted and denied
demo: tools build
	$(PYTHON) scripts/demo.py --binary "$$($(CARGO) metadata --format-version 1 --no-deps | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/ecr-guard"

## test: formatting, lints, unit + integration tests (moto, HTTPS, chart)
test: tools lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --all-targets

## manifests: regenerate the CRD (chart + manifests/) and manifests/install.yaml
manifests:
	bash scripts/render-manifests.sh

clean:
	$(CARGO) clean
	rm -rf .venv .tools .demo
