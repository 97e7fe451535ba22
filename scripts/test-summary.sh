#!/usr/bin/env bash
# Runs a `cargo test` command line, shows its output as it comes, and ends with
# one line that sums every test binary's `test result:` line:
#
#   N passed, N failed
#
# (the line CI reads; ignored and filtered-out tests are on the line before it).
# Exits with cargo's status, so a failed build, a failed test or a crashed test
# binary fails `make test` even when the counts look clean.
#
# Usage: scripts/test-summary.sh cargo test --locked --all-targets --no-fail-fast
set -uo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CARGO-TEST-COMMAND..." >&2
  exit 2
fi

log=$(mktemp "${TMPDIR:-/tmp}/ecr-guard-test.XXXXXX")
trap 'rm -f "$log"' EXIT

"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# libtest: "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s"
read -r binaries passed failed ignored filtered < <(
  awk '
    /^test result: / {
      n++
      for (i = 1; i <= NF; i++) {
        w = $(i + 1); sub(/[;,].*/, "", w)
        if (w == "passed") p += $i
        else if (w == "failed") f += $i
        else if (w == "ignored") g += $i
        else if (w == "filtered") o += $i
      }
    }
    END { printf "%d %d %d %d %d\n", n, p, f, g, o }
  ' "$log"
)

echo
echo "test summary: $binaries test binaries, $ignored ignored, $filtered filtered out"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "cargo test exited with status $status before every test ran (a build error or a crashed test binary: see above)"
fi
echo "$passed passed, $failed failed"
if [ "$status" -eq 0 ] && [ "$failed" -ne 0 ]; then
  exit 1
fi
exit "$status"
