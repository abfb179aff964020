//! `strata keys`: the personal-data keys' state, a new master key, and a master-key rotation.
//!
//! The master keys come from the environment, never from arguments (which other users of the
//! machine can read): `STRATA_MASTER_KEY` is the current one, `STRATA_PREVIOUS_MASTER_KEYS` the
//! older ones still wrapping keys, each spelled `id:base64-of-32-bytes`, comma-separated.

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use strata_domain::{Keyring, MasterKey, Vault};
use strata_postgres::admin::subject_key_status;

use crate::connect::connect;
use crate::output::{confirm, report};
use crate::{Database, ReportOutput, usage};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// How many keys each master key wraps, subjects with keys, subjects erased
    Status {
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Print a new random master key as id:base64, for STRATA_MASTER_KEY
    Generate {
        /// The new key's id (stored beside every key it wraps)
        #[arg(long, value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Rewrap every key with the master key in STRATA_MASTER_KEY
    #[command(after_help = "\
Reads the new master key from STRATA_MASTER_KEY and the old ones from STRATA_PREVIOUS_MASTER_KEYS
(comma-separated), each spelled id:base64-of-32-bytes. Deploy every service with the new key
current and the old ones previous first; then run this; then drop the old keys. Each key is
rewrapped by compare-and-swap, so services read throughout and a second run finishes what an
interrupted one left.

Example:
  STRATA_MASTER_KEY=k2:... STRATA_PREVIOUS_MASTER_KEYS=k1:... strata keys rotate --yes")]
    Rotate {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
}

/// The environment variable holding the current master key.
pub(crate) const MASTER_KEY_ENV: &str = "STRATA_MASTER_KEY";
/// The environment variable holding older master keys, comma-separated.
pub(crate) const PREVIOUS_MASTER_KEYS_ENV: &str = "STRATA_PREVIOUS_MASTER_KEYS";

#[derive(Debug, Serialize)]
struct Status {
    by_master_key: Vec<MasterKeyCount>,
    subjects: u64,
    erased_subjects: u64,
}

#[derive(Debug, Serialize)]
struct MasterKeyCount {
    master_key_id: String,
    keys: u64,
}

#[derive(Debug, Serialize)]
struct Rotated {
    master_key_id: String,
    rewrapped: u64,
    skipped: u64,
}

#[derive(Debug, Serialize)]
struct Generated {
    /// `id:base64`, for STRATA_MASTER_KEY.
    master_key: String,
}

pub(crate) async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Status { database, output } => {
            let store = connect(&database.database_url).await?;
            let status = subject_key_status(store.pools().query())
                .await
                .context("reading the keys' state")?;
            let status = Status {
                by_master_key: status
                    .by_master_key
                    .into_iter()
                    .map(|(master_key_id, keys)| MasterKeyCount {
                        master_key_id,
                        keys,
                    })
                    .collect(),
                subjects: status.subjects,
                erased_subjects: status.erased_subjects,
            };
            report(output.output, &status, || {
                let wrapped: Vec<String> = status
                    .by_master_key
                    .iter()
                    .map(|count| format!("{} by {}", count.keys, count.master_key_id))
                    .collect();
                format!(
                    "{} subject(s) with keys ({}), {} erased",
                    status.subjects,
                    if wrapped.is_empty() {
                        "no keys".to_owned()
                    } else {
                        format!("wrapped: {}", wrapped.join(", "))
                    },
                    status.erased_subjects
                )
            })
            .context("reporting")
        }
        KeysCommand::Generate { id, output } => {
            let (_, spelled) = MasterKey::generate(id).map_err(|err| usage(err.to_string()))?;
            let generated = Generated {
                master_key: spelled,
            };
            report(output.output, &generated, || {
                format!(
                    "{}\nkeep it in your secret store; give it to services as {MASTER_KEY_ENV}",
                    generated.master_key
                )
            })
            .context("reporting")
        }
        KeysCommand::Rotate {
            yes,
            database,
            output,
        } => {
            let keyring = keyring_from_env()?;
            let store = connect(&database.database_url).await?;
            confirm(
                &format!(
                    "rewrap every personal-data key with master key {:?} (every service must \
                     already hold it, and the old keys as previous ones)",
                    keyring.current().id()
                ),
                yes,
            )?;
            let vault = Vault::new(store, keyring.clone());
            let rotation = vault
                .rotate_master_key()
                .await
                .context("rotating the master key")?;
            let rotated = Rotated {
                master_key_id: keyring.current().id().to_owned(),
                rewrapped: rotation.rewrapped,
                skipped: rotation.skipped,
            };
            report(output.output, &rotated, || {
                format!(
                    "{} key(s) rewrapped with {}, {} changed meanwhile and left as they are",
                    rotated.rewrapped, rotated.master_key_id, rotated.skipped
                )
            })
            .context("reporting")
        }
    }
}

/// The keyring `STRATA_MASTER_KEY` and `STRATA_PREVIOUS_MASTER_KEYS` spell.
fn keyring_from_env() -> anyhow::Result<Keyring> {
    let current = std::env::var(MASTER_KEY_ENV).map_err(|_| {
        usage(format!(
            "{MASTER_KEY_ENV} must hold the new master key (id:base64)"
        ))
    })?;
    let current =
        MasterKey::parse(&current).map_err(|err| usage(format!("{MASTER_KEY_ENV}: {err}")))?;
    let mut keyring = Keyring::new(current);
    if let Ok(previous) = std::env::var(PREVIOUS_MASTER_KEYS_ENV) {
        for spelled in previous.split(',').filter(|part| !part.trim().is_empty()) {
            let key = MasterKey::parse(spelled.trim())
                .map_err(|err| usage(format!("{PREVIOUS_MASTER_KEYS_ENV}: {err}")))?;
            keyring = keyring.with_previous(key);
        }
    }
    Ok(keyring)
}
