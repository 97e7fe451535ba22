#!/usr/bin/env bash
# make bench: every figure of BENCHMARKS.md.
#   1. criterion micro-benchmarks (cargo bench --bench hot_path);
#   2. the release build of ecr-guard, the floor server and the driver;
#   3. the driver (examples/bench): HTTPS load test against ecr-guard and the
#      floor, cold path, memory with 100,000 cached repositories, start-up.
# Installs its load generator, oha, into .tools/bin (cargo install, a few minutes
# the first time). moto comes from scripts/install-tools.sh (make tools).
# Arguments go to the driver, e.g. `make bench BENCH_ARGS="--runs 3 --only warm"`.
set -euo pipefail
cd "$(dirname "$0")/.."

OHA_VERSION=1.16.0
CARGO=${CARGO:-cargo}

if [ ! -x .tools/bin/oha ] || ! .tools/bin/oha --version | grep -q "$OHA_VERSION"; then
  echo "==> oha $OHA_VERSION (HTTP load generator) into .tools/bin"
  "$CARGO" install --locked --quiet --version "$OHA_VERSION" --root .tools oha
fi

if [ -z "${SKIP_CRITERION:-}" ]; then
  echo "==> criterion micro-benchmarks"
  "$CARGO" bench --locked --bench hot_path
fi

echo "==> release build: ecr-guard, examples/floor, examples/bench"
"$CARGO" build --locked --release --bin ecr-guard --example floor --example bench

# 1,000 concurrent connections in the cold-path test need file descriptors.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$CARGO" run --locked --release --quiet --example bench -- --oha .tools/bin/oha "$@"
