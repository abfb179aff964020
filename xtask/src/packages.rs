//! Debian packages some tests drive as real programs: `chromium` and `chromium-driver` (the status
//! page's browser test) and `pgbouncer` (Strata behind a pooling proxy). Installed with apt-get
//! when missing and this process may (root, apt-get present). Elsewhere the tests that need them
//! fail and say what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A program a test runs, and the Debian packages that provide it.
struct Needed {
    program: &'static str,
    packages: &'static [&'static str],
    why: &'static str,
}

/// When updating this, also update: the list in `xtask/src/main.rs`'s docs and `.ci/run`'s
/// comment.
const NEEDED: &[Needed] = &[
    Needed {
        program: "/usr/bin/chromedriver",
        packages: &["chromium", "chromium-driver"],
        why: "the status page's browser test",
    },
    Needed {
        program: "/usr/bin/chromium",
        packages: &["chromium", "chromium-driver"],
        why: "the status page's browser test",
    },
    Needed {
        program: "/usr/sbin/pgbouncer",
        packages: &["pgbouncer"],
        why: "the tests behind PgBouncer (integration-tests/tests/pgbouncer.rs)",
    },
];

/// Makes sure every program some test runs is installed, installing what is missing in one
/// apt-get call when this process may.
pub(crate) fn ensure_test_programs() -> Result<()> {
    let missing: Vec<&Needed> = NEEDED
        .iter()
        .filter(|needed| !Path::new(needed.program).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !super::server::is_root() || !Path::new("/usr/bin/apt-get").exists() {
        for needed in &missing {
            eprintln!(
                "xtask: {} is missing and cannot be installed here; {} will fail (install \
                 Debian's {})",
                needed.program,
                needed.why,
                needed.packages.join(" and ")
            );
        }
        return Ok(());
    }
    let mut packages: Vec<&str> = missing
        .iter()
        .flat_map(|needed| needed.packages.iter().copied())
        .collect();
    packages.sort_unstable();
    packages.dedup();
    eprintln!("xtask: installing {} for the tests", packages.join(", "));
    let updated = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("running apt-get update")?;
    if !updated.success() {
        bail!("apt-get update failed");
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !installed.success() {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}
