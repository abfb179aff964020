//! Test support for running Strata against a real PostgreSQL server.
//!
//! Every test gets a database of its own, created with `CREATE DATABASE … TEMPLATE` from a
//! template that already has the migrations applied. Cloning a template is a file copy, so a fresh
//! database costs tens of milliseconds instead of a full migration run, and no test can see
//! another's rows.
//!
//! The server is the one named by `DATABASE_URL`, or `postgres://postgres@127.0.0.1:5432/postgres`
//! when it is unset. `cargo xtask test` finds or starts a server and, before and after the
//! tests, drops the test databases of processes that have exited; every database this crate
//! creates is named `strata_test_<pid>_…` so they are easy to find and to tell apart.
//!
//! This crate is not published and is not an API: it exists for the workspace's own tests.

mod late_commits;
pub mod ledger;
pub mod pgbouncer;
pub mod processes;
mod standby;
mod tls;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use strata_postgres::admin::RoleNames;
use strata_postgres::{PgConfig, PgPools, PgStore, PoolConfig};

pub use crate::late_commits::spawn_late_commit_writers;
pub use crate::tls::TestCertificates;

/// The server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every database the tests create; `cargo xtask test` drops them by it.
pub const TEST_DATABASE_PREFIX: &str = "strata_test_";

/// Keeps template creation from racing between test binaries that start at the same time.
const TEMPLATE_LOCK_KEY: i64 = 0x5354_5241_5441_0001;

static DATABASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The admin URL tests connect to.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The PostgreSQL program `name` (`initdb`, `pg_dump`…) of the newest version installed under
/// `/usr/lib/postgresql`, where Debian keeps the server's programs.
///
/// # Panics
///
/// When it is not installed: a test that needs it would prove nothing without it.
pub fn postgres_binary(name: &str) -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|program| program.is_file())
        .collect();
    // Version folders are numbers: the longest name, then the greatest, is the newest.
    found.sort_by_key(|program| {
        let version = program
            .iter()
            .nth(4)
            .map(|v| v.to_string_lossy().into_owned());
        version.map(|v| (v.len(), v))
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "this test needs PostgreSQL's `{name}` under /usr/lib/postgresql/<version>/bin \
             (Debian: apt-get install postgresql)"
        )
    })
}

/// A fresh, migrated database of one test's own.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Options that connect to it.
    pub options: PgConnectOptions,
}

impl TestDatabase {
    /// Creates a fresh database with the migrations applied.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached: the message says how to get one.
    pub async fn create() -> TestDatabase {
        match Self::try_create().await {
            Ok(database) => database,
            Err(err) => panic!(
                "could not create a test database on {}: {err}\n\
                 Run the tests with `cargo xtask test`, which finds or starts a PostgreSQL server, \
                 or set DATABASE_URL to one you own.",
                admin_url()
            ),
        }
    }

    /// Creates a fresh, empty database: no schema, no migrations.
    pub async fn create_empty() -> TestDatabase {
        let admin_options = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_URL parses");
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .expect("the test server answers");
        let name = unique_database_name();
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create an empty database");
        admin.close().await.ok();
        TestDatabase {
            options: admin_options.database(&name),
            name,
        }
    }

    /// Creates a fresh migrated database on the server of `admin_url` (a [`ThrowawayServer`]'s,
    /// say) rather than the shared one.
    ///
    /// # Panics
    ///
    /// When that server cannot be reached.
    pub async fn create_on(admin_url: &str) -> TestDatabase {
        match Self::try_create_on(admin_url).await {
            Ok(database) => database,
            Err(err) => panic!("could not create a test database on {admin_url}: {err}"),
        }
    }

    async fn try_create() -> Result<TestDatabase, sqlx::Error> {
        Self::try_create_on(&admin_url()).await
    }

