//! The browser the status page's test drives: Debian's `chromium` and `chromium-driver`,
//! installed with apt-get when missing and this process may (root, apt-get present). Elsewhere
//! the test fails and says what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure Chromium and ChromeDriver are installed.
pub(crate) fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    if !super::server::is_root() || !Path::new("/usr/bin/apt-get").exists() {
        eprintln!(
            "xtask: {CHROMEDRIVER} is missing and cannot be installed here; the browser test \
             will fail (install Debian's chromium and chromium-driver)"
        );
        return Ok(());
    }
    eprintln!("xtask: installing chromium and chromium-driver for the status page's browser test");
    let updated = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("running apt-get update")?;
    if !updated.success() {
        bail!("apt-get update failed");
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !installed.success() {
        bail!("apt-get install chromium chromium-driver failed");
    }
    Ok(())
}
