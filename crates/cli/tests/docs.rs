//! The documentation stays true to the code: every `strata` command line in the README and in
//! `docs/` parses (flags, values, subcommands), every `cargo xtask` task it names exists, and every
//! file path it names in backticks exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README, ARCHITECTURE.md and every page of `docs/`, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let root = workspace();
    let mut paths = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable page");
            (path, text)
        })
        .collect()
}

/// The command lines of shell code blocks (```sh, ```console, ```bash or unlabelled): a `$ `
/// prompt is dropped, `\` continuations joined.
fn command_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut block: Option<bool> = None;
    let mut pending = String::new();
    for line in text.lines() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(matches!(
                    fence.trim(),
                    "" | "sh" | "console" | "bash" | "shell"
                )),
            };
            continue;
        }
        if block != Some(true) {
            continue;
        }
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if !pending.is_empty() {
            pending.push(' ');
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start.trim()),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// Splits a shell line into words: single and double quotes group, a `#` word starts a comment,
/// and a pipe, redirection or `&&` ends the command.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut has_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if has_word || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    has_word = false;
                }
            }
            (None, c) => word.push(c),
        }
    }
    if has_word || !word.is_empty() {
        words.push(word);
    }
    let end = words
        .iter()
        .position(|word| {
            matches!(word.as_str(), "|" | "<" | ">" | "&&" | "#") || word.starts_with('#')
        })
        .unwrap_or(words.len());
    words.truncate(end);
    words
}

#[test]
fn every_documented_strata_command_parses() {
    let mut checked = 0;
    for (path, text) in pages() {
        for line in command_lines(&text) {
            let words = words(&line);
            if words.first().map(String::as_str) != Some("strata") {
                continue;
            }
            let output = Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(&words[1..])
                .env("STRATA_PARSE_ONLY", "1")
                .env_remove("DATABASE_URL")
                .output()
                .expect("the strata binary runs");
            assert!(
                output.status.success(),
                "{}: `{line}` does not parse:\n{}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} documented command lines found"
    );
}

#[test]
fn every_documented_xtask_exists() {
    let xtask = std::fs::read_to_string(workspace().join("xtask/src/main.rs")).expect("xtask");
    for (path, text) in pages() {
        for line in command_lines(&text) {
            let words = words(&line);
            let Some(task) = words
                .windows(3)
                .find(|w| w[0] == "cargo" && w[1] == "xtask")
                .map(|w| w[2].clone())
            else {
                continue;
            };
            assert!(
                xtask.contains(&format!("Some(\"{task}\")")),
                "{}: `cargo xtask {task}` is not a task",
                path.display()
            );
        }
    }
}

#[test]
fn every_documented_path_exists() {
    let root = workspace();
    let prefixes = [
        "crates/",
        "migrations/",
        "docs/",
        "xtask/",
        "integration-tests/",
        ".ci/",
    ];
    for (path, text) in pages() {
        for quoted in text.split('`').skip(1).step_by(2) {
            let candidate = quoted.split_whitespace().next().unwrap_or_default();
            let candidate = candidate.trim_end_matches([',', '.', ')', ':']);
            // A migration named by its file name alone lives in migrations/.
            let migration = candidate.len() > 15
                && candidate[..14].bytes().all(|byte| byte.is_ascii_digit())
                && candidate.ends_with(".sql");
            let candidate = if migration {
                format!("migrations/{candidate}")
            } else {
                candidate.to_owned()
            };
            let is_path = prefixes.iter().any(|prefix| candidate.starts_with(prefix))
                && !candidate.contains(['*', '<', '{', '…']);
            if !is_path {
                continue;
            }
            assert!(
                root.join(&candidate).exists(),
                "{} names `{candidate}`, which does not exist",
                path.display()
            );
        }
    }
}
