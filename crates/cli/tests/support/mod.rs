//! Running the real `strata` binary against a test database of its own.

// Each test file includes this module and uses only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use strata_integration_tests::{TestDatabase, admin_url};

/// The URL of `database` on the test server.
pub(crate) fn url(database: &TestDatabase) -> String {
    let admin = admin_url();
    let (server, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL has a database path");
    format!("{server}/{}", database.name)
}

/// Runs `strata args…` against `url` with `stdin` (empty when `None`) and returns its output.
pub(crate) fn strata(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    strata_with_env(url, args, stdin, &[])
}

/// Like [`strata`], with extra environment variables.
pub(crate) fn strata_with_env(
    url: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    strata_bytes(url, args, stdin.unwrap_or_default().as_bytes(), env)
}

/// Like [`strata_with_env`], with raw bytes (not necessarily UTF-8) on stdin.
pub(crate) fn strata_bytes(url: &str, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("DATABASE_URL", url)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the strata binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("stdin accepts the input");
    drop(input);
    child.wait_with_output().expect("strata runs to the end")
}

/// Its stdout, as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Its stderr, as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the command succeeded, showing its stderr when it did not.
#[track_caller]
pub(crate) fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "strata failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// One command as a JSON line.
pub(crate) fn command_line(instance: &str, aggregate_id: &str, event_type: &str, n: u32) -> String {
    serde_json::json!({
        "aggregate": {"instance_id": instance, "aggregate_type": "user", "aggregate_id": aggregate_id},
        "event_type": event_type,
        "payload": {"n": n},
        "creator": "cli-test",
        "owner": "org-1",
    })
    .to_string()
}
