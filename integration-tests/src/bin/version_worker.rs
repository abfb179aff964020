//! A worker process for the version tests, against `DATABASE_URL` until killed:
//!
//! - `--build N [--slow]` runs version N of the ledger projection (switched by command);
//! - `--flip` switches the ledger between its versions 1 and 2 for ever, as fast as it can, so
//!   that a kill lands mid-switch.

use strata_integration_tests::ledger::Ledger;
use strata_integration_tests::processes::{flag_value, worker_store};
use strata_projection::{
    Projection, ProjectionBackend, ProjectionRuntime, RuntimeConfig, SwitchWhen, VersionState,
    switch_version,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (store, backend) = worker_store().await?;
    if args.iter().any(|arg| arg == "--flip") {
        let reads = Ledger {
            version: 1,
            slow: false,
            switch: SwitchWhen::OnCommand,
        }
        .reads();
        println!("ready");
        loop {
            let versions = backend.versions(Some("ledger")).await?;
            let Some(retired) = versions
                .iter()
                .find(|record| record.state == VersionState::Retired)
            else {
                return Err("no retired version to switch to".into());
            };
            switch_version(&store, &backend, "ledger", retired.version, &reads).await?;
        }
    }
    let version: u32 = flag_value(&args, "--build")
        .ok_or("--build N or --flip")?
        .parse()?;
    let _runtime = ProjectionRuntime::builder(store, backend)
        .config(RuntimeConfig {
            max_parallel_batches: 3,
            max_building_batches: 2,
            ..RuntimeConfig::default()
        })
        .register(Ledger {
            version,
            slow: args.iter().any(|arg| arg == "--slow"),
            switch: SwitchWhen::OnCommand,
        })?
        .start()
        .await?;
    println!("ready");
    // Runs until killed; the runtime's tasks do the work.
    std::future::pending::<()>().await;
    Ok(())
}
