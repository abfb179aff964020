//! Snapshots of every `--help` page, so help text is reviewed like code. The pages are found by
//! walking the "Commands:" list of each page, so a new subcommand cannot go unsnapshotted, and a
//! snapshot file whose page is gone fails the test.
//! Refresh with `UPDATE_EXPECT=1 cargo test -p strata-cli --test help`.

use std::collections::BTreeSet;
use std::process::Command;

fn help(page: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(page)
        .arg("--help")
        // The help shows that DATABASE_URL is read, never its value; unset it anyway so the
        // snapshot cannot depend on the caller's environment.
        .env_remove("DATABASE_URL")
        .output()
        .expect("the strata binary runs");
    assert!(output.status.success(), "--help of {page:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands a help page lists under "Commands:" (clap's own `help` left out).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_pages() {
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut snapshotted = BTreeSet::new();
    while let Some(page) = pending.pop() {
        let text = help(&page);
        for subcommand in subcommands(&text) {
            let mut deeper = page.clone();
            deeper.push(subcommand);
            pending.push(deeper);
        }
        let name = match page.is_empty() {
            true => "strata".to_owned(),
            false => format!("strata-{}", page.join("-")),
        };
        expect_test::expect_file![format!("help/{name}.txt")].assert_eq(&text);
        snapshotted.insert(format!("{name}.txt"));
    }
    let on_disk: BTreeSet<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/help"))
            .expect("the snapshot folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
    let stale: Vec<&String> = on_disk.difference(&snapshotted).collect();
    assert!(
        stale.is_empty(),
        "snapshots of pages that no longer exist: {stale:?}"
    );
}
