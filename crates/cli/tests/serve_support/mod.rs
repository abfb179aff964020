//! What the `strata serve` tests share: a database with a projection that runs and fails on one
//! event, one registered projection nobody runs (so it stalls), the server as a child process,
//! and a small HTTP/1.1 client.

// Each test file includes this module and uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_event::{Event, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    OnFailure, Projection, ProjectionBackend, ProjectionConfig, ProjectionRuntime, Reads,
    ReduceError, Registration, Statement,
};
use strata_store::EventStore;

/// The token the tests start the server with.
pub(crate) const TOKEN: &str = "serve-test-token-0123456789";

/// A projection of `user` events that fails on an event whose payload says `"bad": true` while
/// `failing` is set; with one attempt, the failure is recorded and the checkpoint moves on.
#[derive(Debug, Clone)]
pub(crate) struct Balances {
    pub(crate) failing: Arc<AtomicBool>,
}

impl Projection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let bad = event
            .payload::<serde_json::Value>()
            .is_ok_and(|payload| payload["bad"] == true);
        if bad && self.failing.load(Ordering::SeqCst) {
            return Err(ReduceError::new("boom: the ledger refuses this event"));
        }
        Ok(Vec::new())
    }

    fn reset(&self, _instance: &InstanceId) -> Vec<Statement> {
        Vec::new()
    }

    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            max_failure_count: 1,
            on_failure: OnFailure::Skip,
            ..ProjectionConfig::default()
        }
    }
}

/// A database with events in two instances, the `balances` projection running (one failed
/// event, tenant-a user/u-1 sequence 2) and `stuck` registered by a runtime that is gone, so its
/// pairs stall after a second.
pub(crate) struct Scenario {
    pub(crate) database: TestDatabase,
    pub(crate) store: PgStore,
    pub(crate) runtime: ProjectionRuntime<PgStore, PgProjections>,
    pub(crate) failing: Arc<AtomicBool>,
}

impl Scenario {
    pub(crate) async fn start() -> Scenario {
        let database = TestDatabase::create().await;
        let store = database.store();
        for (instance, id, bad) in [
            ("tenant-a", "u-1", false),
            ("tenant-a", "u-1", true),
            ("tenant-a", "u-2", false),
            ("tenant-b", "u-3", false),
            ("tenant-b", "u-3", false),
        ] {
            let command = strata_event::Command::builder(instance, "user", id, "user.changed")
                .payload(&serde_json::json!({ "bad": bad }))
                .creator("test")
                .owner("org-1")
                .build()
                .expect("a valid command");
            store.push(vec![command]).await.expect("pushed");
        }
        let backend = PgProjections::new(database.pool(2));
        backend
            .register(&Registration {
                name: "stuck",
                reads: &Reads::new().aggregate("user"),
                has_side_effects: false,
                consumer: None,
                stall_after: Duration::from_secs(1),
            })
            .await
            .expect("registered");
        let failing = Arc::new(AtomicBool::new(true));
        let runtime =
            ProjectionRuntime::builder(store.clone(), PgProjections::new(database.pool(4)))
                .register(Balances {
                    failing: Arc::clone(&failing),
                })
                .expect("a valid projection")
                .start()
                .await
                .expect("the runtime starts");
        // Until the failure is recorded and both instances are applied.
        let mut ready = false;
        for _ in 0..200 {
            let failed = backend.failed_events(None).await.expect("failed events");
            let states = backend.states().await.expect("states");
            let applied = states.iter().filter(|s| s.projection == "balances").count();
            if failed.len() == 1 && applied == 2 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            ready,
            "balances applied both instances and recorded one failure"
        );
        // `stuck`'s events have now waited longer than its stall_after.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Scenario {
            database,
            store,
            runtime,
            failing,
        }
    }
}

/// `strata serve` running as a child process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: SocketAddr,
}

impl Server {
    /// Starts `strata serve` on a free loopback port with `extra` arguments.
    pub(crate) fn start(url: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--listen", "127.0.0.1:0", "--sample-every", "1"])
            .args(extra)
            .env("DATABASE_URL", url)
            .env_remove("STRATA_SERVE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strata serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("strata serve prints where it listens");
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .expect("an address");
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request (the connection closes after it).
pub(crate) fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Answer {
    let mut stream = TcpStream::connect(address).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let body = form
        .map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    // The server's own address as Host, unless the test names another.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    request.push_str("Connection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if form.is_some() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("the answer arrives");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Signs in and returns the session cookie (`name=value`) and the page's CSRF token.
pub(crate) fn sign_in(address: SocketAddr) -> (String, String) {
    let answer = http(address, "POST", "/signin", &[], Some(&[("token", TOKEN)]));
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer
        .header("set-cookie")
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = http(address, "GET", "/failed", &[("Cookie", &cookie)], None);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    (cookie, csrf)
}
