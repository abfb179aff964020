//! Finding a PostgreSQL server for tests and benchmarks, or starting a throwaway one.
//!
//! In order: `DATABASE_URL` when set; the local server on `127.0.0.1:5432` when it answers; a
//! fresh cluster in a temporary directory when PostgreSQL's binaries are installed (run as the
//! `postgres` user when we are root, since `initdb` refuses root); otherwise an error that says what
//! to install. `XTASK_THROWAWAY_PG=1` skips the first two. A started cluster is stopped and deleted when the [`PgServer`] is dropped.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::Connection;

/// The server `cargo xtask migrate` and the tests use when `DATABASE_URL` is unset.
pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// What to tell someone who has no PostgreSQL at all.
const INSTALL_HINT: &str = "\
PostgreSQL is needed for the tests but none was found: DATABASE_URL is unset, nothing answers on
127.0.0.1:5432, and no `initdb` binary is installed. Install PostgreSQL (15 or newer) with one of
    sudo apt-get install postgresql        # Debian, Ubuntu
    sudo dnf install postgresql-server     # Fedora
    brew install postgresql@15             # macOS
and run the command again (a throwaway cluster is started for the tests), or point DATABASE_URL at
a server you own.";

/// A reachable server, and the cluster behind it when we started one.
#[derive(Debug)]
pub(crate) struct PgServer {
    url: String,
    origin: &'static str,
    cluster: Option<ThrowawayCluster>,
}

impl PgServer {
    pub(crate) fn find_or_start() -> Result<PgServer> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(PgServer {
                url,
                origin: "DATABASE_URL",
                cluster: None,
            });
        }
        // Forcing the throwaway path lets us exercise it on a machine that has a server.
        let force_throwaway = std::env::var_os("XTASK_THROWAWAY_PG").is_some();
        if !force_throwaway && answers(DEFAULT_URL) {
            return Ok(PgServer {
                url: DEFAULT_URL.to_owned(),
                origin: "the local server",
                cluster: None,
            });
        }
        let Some(bindir) = find_bindir() else {
            bail!("{INSTALL_HINT}");
        };
        eprintln!(
            "xtask: no server on 127.0.0.1:5432; starting a throwaway cluster with {}",
            bindir.display()
        );
        let cluster = ThrowawayCluster::start(&bindir, TEST_SETTINGS)?;
        Ok(PgServer {
            url: format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port),
            origin: "a throwaway cluster",
            cluster: Some(cluster),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", redact(&self.url), self.origin)
    }

    /// Whether we started this server ourselves (and so may tune or trash it freely).
    #[allow(dead_code)]
    pub(crate) fn is_throwaway(&self) -> bool {
        self.cluster.is_some()
    }
}

/// A multi-threaded Tokio runtime for the async parts of a task.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting a Tokio runtime")
}

/// Prefix of the databases the integration tests create: `strata_test_<pid>_<n>_<nanos>`, and
/// their template `strata_test_template_<hash>`.
const TEST_PREFIX: &str = "strata_test_";

/// Drops the databases of integration-test processes that have exited. Those of a test run
/// still going beside this one stay, and so does the migrated template, which the next run
/// reuses (its name changes with the migrations).
pub(crate) async fn drop_test_databases(url: &str) -> Result<()> {
    drop_orphaned_databases(url, TEST_PREFIX).await
}

/// Drops the databases named `<prefix><pid>_…` whose process `pid` has exited (Linux: no
/// `/proc/<pid>`). Elsewhere nothing can tell, so nothing is dropped.
pub(crate) async fn drop_orphaned_databases(url: &str, prefix: &str) -> Result<()> {
    if !std::path::Path::new("/proc/self").exists() {
        return Ok(());
    }
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut admin)
            .await?;
    admin.close().await.ok();
    for name in names {
        let pid = name
            .trim_start_matches(prefix)
            .split('_')
            .next()
            .unwrap_or_default();
        let exited = !pid.is_empty()
            && pid.bytes().all(|byte| byte.is_ascii_digit())
            && !std::path::Path::new("/proc").join(pid).exists();
        if exited {
            drop_databases_like(url, &name.replace('_', "\\_")).await?;
        }
    }
    Ok(())
}

