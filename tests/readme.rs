//! The README's commands run as written (issue 14, fault 11).
//!
//! Every `ecr-guard …` command line in a fenced code block of README.md is either
//! run here or sits in a block marked `<!-- readme-test: needs a cluster -->` on
//! the line before its fence; the marked lines are listed in [`NEEDS_A_CLUSTER`],
//! so the exclusions cannot grow silently.
//!
//! The `sh` blocks of the section "Running it without a cluster" are run, in
//! README order, as one bash session from the checkout, the way a reader pastes
//! them:
//! - the two install lines of [`PROVIDED`] are done by cargo and the test
//!   harness instead (the binary under test is put first on PATH; `.venv` is
//!   what `make test` installed), and checked to be there;
//! - background lines (`… &`), `export` and `kill` run as written;
//! - every other command must end with a `# exit N` comment (optionally
//!   `, prints TEXT`): it runs as written and its exit status (and output) is
//!   checked against the comment.
//!
//! Only the loopback ports (5000, 8443, 9090) and the CA path are replaced by
//! free ones, so parallel tests never collide ([`SUBSTITUTIONS`]); each
//! replacement must apply at least once. The emulator the README starts is the
//! real scripts/emulator.py (moto seeded through the AWS API with boto3).

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `ecr-guard` command lines the README marks as needing a cluster: not run.
const NEEDS_A_CLUSTER: &[&str] = &["ecr-guard check -f examples/workloads.yaml"];

/// The marker, on the line before a fence, that excludes the block.
const CLUSTER_MARKER: &str = "<!-- readme-test: needs a cluster -->";

/// Lines of the run blocks that the harness does instead of the shell.
const PROVIDED: &[&str] = &["cargo install --locked --path .", "make tools"];

/// What the session replaces, and what with: (README text, `free port` or `ca`).
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("5000", "port"),
    ("8443", "port"),
    ("9090", "port"),
    ("/tmp/ecr-guard-ca.pem", "ca"),
];

/// Longest the whole session may take before it is killed.
const SESSION_TIMEOUT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced code block: its info string, whether it is marked, and its lines
/// with their 1-based README line numbers.
#[derive(Debug)]
struct Block {
    /// The `## ` heading the block is under.
    section: String,
    info: String,
    marked: bool,
    lines: Vec<(usize, String)>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut previous = "";
    let mut section = String::new();
    for (n, line) in readme.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.take() {
            None if trimmed.starts_with("```") => {
                current = Some(Block {
                    section: section.clone(),
                    info: trimmed.trim_start_matches('`').trim().to_owned(),
                    marked: previous.trim() == CLUSTER_MARKER,
                    lines: Vec::new(),
                });
            }
            None => {
                if let Some(heading) = line.strip_prefix("## ") {
                    section = heading.trim().to_owned();
                }
                if !line.trim().is_empty() {
                    previous = line;
                }
            }
            Some(block) if trimmed.starts_with("```") => blocks.push(block),
            Some(mut block) => {
                block.lines.push((n + 1, line.to_owned()));
                current = Some(block);
            }
        }
    }
    assert!(current.is_none(), "README.md has an unclosed code block");
    blocks
}

/// One shell command: the README line it starts on and its text, continuation
/// lines (`\`) included, as written.
#[derive(Debug)]
struct ShellCommand {
    line: usize,
    text: String,
}

