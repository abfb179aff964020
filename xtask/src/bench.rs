//! `cargo xtask bench`: placeholder until the harness lands.

use anyhow::{Result, bail};

pub(crate) fn run(_args: &[String]) -> Result<()> {
    bail!("the benchmark harness is not written yet")
}
