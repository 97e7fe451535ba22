//! `make test` ends with "N passed, N failed" over every test binary and keeps
//! cargo's exit status (issue 14, fault 13): scripts/test-summary.sh, and the
//! Makefile wiring it in as the last step of `make test`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the summary script around a fake `cargo test` that prints `output` and
/// exits with `status`.
fn summarise(output: &str, status: i32) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/test-summary.sh"))
        .args([
            "bash",
            "-c",
            &format!("printf '%s' \"$0\"; exit {status}"),
            output,
        ])
        .output()
        .expect("run scripts/test-summary.sh")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

const UNIT: &str = "running 3 tests\n...\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n";
const BENCH: &str = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n";
const FAILING: &str = "test result: FAILED. 40 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.20s\n";

#[test]
fn the_last_line_sums_every_binary_not_the_last_one() {
    let out = summarise(&format!("{UNIT}{UNIT}{BENCH}"), 0);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(last_line(&out), "6 passed, 0 failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 test binaries, 2 ignored, 0 filtered out"),
        "{stdout}"
    );
    assert!(
        stdout.starts_with("running 3 tests"),
        "cargo's output is shown: {stdout}"
    );
}

#[test]
fn failures_are_counted_and_cargo_status_is_kept() {
    let out = summarise(&format!("{UNIT}{FAILING}"), 101);
    assert_eq!(out.status.code(), Some(101));
    assert_eq!(last_line(&out), "43 passed, 2 failed");
}

#[test]
fn a_build_error_fails_with_zero_counts_and_says_why() {
    let out = summarise("error[E0425]: cannot find value `x` in this scope\n", 101);
    assert_eq!(out.status.code(), Some(101));
    assert_eq!(last_line(&out), "0 passed, 0 failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cargo test exited with status 101"));
}

#[test]
fn make_test_runs_the_summary_last_without_stopping_at_the_first_failing_binary() {
    // Run from inside `make test`, make's own variables would be inherited and
    // the nested make would announce its directory: drop them.
    let out = Command::new("make")
        .args(["--no-print-directory", "-n", "test", "CARGO=cargo"])
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .current_dir(root())
        .output()
        .expect("make -n test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    let summary = "bash scripts/test-summary.sh cargo test --locked --workspace --tests --benches --examples --no-fail-fast";
    let last = plan.lines().last().unwrap_or_default();
    let Some(unit_env) = last.strip_suffix(summary) else {
        panic!("the last step is not the summary:\n{plan}");
    };
    // The tests run with the compiler the build step used, or cargo would
    // compile the workspace's crates a second time.
    let build = plan
        .lines()
        .find(|line| line.ends_with("cargo build --locked --workspace --all-targets"))
        .unwrap_or_else(|| panic!("no workspace build step:\n{plan}"));
    let build_env = build.trim_end_matches("cargo build --locked --workspace --all-targets");
    assert_eq!(unit_env, build_env, "{plan}");
    assert!(unit_env.contains("clippy-driver"), "{plan}");
    assert!(unit_env.contains("CLIPPY_ARGS=-Dwarnings"), "{plan}");
}