    async fn try_create_on(admin_url: &str) -> Result<TestDatabase, sqlx::Error> {
        let admin_options = PgConnectOptions::from_str(admin_url)?;
        let mut admin = PgConnection::connect_with(&admin_options).await?;
        let template = ensure_template(&mut admin, &admin_options).await?;
        let name = unique_database_name();
        admin
            .execute(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#).as_str())
            .await?;
        admin.close().await?;
        Ok(TestDatabase {
            options: admin_options.database(&name),
            name,
        })
    }

    /// A pool on this database with at most `max_connections` connections.
    pub fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_lazy_with(self.options.clone())
    }

    /// A store on this database with `config`.
    pub fn store_with(&self, config: PgConfig) -> PgStore {
        let pools = PgPools::connect_lazy_with(self.options.clone(), &config);
        PgStore::from_pools(pools, &config).expect("tests run inside a Tokio runtime")
    }

    /// A store on this database with the default configuration, but pools small enough that two
    /// tests at once stay far below the server's connection limit.
    pub fn store(&self) -> PgStore {
        self.store_with(test_config())
    }
}

/// The configuration tests use unless they need another.
pub fn test_config() -> PgConfig {
    PgConfig {
        push_pool: PoolConfig::with_max(8),
        query_pool: PoolConfig::with_max(4),
        projection_pool: PoolConfig::with_max(2),
        ..PgConfig::default()
    }
}

/// A store on a fresh database: what the conformance suite is given.
pub async fn fresh_store() -> PgStore {
    TestDatabase::create().await.store()
}

/// The test configuration with idempotency keys kept for
/// [`strata_store::conformance::SHORT_RETENTION`] only.
pub fn expiring_config() -> PgConfig {
    PgConfig {
        idempotency_key_retention: strata_store::conformance::SHORT_RETENTION,
        ..test_config()
    }
}

/// A store on a fresh database whose idempotency keys expire after
/// [`strata_store::conformance::SHORT_RETENTION`]: the conformance suite's `expiring:` store.
pub async fn fresh_expiring_store() -> PgStore {
    TestDatabase::create().await.store_with(expiring_config())
}

