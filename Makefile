# ecr-guard — `make demo` runs the webhook against a local ECR emulator,
# `make test` runs every test. Both install what they need first.

CARGO ?= cargo
PYTHON := .venv/bin/python

.PHONY: all tools build demo test lint unit fuzz-build manifests bench soak clean

all: build

## tools: moto + kubernetes-validate (.venv), helm + kubectl (.tools/bin)
tools:
	bash scripts/install-tools.sh

build:
	$(CARGO) build --locked --bins

## demo: HTTPS webhook + example policies + local ECR emulator, sample Pods admitted and denied
demo: tools build
	$(PYTHON) scripts/demo.py --binary "$$($(CARGO) metadata --format-version 1 --no-deps | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/ecr-guard"

## test: formatting, lints, unit + integration tests (moto, HTTPS, chart), fuzz targets build;
## the last line is "N passed, N failed" over every test binary (scripts/test-summary.sh).
## Every cargo step names the whole workspace (the crate and fuzz/) and all targets, so
## they resolve the same features and build the dependency tree once.
test: tools lint fuzz-build unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## unit: every target with tests, of every member; not --all-targets, which would
## also select the fuzz binaries and run libFuzzer until it is stopped
unit:
	bash scripts/test-summary.sh $(CARGO) test --locked --workspace --tests --benches --examples --no-fail-fast

## fuzz-build: the cargo-fuzz targets compile (running them: see fuzz/README.md); built with
## every other target so that `unit` finds its test binaries built with the same features
fuzz-build:
	$(CARGO) build --locked --workspace --all-targets

## soak: the full soak (20,000 reviews, concurrency 64, 20% of AWS calls faulted)
soak: tools
	ECR_GUARD_SOAK_REVIEWS=20000 $(CARGO) test --locked --release --test soak -- --nocapture

## bench: criterion micro-benchmarks + HTTPS load test vs a floor server, cold path, memory, start-up
bench: tools
	CARGO="$(CARGO)" bash scripts/bench.sh $(BENCH_ARGS)

## manifests: regenerate the CRD (chart + manifests/) and manifests/install.yaml
manifests:
	bash scripts/render-manifests.sh

clean:
	$(CARGO) clean
	rm -rf .venv .tools .demo
