//! What the tests share: a nats-server of their own that they can kill and restart, a client
//! that reconnects quickly, and reading a stream back as identified messages.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::StreamMessage;
use strata_event::Event;
use strata_nats::{
    AGGREGATE_ID_HEADER, AGGREGATE_TYPE_HEADER, INSTANCE_HEADER, MESSAGE_ID_HEADER, SEQUENCE_HEADER,
};

/// Where CI machines of this kind have the server; `NATS_SERVER` names another.
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// How long a test waits for anything (a server to listen, a sink to catch up).
pub(crate) const WAIT: Duration = Duration::from_secs(25);

/// How long the sink waits for an acknowledgement: short, so an outage shows quickly.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(1);

static SERVERS: AtomicU64 = AtomicU64::new(0);

/// A nats-server with JetStream on a loopback port of its own, storing in a temporary directory
/// that outlives restarts and is removed on drop. Never the shared server on 4222: the tests
/// kill theirs.
pub(crate) struct NatsServer {
    program: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a server, or fails the test saying what is missing: a test that could not run
    /// must not pass.
    pub(crate) fn start() -> NatsServer {
        let program = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(NATS_SERVER));
        assert!(
            program.is_file(),
            "the strata-nats tests start a nats-server of their own and need its binary at {} \
             (Debian: apt-get install nats-server), or its path in NATS_SERVER",
            program.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "strata-nats-test-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let mut server = NatsServer {
            program,
            child: None,
            port,
            dir,
        };
        server.spawn();
        server
    }

    /// The URL clients connect to.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (no shutdown of its own) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill nats-server");
            child.wait().expect("reap nats-server");
        }
    }

    /// Starts the server again on the same port and store.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed server only");
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.program)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(self.log())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("{} does not start: {err}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {}; its log: {}",
                self.port,
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JetStream context on `server` whose client reconnects every 100 ms (async-nats backs off
/// up to seconds by default) and whose publishes wait [`ACK_TIMEOUT`] for their acknowledgement.
pub(crate) async fn jetstream(server: &NatsServer) -> Context {
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_attempts| Duration::from_millis(100))
        .connect(server.url())
        .await
        .expect("connect to the test's nats-server");
    ContextBuilder::new().timeout(ACK_TIMEOUT).build(client)
}

/// The event's identity, as the message's headers give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Identity {
    pub(crate) instance: String,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: u64,
}

impl Identity {
    pub(crate) fn of_event(event: &Event) -> Identity {
        Identity {
            instance: event.aggregate.instance_id.as_str().to_owned(),
            aggregate_type: event.aggregate.aggregate_type.as_str().to_owned(),
            aggregate_id: event.aggregate.aggregate_id.as_str().to_owned(),
            sequence: event.sequence,
        }
    }

    fn of_headers(headers: &HeaderMap) -> Identity {
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("every message has {name}"))
                .as_str()
                .to_owned()
        };
        Identity {
            instance: header(INSTANCE_HEADER),
            aggregate_type: header(AGGREGATE_TYPE_HEADER),
            aggregate_id: header(AGGREGATE_ID_HEADER),
            sequence: header(SEQUENCE_HEADER).parse().expect("a sequence"),
        }
    }

    /// The aggregate part, to group by.
    pub(crate) fn aggregate(&self) -> (String, String, String) {
        (
            self.instance.clone(),
            self.aggregate_type.clone(),
            self.aggregate_id.clone(),
        )
    }
}

/// One stored message, read back and checked for consistency: its headers, message id and
/// body name the same event.
pub(crate) struct Published {
    pub(crate) identity: Identity,
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) event: Event,
}

/// Every message of stream `name`, in stream order.
pub(crate) async fn read_stream(context: &Context, name: &str) -> Vec<Published> {
    let mut stream = context.get_stream(name).await.expect("the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("a stored message");
        messages.push(published(message));
    }
    messages
}

fn published(message: StreamMessage) -> Published {
    let identity = Identity::of_headers(&message.headers);
    let event: Event = serde_json::from_slice(&message.payload).expect("the body is an event");
    assert_eq!(
        identity,
        Identity::of_event(&event),
        "headers and body agree"
    );
    assert_eq!(
        message
            .headers
            .get(MESSAGE_ID_HEADER)
            .map(|id| id.as_str().to_owned()),
        Some(strata_nats::message_id(&event)),
        "the message id is the event's identity"
    );
    Published {
        identity,
        subject: message.subject.to_string(),
        headers: message.headers,
        body: message.payload.to_vec(),
        event,
    }
}

/// How many messages stream `name` holds.
pub(crate) async fn stream_messages(context: &Context, name: &str) -> u64 {
    match context.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}