/// Makes sure a template database with the current migrations exists and returns its name.
///
/// The name carries a hash of the migrations, so editing or adding one produces a new template
/// instead of reusing a stale one.
async fn ensure_template(
    admin: &mut PgConnection,
    admin_options: &PgConnectOptions,
) -> Result<String, sqlx::Error> {
    let template = format!(
        "{TEST_DATABASE_PREFIX}template_{}",
        strata_postgres::schema_checksum()
    );
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *admin)
        .await?;
    let result = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut *admin)
                .await?;
        if !exists {
            // Built under another name and renamed, so a crash half-way never leaves a template
            // that looks complete.
            let building = format!("{template}_building");
            admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{building}""#).as_str())
                .await?;
            admin
                .execute(format!(r#"CREATE DATABASE "{building}""#).as_str())
                .await?;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(admin_options.clone().database(&building))
                .await?;
            let schema_failed = |err: strata_store::Error| sqlx::Error::Protocol(err.to_string());
            strata_postgres::migrate(&pool)
                .await
                .map_err(schema_failed)?;
            // The restricted-role tests run as these (the default names).
            strata_postgres::admin::set_up_roles(&pool, &RoleNames::default())
                .await
                .map_err(schema_failed)?;
            pool.close().await;
            // A closed pool's session can linger on the server for a while (seen on freshly
            // started servers under load), and a database with a session cannot be renamed
            // (SQLSTATE 55006). The database is ours and finished: end whatever is still on it.
            let rename = format!(r#"ALTER DATABASE "{building}" RENAME TO "{template}""#);
            let mut attempts = 0;
            loop {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&building)
                .execute(&mut *admin)
                .await?;
                match admin.execute(rename.as_str()).await {
                    Err(sqlx::Error::Database(err))
                        if err.code().as_deref() == Some("55006") && attempts < 50 =>
                    {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    done => break done.map(drop)?,
                }
            }
        }
        Ok(template)
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut *admin)
        .await?;
    result
}

fn unique_database_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{TEST_DATABASE_PREFIX}{}_{}_{nanos}",
        std::process::id(),
        DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Pushes one event through the SQL function inside a transaction that takes its id first and
/// commits only after `pause` (twice: before and after the push). The event gets an early position
/// but becomes visible late: the situation that makes naive "everything after my last position"
/// readers skip events.
///
/// The transaction takes the events table's lock before its id, as every push does
/// (`eventstore.begin_push`): that is what marks it as a writer the commit horizon waits for.
pub async fn push_held_open(
    pool: &PgPool,
    instance: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    pause: std::time::Duration,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE eventstore.events IN ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await?;
    tokio::time::sleep(pause).await;
    let error: Option<String> = sqlx::query_scalar(
        "SELECT r_error FROM eventstore.push(ARRAY[0], ARRAY[$1], ARRAY[$2], ARRAY[$3], \
         ARRAY['user.slow'], ARRAY[1], ARRAY['tester'], ARRAY['org'], ARRAY['{}'], \
         ARRAY[NULL::BIGINT], ARRAY[NULL::TEXT], '{}'::INT[], '{}'::TEXT[], '{}'::TEXT[], \
         '{}'::TEXT[], '{}'::TEXT[], '{}'::INT[], '{}'::TEXT[], '{}'::TEXT[], '{}'::TEXT[], \
         interval '24 hours')",
    )
    .bind(instance)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(error) = error {
        return Err(sqlx::Error::Protocol(format!("push refused: {error}")));
    }
    tokio::time::sleep(pause).await;
    tx.commit().await
}

/// A PostgreSQL server of a test's own, in a temporary directory, for tests that must stop or
/// restart the server or configure it (never the shared one). Stopped and deleted on drop.
#[derive(Debug)]
pub struct ThrowawayServer {
    bindir: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    as_postgres: bool,
    /// `-c name=value` settings beyond the defaults.
    settings: Vec<String>,
}

impl ThrowawayServer {
    /// Starts a fresh cluster.
    ///
    /// # Panics
    ///
    /// When PostgreSQL's server binaries are not installed under `/usr/lib/postgresql`, or the
    /// cluster does not start: the test needs it, and passing without it would prove nothing.
    pub fn start() -> ThrowawayServer {
        Self::start_with(Vec::new(), |_| Vec::new())
    }

    /// One server shared by every test of this test binary: started by the first test that asks
    /// (a cluster takes about two seconds to start) and stopped, with its folder deleted, by a
    /// watchdog once this process has exited, since a static is never dropped.
    ///
    /// # Panics
    ///
    /// Like [`ThrowawayServer::start`].
    pub fn shared() -> &'static ThrowawayServer {
        static SHARED: std::sync::OnceLock<ThrowawayServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let server = Self::start();
            server.stop_after_this_process();
            server
        })
    }

    /// Leaves a shell behind that waits for this process to end, then stops the server and
    /// deletes its folder. The shell backgrounds itself, so nothing here waits for it.
    fn stop_after_this_process(&self) {
        let data = self.dir.join("data");
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = format!(
            "{} '{}' -D '{}' -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl.display(),
            data.display()
        );
        let script = format!(
            "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; \
             rm -rf '{dir}') >/dev/null 2>&1 </dev/null &",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let started = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .is_ok_and(|status| status.success());
        assert!(started, "the shared server's watchdog did not start");
    }

    /// Starts a fresh cluster that speaks TLS with a server certificate signed by a certificate
    /// authority of its own, and returns the certificates (the CA is what clients trust).
    ///
    /// # Panics
    ///
    /// Like [`ThrowawayServer::start`].
    pub fn start_with_tls() -> (ThrowawayServer, TestCertificates) {
        let mut certificates = None;
        let server = Self::start_with(Vec::new(), |dir| {
            let generated = TestCertificates::generate(&dir.join("tls"), "server");
            let settings = vec![
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", generated.server_cert.display()),
                format!("ssl_key_file={}", generated.server_key.display()),
            ];
            certificates = Some(generated);
            settings
        });
        let certificates = certificates.expect("certificates were generated");
        (server, certificates)
    }

    /// Starts a cluster with `settings`, plus those `more` returns once the server's folder
    /// exists (for files the server reads, such as certificates).
    fn start_with(
        settings: Vec<String>,
        more: impl FnOnce(&std::path::Path) -> Vec<String>,
    ) -> ThrowawayServer {
        let bindir = postgres_binary("initdb")
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let (port, dir, as_postgres) = server_folder();
        let mut settings = settings;
        settings.extend(more(&dir));
        if as_postgres {
            chown_to_postgres(&dir);
        }
        // PostgreSQL refuses a private key others can read.
        for key in walk(&dir).filter(|path| path.extension().is_some_and(|ext| ext == "key")) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("a private key of the server's own");
        }
        let server = ThrowawayServer {
            bindir,
            dir,
            port,
            as_postgres,
            settings,
        };
        let data = server.dir.join("data");
        let initialised = server.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        assert!(initialised, "initdb failed (its error is above)");
        assert!(
            server.pg_ctl("start"),
            "the throwaway server did not start: {}",
            std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
        );
        server
    }

    fn run(&self, program: &str, args: &[&str]) -> bool {
        let binary = self.bindir.join(program);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&binary);
            command
        } else {
            std::process::Command::new(&binary)
        };
        let output = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => true,
            Ok(output) => {
                eprintln!(
                    "{program} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                false
            }
            Err(err) => {
                eprintln!("{program} could not start: {err}");
                false
            }
        }
    }

    fn pg_ctl(&self, action: &str) -> bool {
        let data = self.dir.join("data");
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                action,
            ],
        )
    }

    /// Its admin URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) -> bool {
        self.pg_ctl("stop")
    }

    /// Starts it again after [`ThrowawayServer::stop`].
    pub fn restart(&self) -> bool {
        self.pg_ctl("start")
    }
}

