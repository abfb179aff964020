//! A real PgBouncer of a test's own, in front of the test server, for testing Strata behind a
//! pooling proxy. Each [`PgBouncer`] is its own process on a free port, with a wildcard database
//! entry (so every test database is reachable through it) and small server pools; it is killed on
//! drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::{TestDatabase, admin_url};

/// Where Debian's `pgbouncer` package puts the program.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

static BOUNCER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// When PgBouncer gives a client's server connection back to its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// When the client disconnects: a client keeps one server connection, as if direct.
    Session,
    /// After each transaction (or statement outside one).
    Transaction,
    /// After each statement; transactions of more than one statement are refused.
    Statement,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// A running PgBouncer in front of the test server; killed (and its folder deleted) on drop.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PgBouncer {
    /// Starts one in `mode` with server pools of 4 connections per database: small, because the
    /// tests run beside ~90 other test binaries on a server with `max_connections` 100, and small
    /// enough that clients share server connections, which is what the tests are about.
    ///
    /// # Panics
    ///
    /// When PgBouncer is not installed (`cargo xtask test` installs it; elsewhere
    /// `apt-get install pgbouncer`), or it does not start: a test behind it would prove nothing
    /// without it.
    pub fn start(mode: PoolMode) -> PgBouncer {
        Self::start_with(mode, 4)
    }

    /// Like [`PgBouncer::start`], with at most `pool_size` server connections per database.
    ///
    /// # Panics
    ///
    /// Like [`PgBouncer::start`].
    pub fn start_with(mode: PoolMode, pool_size: u32) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is not installed: run the tests with `cargo xtask test`, which installs \
             it, or `apt-get install pgbouncer`"
        );
        let server = PgConnectOptions::from_str(&admin_url()).expect("DATABASE_URL parses");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "strata-test-pgbouncer-{}-{}",
            std::process::id(),
            BOUNCER_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a folder for pgbouncer");
        let user = server.get_username().to_owned();
        // Trust on both sides: the test server trusts local connections, and the proxy lets any
        // user the auth file names through without a password (it still needs the name listed).
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n"))
            .expect("pgbouncer's auth file");
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            host = server.get_host(),
            server_port = server.get_port(),
            dir = dir.display(),
            mode = mode.as_str(),
        );
        let config_file = dir.join("pgbouncer.ini");
        std::fs::write(&config_file, config).expect("pgbouncer's configuration");
        // PgBouncer refuses to run as root: as root, run it as the `postgres` user, which must
        // then own its folder (for the log and the pid file).
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        let mut command = if is_root {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .is_ok_and(|status| status.success());
            assert!(owned, "chown of pgbouncer's folder failed");
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", PGBOUNCER]);
            command
        } else {
            Command::new(PGBOUNCER)
        };
        let child = command
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let mut bouncer = PgBouncer { child, dir, port };
        bouncer.wait_until_listening();
        bouncer
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            let exited = self.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "pgbouncer did not start ({exited:?}): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Options that connect to `database` through this PgBouncer.
    pub fn options(&self, database: &TestDatabase) -> PgConnectOptions {
        database.options.clone().host("127.0.0.1").port(self.port)
    }

    /// A URL that connects to `database` through this PgBouncer.
    pub fn url(&self, database: &TestDatabase) -> String {
        let options = self.options(database);
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            options.get_username(),
            self.port,
            database.name
        )
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Through `runuser` the child is runuser, not pgbouncer: signal pgbouncer itself by its
        // pid file (SIGTERM: immediate shutdown), then reap the child.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill")
                .args(["-TERM", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