/// Drops every database whose name is `LIKE pattern`, disconnecting its sessions first.
pub(crate) async fn drop_databases_like(url: &str, pattern: &str) -> Result<()> {
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut admin)
            .await?;
    for name in names {
        sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
            .execute(&mut admin)
            .await
            .with_context(|| format!("dropping database {name}"))?;
    }
    Ok(())
}

/// The URL with any password masked, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn answers(url: &str) -> bool {
    let reachable = ("127.0.0.1", 5432)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    if !reachable {
        return false;
    }
    let Ok(runtime) = runtime() else {
        return false;
    };
    runtime.block_on(async {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                true
            }
            Err(err) => {
                eprintln!("xtask: 127.0.0.1:5432 answers but refuses us ({err}); not using it");
                false
            }
        }
    })
}

/// The folder of PostgreSQL's server programs (`initdb`, `pg_ctl`, `pg_basebackup`), if any.
pub(crate) fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_initdb(&dir) {
            return Some(dir);
        }
    }
    // Debian and Ubuntu keep the server binaries out of PATH, one folder per major version.
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| has_initdb(dir))
        .collect();
    debian.sort_by_key(|dir| {
        dir.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = debian.pop() {
        return Some(newest);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_initdb(dir))
}

/// Settings of a cluster for tests: nothing waits for the disk.
const TEST_SETTINGS: &str =
    "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off";

/// Settings of a cluster for benchmarks: as durable as a production server (every commit waits
/// for its flush), with room for the clients of a run.
pub(crate) const BENCH_SETTINGS: &str = "-c max_connections=300 -c shared_buffers=256MB";

/// A cluster in a temporary directory, stopped and deleted on drop.
#[derive(Debug)]
pub(crate) struct ThrowawayCluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// `-c name=value` options it runs with.
    settings: String,
}

/// Numbers the clusters of one process, for their folders' names.
static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl ThrowawayCluster {
    /// A fresh folder and port for a cluster run with `settings`.
    fn prepare(bindir: &Path, settings: &str) -> Result<ThrowawayCluster> {
        let as_postgres_user = is_root();
        let dir = std::env::temp_dir().join(format!(
            "strata-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ok();
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cluster = ThrowawayCluster {
            bindir: bindir.to_owned(),
            dir,
            port: free_port()?,
            as_postgres_user,
            settings: settings.to_owned(),
        };
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&cluster.dir)
                .status()
                .context("chown the cluster directory to postgres")?;
            if !status.success() {
                bail!(
                    "running as root, but the `postgres` user that initdb needs does not exist; \
                     create it (`useradd postgres`) or set DATABASE_URL"
                );
            }
        }
        Ok(cluster)
    }

    /// Starts a fresh cluster with the server binaries of `bindir` (see [`find_bindir`]).
    pub(crate) fn start(bindir: &Path, settings: &str) -> Result<ThrowawayCluster> {
        let cluster = Self::prepare(bindir, settings)?;
        let data = cluster.dir.join("data");
        cluster.run_pg(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    /// Starts a hot standby of this cluster: `pg_basebackup -R` into a folder of its own, then
    /// streaming replication from this one.
    pub(crate) fn start_standby(&self) -> Result<ThrowawayCluster> {
        let standby = Self::prepare(&self.bindir, &self.settings)?;
        let data = standby.dir.join("data");
        standby.run_pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &data.to_string_lossy(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )?;
        standby.pg_ctl_start()?;
        Ok(standby)
    }

    /// Its data folder.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Its admin URL.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of `database` on it.
    pub(crate) fn database_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.dir.display(),
            self.settings
        );
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-w",
                "start",
            ],
        )
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> Result<()> {
        let binary = self.bindir.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&binary);
            command
        } else {
            Command::new(&binary)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !output.status.success() {
            bail!(
                "{program} failed: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Err(err) = self.run_pg(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "immediate", "stop"],
        ) {
            eprintln!("xtask: stopping the throwaway cluster: {err:#}");
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