/// A free port and a fresh folder for a throwaway server, and whether it must run as the
/// `postgres` user (we are root, and `initdb` refuses root).
fn server_folder() -> (u16, std::path::PathBuf, bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let dir = std::env::temp_dir().join(format!(
        "strata-test-pg-{}-{}",
        std::process::id(),
        DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a folder for the server");
    let as_postgres = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if as_postgres {
        chown_to_postgres(&dir);
    }
    (port, dir, as_postgres)
}

/// Gives `dir` and everything in it to the `postgres` user.
fn chown_to_postgres(dir: &std::path::Path) {
    let owned = std::process::Command::new("chown")
        .args(["-R", "postgres:"])
        .arg(dir)
        .status()
        .is_ok_and(|status| status.success());
    assert!(owned, "chown of {} failed", dir.display());
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> impl Iterator<Item = std::path::PathBuf> {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.into_iter()
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestDatabase {
    /// A store whose every connection runs as the restricted `strata_writer` role (set up on the
    /// template by `strata_postgres::admin::set_up_roles`), to show the normal path needs nothing more.
    pub fn restricted_store(&self) -> PgStore {
        self.restricted_store_with(test_config())
    }

    /// [`TestDatabase::restricted_store`] with `config`.
    pub fn restricted_store_with(&self, config: PgConfig) -> PgStore {
        let open = |max: u32| {
            PgPoolOptions::new()
                .max_connections(max)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET ROLE strata_writer").await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(self.options.clone())
        };
        let pools = PgPools::new(
            open(config.push_pool.max_connections),
            open(config.query_pool.max_connections),
            open(config.projection_pool.max_connections),
        );
        PgStore::from_pools(pools, &config).expect("tests run inside a Tokio runtime")
    }
}

/// A store as the restricted role on a fresh database: the conformance suite's second run.
pub async fn fresh_restricted_store() -> PgStore {
    TestDatabase::create().await.restricted_store()
}

/// [`fresh_restricted_store`] whose idempotency keys expire like [`fresh_expiring_store`]'s.
pub async fn fresh_expiring_restricted_store() -> PgStore {
    TestDatabase::create()
        .await
        .restricted_store_with(expiring_config())
}