impl ShellCommand {
    /// The command without its trailing comment, continuations joined, spaces
    /// collapsed: what the command is, for comparing with the tables above.
    fn words(&self) -> String {
        self.text
            .lines()
            .map(|l| code_part(l).trim().trim_end_matches('\\').trim())
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn is_ecr_guard(&self) -> bool {
        let words = self.words();
        words == "ecr-guard" || words.starts_with("ecr-guard ") || words.starts_with("$ ecr-guard ")
    }

    fn comment(&self) -> Option<&str> {
        let last = self.text.lines().last()?;
        let code = code_part(last);
        last.get(code.len()..)
            .map(|c| c.trim_start_matches('#').trim())
            .filter(|c| !c.is_empty())
    }

    /// `# exit N[…, prints TEXT]` → (N, TEXT).
    fn expectation(&self) -> Option<(i32, Option<String>)> {
        let comment = self.comment()?;
        let rest = comment.strip_prefix("exit ")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let code = digits.parse().ok()?;
        let prints = rest
            .split_once("prints ")
            .map(|(_, text)| text.trim().to_owned());
        Some((code, prints))
    }
}

/// The part of a shell line before a `#` comment (a `#` after a space, outside
/// quotes; enough for the README's commands).
fn code_part(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

fn commands(block: &Block) -> Vec<ShellCommand> {
    let mut out = Vec::new();
    let mut pending: Option<ShellCommand> = None;
    for (n, line) in &block.lines {
        if pending.is_none() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        let command = pending.get_or_insert_with(|| ShellCommand {
            line: *n,
            text: String::new(),
        });
        if !command.text.is_empty() {
            command.text.push('\n');
        }
        command.text.push_str(line);
        if !code_part(line).trim_end().ends_with('\\') {
            out.extend(pending.take());
        }
    }
    out.extend(pending);
    out
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// The README section whose `sh` blocks the session runs.
const RUN_SECTION: &str = "Running it without a cluster";

/// The blocks the session runs: the unmarked `sh` blocks of [`RUN_SECTION`].
fn run_blocks(blocks: &[Block]) -> Vec<&Block> {
    blocks
        .iter()
        .filter(|b| !b.marked && b.info == "sh" && b.section == RUN_SECTION)
        .collect()
}

#[test]
fn every_ecr_guard_line_is_run_or_listed_as_needing_a_cluster() {
    let blocks = blocks(&readme());
    let mut excluded = Vec::new();
    for block in &blocks {
        for command in commands(block).iter().filter(|c| c.is_ecr_guard()) {
            if block.marked {
                excluded.push(command.words());
            } else {
                assert!(
                    block.info == "sh" && block.section == RUN_SECTION,
                    "README.md:{}: an `ecr-guard` command outside the ```sh blocks of \
                     \"{RUN_SECTION}\" is not run: move it there or mark its block `{CLUSTER_MARKER}`",
                    command.line
                );
            }
        }
    }
    assert_eq!(
        excluded, NEEDS_A_CLUSTER,
        "the README's cluster-only `ecr-guard` lines changed: update NEEDS_A_CLUSTER in tests/readme.rs"
    );
    let run: usize = run_blocks(&blocks)
        .iter()
        .map(|b| commands(b).iter().filter(|c| c.is_ecr_guard()).count())
        .sum();
    assert!(run >= 4, "only {run} README `ecr-guard` commands are run");
}

#[test]
fn the_parser_reads_commands_comments_and_markers() {
    let text = "intro\n\n```sh\nfoo a \\\n  b   # exit 1, prints \"x\":y\n# a comment\nbar & \n```\n\
                <!-- readme-test: needs a cluster -->\n```sh\necho '# not a comment' # exit 0\n```\n";
    let blocks = blocks(text);
    assert_eq!(blocks.len(), 2);
    assert!(!blocks[0].marked);
    assert!(blocks[1].marked);
    let first = commands(&blocks[0]);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].line, 4);
    assert_eq!(first[0].words(), "foo a b");
    assert_eq!(
        first[0].expectation(),
        Some((1, Some("\"x\":y".to_owned())))
    );
    assert_eq!(first[1].expectation(), None);
    let second = commands(&blocks[1]);
    assert_eq!(second[0].words(), "echo '# not a comment'");
    assert_eq!(second[0].expectation(), Some((0, None)));
}

/// Replaces `from` where it stands as a whole token (not inside a longer number).
fn replace_token(text: &str, from: &str, to: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().last();
        let after = rest[i + from.len()..].chars().next();
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        out.push_str(&rest[..i]);
        if digit(before) || digit(after) {
            out.push_str(from);
        } else {
            out.push_str(to);
            count += 1;
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    (out, count)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[test]
fn readme_commands_run_as_written() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ecr-guard"));
    assert!(
        root().join(".venv/bin/moto_server").exists(),
        ".venv is missing: run `make tools` (make test does)"
    );
    let work = tempfile::tempdir().expect("temporary directory");
    let ca = work.path().join("ca.pem");

    let readme = readme();
    let blocks = blocks(&readme);
    let mut script =
        // On exit, stop what the README left running; whatever has not exited
        // 30 s later (ecr-guard's shutdown delay is 10 s) is killed, so one
        // stuck process cannot hold the session (and the test) until its timeout.
        String::from(
            "set -u\ntrap 'kill $(jobs -p) 2>/dev/null; for _ in $(seq 150); do [ -z \"$(jobs -pr)\" ] && break; sleep 0.2; done; kill -KILL $(jobs -pr) 2>/dev/null; wait' EXIT\nOUT=\"$1\"\n",
        );
    let mut provided = Vec::new();
    let mut checked = 0;
    for block in run_blocks(&blocks) {
        for command in commands(block) {
            let words = command.words();
            if PROVIDED.contains(&words.as_str()) {
                provided.push(words);
                continue;
            }
            let background = words.ends_with('&');
            let plain = background || words.starts_with("export ") || words.starts_with("kill ");
            match command.expectation() {
                None if plain => {
                    script.push_str(&command.text);
                    script.push('\n');
                }
                Some(_) if background => panic!(
                    "README.md:{}: a background command has no exit status to promise",
                    command.line
                ),
                None => panic!(
                    "README.md:{}: say how `{words}` exits with a trailing `# exit N` comment",
                    command.line
                ),
                Some((code, prints)) => {
                    checked += 1;
                    let at = format!("README.md:{}", command.line);
                    script.push_str(&format!(
                        "{{\n{text}\n}} >\"$OUT/{checked}.out\" 2>&1\nrc=$?\ncat \"$OUT/{checked}.out\"\n\
                         if [ \"$rc\" -ne {code} ]; then echo {fail} >&2; exit 101; fi\n",
                        text = command.text,
                        fail = shell_quote(&format!(
                            "{at}: `{words}` exited $rc; the README says {code}"
                        ))
                        .replace("$rc", "'\"$rc\"'"),
                    ));
                    if let Some(prints) = prints {
                        script.push_str(&format!(
                            "grep -qF -- {p} \"$OUT/{checked}.out\" || {{ echo {fail} >&2; exit 102; }}\n",
                            p = shell_quote(&prints),
                            fail = shell_quote(&format!(
                                "{at}: `{words}` did not print {prints}"
                            )),
                        ));
                    }
                    script.push_str(&format!("echo {}\n", shell_quote(&format!("{at}: ok"))));
                }
            }
        }
    }
    script.push_str("echo README-SESSION-DONE\n");
    assert_eq!(provided, PROVIDED, "the README's install lines changed");
    assert!(checked >= 5, "only {checked} README commands are checked");

    for (from, to) in SUBSTITUTIONS {
        let to = match *to {
            "ca" => ca.display().to_string(),
            _ => support::free_port().to_string(),
        };
        let (replaced, count) = replace_token(&script, from, &to);
        assert!(
            count > 0,
            "the README no longer says {from}: update SUBSTITUTIONS"
        );
        script = replaced;
    }

    let script_path = work.path().join("session.sh");
    std::fs::write(&script_path, &script).expect("write the session script");
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).expect("output directory");
    let home = work.path().join("home");
    std::fs::create_dir(&home).expect("home directory");
    let stdout_path = work.path().join("stdout");
    let stderr_path = work.path().join("stderr");
    let path = format!(
        "{}:{}",
        bin.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // The reader's shell: no AWS or ECR_GUARD_ settings of our own leak in, and
    // HOME is empty so no ~/.aws/config is read.
    let mut child = Command::new("bash")
        .arg(&script_path)
        .arg(&out_dir)
        .current_dir(root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("spawn bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > SESSION_TIMEOUT {
            // The whole group: bash, the emulator (and its moto), ecr-guard serve.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let report =
        format!("--- session ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    let status = status
        .unwrap_or_else(|| panic!("the README session ran over {SESSION_TIMEOUT:?}\n{report}"));
    assert!(
        status.success(),
        "the README session failed ({status})\n{report}"
    );
    assert!(stdout.contains("README-SESSION-DONE"), "{report}");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(": ok")).count(),
        checked,
        "{report}"
    );
}

#[test]
fn readme_paths_in_run_blocks_exist() {
    // A file a command names (`-f examples/workloads.yaml`, `@examples/…`) is in
    // the checkout: the original fault named deploy.yaml and policies.yaml.
    let readme = readme();
    let blocks = blocks(&readme);
    let mut named = 0;
    for block in run_blocks(&blocks) {
        for command in commands(block) {
            for word in command.words().split_whitespace() {
                let word = word.trim_start_matches('@');
                if word.contains('/')
                    && !word.contains(':')
                    && !word.starts_with('/')
                    && Path::new(word).extension().is_some()
                {
                    named += 1;
                    assert!(
                        root().join(word).exists(),
                        "README.md:{}: {word} does not exist",
                        command.line
                    );
                }
            }
        }
    }
    assert!(named >= 5, "only {named} files named");
}
