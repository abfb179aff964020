//! TLS with a certificate authority of the test's own: a PostgreSQL server (a throwaway cluster
//! with `ssl = on`) and a Redis server (`--tls-port`), each with a server certificate the test
//! signed. `verify-full` with the right CA works, the wrong CA fails with an error that says so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_cache::conformance::{Instance, InstanceIndex, unique_name};
use strata_cache::{Cache, CacheConfig, ConnectorKind, Connectors};
use strata_event::Command as PushCommand;
use strata_integration_tests::{TestCertificates, ThrowawayServer, test_config};
use strata_postgres::PgStore;
use strata_query::Query;
use strata_store::{ErrorKind, EventStore};

fn tls_url(server: &ThrowawayServer, parameters: &str) -> String {
    format!("{}?{parameters}", server.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_servers_certificate() {
    let (server, certificates) = ThrowawayServer::start_with_tls();
    let verified = tls_url(
        &server,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            certificates.ca.display()
        ),
    );
    let store = PgStore::connect(&verified, test_config())
        .await
        .expect("verify-full with the test's CA connects");
    strata_postgres::migrate(store.pools().push())
        .await
        .expect("migrate over TLS");
    let pushed = store
        .push(vec![
            PushCommand::builder("tenant", "user", "u1", "user.added")
                .creator("tls")
                .owner("org")
                .build()
                .expect("valid"),
        ])
        .await
        .expect("push over TLS");
    let read = store
        .query(&Query::aggregate(&pushed[0].aggregate))
        .await
        .expect("read over TLS");
    assert_eq!(read, pushed);
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pools().query())
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the session is encrypted");

    // sslmode=require encrypts without checking whom it talks to.
    PgStore::connect(&tls_url(&server, "sslmode=require"), test_config())
        .await
        .expect("require connects");

    // Another CA: refused, and the error says it is about the certificate.
    let elsewhere = std::env::temp_dir().join(format!("strata-test-tls-{}", std::process::id()));
    let other = TestCertificates::generate(&elsewhere, "other");
    let wrong = tls_url(
        &server,
        &format!("sslmode=verify-full&sslrootcert={}", other.ca.display()),
    );
    let refused = PgStore::connect(&wrong, test_config())
        .await
        .expect_err("a certificate the CA did not sign is refused");
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
    let missing = tls_url(
        &server,
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let refused = PgStore::connect(&missing, test_config())
        .await
        .expect_err("a CA file that does not exist");
    assert_ne!(refused.kind(), ErrorKind::Conflict, "{refused}");
    let _ = std::fs::remove_dir_all(elsewhere);
}

/// A Redis server of the test's own that only speaks TLS; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl TlsRedis {
    fn start(certificates: &TestCertificates, dir: std::path::PathBuf) -> TlsRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-port")
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(&certificates.server_cert)
            .arg("--tls-key-file")
            .arg(&certificates.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&certificates.ca)
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server runs (Debian: apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis { child, port, dir }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn redis_cache(connectors: &Connectors) -> Cache<Instance> {
    let config = CacheConfig {
        connector: ConnectorKind::Redis,
        ..CacheConfig::default()
    };
    Cache::start(&unique_name(), config, connectors)
        .await
        .expect("a cache on Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_speaks_tls_with_the_servers_ca() {
    let dir = std::env::temp_dir().join(format!("strata-test-redis-tls-{}", std::process::id()));
    let certificates = TestCertificates::generate(&dir, "redis");
    std::fs::create_dir_all(dir.join("data")).expect("redis folder");
    let redis = TlsRedis::start(&certificates, dir.join("data"));

    let trusted = Connectors::default()
        .with_redis_tls(&redis.url(), certificates.ca_pem.as_bytes())
        .expect("a rediss URL and a CA");
    let cache = redis_cache(&trusted).await;
    let alice = Instance::new("i1", &["alice.example"]);
    cache.set(alice.clone()).await.expect("set over TLS");
    assert_eq!(
        cache.get(InstanceIndex::Domain, "alice.example").await,
        Some(alice),
        "a hit over TLS"
    );

    // A CA that did not sign the server's certificate: every operation is a miss.
    let other = TestCertificates::generate(&dir.join("other"), "other");
    let untrusted = Connectors::default()
        .with_redis_tls(&redis.url(), other.ca_pem.as_bytes())
        .expect("a rediss URL and a CA");
    let cache = redis_cache(&untrusted).await;
    let bob = Instance::new("i2", &["bob.example"]);
    let _ = cache.set(bob).await;
    assert_eq!(cache.get(InstanceIndex::Id, "i2").await, None);
    drop(redis);
}
