//! Snapshots of every `--help` page, so help text is reviewed like code.
//! Refresh with `UPDATE_EXPECT=1 cargo test -p strata-cli --test help`.

use std::process::Command;

const PAGES: &[&[&str]] = &[
    &[],
    &["migrate"],
    &["push"],
    &["query"],
    &["projections"],
    &["projections", "status"],
    &["projections", "failed"],
    &["projections", "failed", "list"],
    &["projections", "failed", "retry"],
    &["projections", "failed", "skip"],
    &["projections", "rebuild"],
    &["projections", "requests"],
    &["cache"],
    &["cache", "prune"],
    &["cache", "truncate"],
    &["mirror"],
];

#[test]
fn help_pages() {
    for page in PAGES {
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(page.iter().copied())
            .arg("--help")
            // The help shows that DATABASE_URL is read, never its value; unset it anyway so the
            // snapshot cannot depend on the caller's environment.
            .env_remove("DATABASE_URL")
            .output()
            .expect("the strata binary runs");
        assert!(output.status.success(), "--help of {page:?} failed");
        let name = match page.is_empty() {
            true => "strata".to_owned(),
            false => format!("strata-{}", page.join("-")),
        };
        expect_test::expect_file![format!("help/{name}.txt")]
            .assert_eq(&String::from_utf8_lossy(&output.stdout));
    }
}
