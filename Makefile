# ecr-guard — `make demo` runs the webhook against a local ECR emulator,
# `make test` runs every test. Both install what they need first.

CARGO ?= cargo
# Incremental compilation pays off when one edits and rebuilds; `make test` and
# `make build` compile each crate of the workspace once, where it only costs
# (~0.9 GB of target/incremental, and time). Set CARGO_INCREMENTAL=1 to keep it.
export CARGO_INCREMENTAL ?= 0
PYTHON := .venv/bin/python

.PHONY: all tools build demo test fmt-check lint unit fuzz-build manifests bench bench-scan soak clean

all: build

## tools: moto + kubernetes-validate (.venv), helm + kubectl (.tools/bin)
tools:
	bash scripts/install-tools.sh

## build: the binaries, built so that nothing `make test` built is built again: the
## whole workspace (one member alone resolves features differently), a target that
## uses dev-dependencies (the examples: without one, the dev-dependencies' features
## are left out and ~60 crates are rebuilt), and the same compiler wrapper
build:
	$(WITH_CLIPPY) $(CARGO) build --locked --workspace --bins --examples

## demo: HTTPS webhook + example policies + local ECR emulator, sample Pods admitted and denied
demo: tools build
	$(PYTHON) scripts/demo.py --binary "$$($(CARGO) metadata --format-version 1 --no-deps | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/ecr-guard"

## test: formatting, lints, unit + integration tests (moto, HTTPS, chart), fuzz targets build;
## the last line is "N passed, N failed" over every test binary (scripts/test-summary.sh).
## The dependency tree is compiled once: every cargo step names the whole workspace (the
## crate and fuzz/) and all targets, so features resolve the same way, and the lints run
## while the tests build (clippy-driver as the compiler of the workspace's own crates,
## `WITH_CLIPPY`) instead of in a `cargo clippy` pass that checks every dependency again.
## The tools are installed (network, unpacking) while the workspace compiles (CPU): two jobs.
test:
	$(MAKE) --no-print-directory -j2 tools fmt-check fuzz-build
	$(MAKE) --no-print-directory unit

## The compiler wrapper `cargo clippy` uses, given to a normal build: workspace crates are
## compiled and linted in one go; dependencies are built as usual (cargo never wraps them).
WITH_CLIPPY = RUSTC_WORKSPACE_WRAPPER="$$(rustc --print sysroot)/bin/clippy-driver" CLIPPY_ARGS=-Dwarnings

fmt-check:
	$(CARGO) fmt --all -- --check

## lint: what `make test` checks, on its own (cargo clippy: no test binaries built)
lint: fmt-check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## unit: every target with tests, of every member; not --all-targets, which would
## also select the fuzz binaries and run libFuzzer until it is stopped
unit:
	$(WITH_CLIPPY) bash scripts/test-summary.sh $(CARGO) test --locked --workspace --tests --benches --examples --no-fail-fast

## fuzz-build: every target of every member compiles, linted (-D warnings) — the cargo-fuzz
## targets included (running them: see fuzz/README.md); `unit` then finds its test
## binaries built, with the same features and compiler
fuzz-build:
	$(WITH_CLIPPY) $(CARGO) build --locked --workspace --all-targets

## soak: the full soak (20,000 reviews, concurrency 64, 20% of AWS calls faulted)
soak: tools
	ECR_GUARD_SOAK_REVIEWS=20000 $(CARGO) test --locked --release --test soak -- --nocapture

## bench: criterion micro-benchmarks + HTTPS load test vs a floor server, cold path, memory, start-up
bench: tools
	CARGO="$(CARGO)" bash scripts/bench.sh $(BENCH_ARGS)

## bench-scan: `ecr-guard scan` of 10,000 repositories in two regions against moto (time, AWS calls, peak RSS; ~3 min once built)
bench-scan: tools
	$(CARGO) build --locked --release --workspace --bin ecr-guard --example scan_bench
	$(or $(CARGO_TARGET_DIR),target)/release/examples/scan_bench $(BENCH_ARGS)

## manifests: regenerate the CRD (chart + manifests/) and manifests/install.yaml
manifests:
	bash scripts/render-manifests.sh

clean:
	$(CARGO) clean
	rm -rf .venv .tools .demo
