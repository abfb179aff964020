//! `strata serve`: `/metrics` read by a Prometheus text parser and checked against what was
//! done, `/health`, the token, session and CSRF checks on every action, a retry that a running
//! runtime carries out, and the status page in headless Chromium (`serve/browser.rs`).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod serve_support;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use serve_support::{Scenario, Server, TOKEN, http, sign_in};
use strata_event::Command;
use strata_postgres::PgProjections;
use strata_postgres::admin::pending_projection_requests;
use strata_projection::ProjectionBackend;
use strata_store::EventStore;

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
        .map(|sample| match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a single value"),
        })
        .collect();
    assert_eq!(matching.len(), 1, "{metric} {labels:?}: {matching:?}");
    matching[0]
}

fn scrape(server: &Server) -> Scrape {
    let answer = http(server.address, "GET", "/metrics", &[], None);
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        answer.headers
    );
    Scrape::parse(answer.body.lines().map(|line| Ok(line.to_owned()))).expect("valid exposition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_lag_health_and_failures_as_the_database_has_them() {
    let scenario = Scenario::start().await;
    let url = support::url(&scenario.database);
    let server = Server::start(&url, &[]);
    let scrape = scrape(&server);

    assert_eq!(value(&scrape, "strata_up", &[]), 1.0);
    // Counted from the server's start: the five events before it are not.
    assert_eq!(value(&scrape, "strata_store_events_stored_total", &[]), 0.0);
    assert_eq!(value(&scrape, "strata_runtimes_alive", &[]), 1.0);
    // `balances` applied everything; its one failure was recorded and skipped past.
    let balances = [("projection", "balances")];
    assert_eq!(
        value(&scrape, "strata_projection_events_behind", &balances),
        0.0
    );
    assert_eq!(
        value(&scrape, "strata_projection_failed_events", &balances),
        1.0
    );
    assert_eq!(
        value(&scrape, "strata_projection_parked_events", &balances),
        0.0
    );
    assert_eq!(
        value(&scrape, "strata_projection_runtimes_alive", &balances),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "strata_projection_instances",
            &[("projection", "balances"), ("health", "healthy")]
        ),
        2.0
    );
    // `stuck` has every event waiting, for longer than its stall_after, in both instances.
    let stuck = [("projection", "stuck")];
    assert_eq!(
        value(&scrape, "strata_projection_events_behind", &stuck),
        5.0
    );
    assert!(value(&scrape, "strata_projection_seconds_behind", &stuck) >= 1.0);
    assert_eq!(
        value(
            &scrape,
            "strata_projection_instances",
            &[("projection", "stuck"), ("health", "stalled")]
        ),
        2.0
    );
    assert_eq!(
        value(&scrape, "strata_projection_runtimes_alive", &stuck),
        0.0
    );

    // Two more events: the next sample counts them behind `stuck` and as stored.
    for id in ["u-8", "u-9"] {
        let command = Command::builder("tenant-c", "user", id, "user.changed")
            .creator("test")
            .owner("org-1")
            .build()
            .unwrap();
        scenario.store.push(vec![command]).await.unwrap();
    }
    let mut seen = scrape;
    for _ in 0..60 {
        if value(&seen, "strata_projection_events_behind", &stuck) == 7.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        seen = self::scrape(&server);
    }
    assert_eq!(value(&seen, "strata_projection_events_behind", &stuck), 7.0);
    // Counted between commit horizons: each exactly once.
    for _ in 0..3 {
        assert_eq!(value(&seen, "strata_store_events_stored_total", &[]), 2.0);
        tokio::time::sleep(Duration::from_millis(600)).await;
        seen = self::scrape(&server);
    }

    // Per instance only when asked for.
    assert!(
        seen.samples
            .iter()
            .all(|s| s.labels.get("instance").is_none())
    );
    let per_instance = Server::start(&url, &["--instance-labels"]);
    let scrape = self::scrape(&per_instance);
    assert_eq!(
        value(
            &scrape,
            "strata_projection_events_behind",
            &[("projection", "stuck"), ("instance", "tenant-a")]
        ),
        3.0
    );
    scenario
        .runtime
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_for_load_balancers_and_can_fail_on_a_stalled_pair() {
    let scenario = Scenario::start().await;
    let server = Server::start(&support::url(&scenario.database), &[]);
    let health = http(server.address, "GET", "/health", &[], None);
    assert_eq!(health.status, 200, "{}", health.body);
    let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pairs"]["stalled"], 2);
    assert_eq!(body["failed_events"], 1);
    let strict = http(server.address, "GET", "/health?stalled=fail", &[], None);
    assert_eq!(strict.status, 503, "{}", strict.body);
    // A Host the server does not answer for (DNS rebinding) is refused; an allowed one is not.
    let rebound = http(
        server.address,
        "GET",
        "/metrics",
        &[("Host", "evil.example")],
        None,
    );
    assert_eq!(rebound.status, 421, "{}", rebound.body);
    let named = Server::start(
        &support::url(&scenario.database),
        &["--allow-host", "status.internal"],
    );
    let port = named.address.port().to_string();
    let host = format!("status.internal:{port}");
    let answered = http(named.address, "GET", "/health", &[("Host", &host)], None);
    assert_eq!(answered.status, 200, "{}", answered.body);
    let localhost = format!("localhost:{port}");
    let answered = http(
        named.address,
        "GET",
        "/health",
        &[("Host", &localhost)],
        None,
    );
    assert_eq!(answered.status, 200, "{}", answered.body);
    scenario
        .runtime
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_a_session_and_its_csrf_token() {
    let scenario = Scenario::start().await;
    let url = support::url(&scenario.database);
    let retry = [
        ("projection", "balances"),
        ("instance", "tenant-a"),
        ("aggregate_type", "user"),
        ("aggregate_id", "u-1"),
        ("sequence", "2"),
        ("return_to", "/failed"),
    ];

    // Started without a token: read-only, every action refused, no sign-in.
    let read_only = Server::start(&url, &[]);
    let refused = http(
        read_only.address,
        "POST",
        "/actions/retry",
        &[],
        Some(&retry),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("without --token"), "{}", refused.body);
    let page = http(read_only.address, "GET", "/failed", &[], None);
    assert!(page.body.contains("boom: the ledger refuses this event"));
    assert!(
        !page.body.contains("/actions/retry"),
        "read-only pages offer no actions"
    );

    let server = Server::start(&url, &["--token", TOKEN]);
    // No session.
    let mut form = retry.to_vec();
    form.push(("csrf", "guess"));
    let refused = http(server.address, "POST", "/actions/retry", &[], Some(&form));
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("sign in"), "{}", refused.body);
    // A wrong token does not sign in.
    let wrong = http(
        server.address,
        "POST",
        "/signin",
        &[],
        Some(&[("token", "not-the-token-at-all")]),
    );
    assert_eq!(wrong.status, 403);
    assert!(wrong.header("set-cookie").is_none());
    // A session, but a forged CSRF token, or a request from another site.
    let (cookie, csrf) = sign_in(server.address);
    let refused = http(
        server.address,
        "POST",
        "/actions/retry",
        &[("Cookie", &cookie)],
        Some(&form),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("CSRF"), "{}", refused.body);
    let mut form = retry.to_vec();
    form.push(("csrf", &csrf));
    let refused = http(
        server.address,
        "POST",
        "/actions/retry",
        &[
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        Some(&form),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("another site"), "{}", refused.body);
    // Bad input is a 400, and queues nothing.
    let mut bad = form.clone();
    bad.retain(|(k, _)| *k != "sequence");
    let answer = http(
        server.address,
        "POST",
        "/actions/retry",
        &[("Cookie", &cookie)],
        Some(&bad),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        pending_projection_requests(&scenario.store)
            .await
            .unwrap()
            .is_empty(),
        "refused and bad requests queue nothing"
    );
    let backend = PgProjections::new(scenario.database.pool(1));

    // All of it right: the retry is queued, and the runtime applies the event now that it passes.
    scenario.failing.store(false, Ordering::SeqCst);
    let done = http(
        server.address,
        "POST",
        "/actions/retry",
        &[("Cookie", &cookie)],
        Some(&form),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.header("location")
            .unwrap()
            .starts_with("/failed?notice=retry")
    );
    let mut remaining = 1;
    for _ in 0..100 {
        remaining = backend.failed_events(None).await.unwrap().len();
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "the runtime retried the event and it applied");
    scenario
        .runtime
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}

#[test]
fn a_short_token_is_refused_as_bad_usage() {
    let output = support::strata(
        "postgres://127.0.0.1:1/none",
        &["serve", "--token", "short"],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        support::stderr(&output)
    );
    assert!(support::stderr(&output).contains("at least 16"));
}
