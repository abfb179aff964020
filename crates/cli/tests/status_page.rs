//! The status page in a real browser: headless Chromium, driven through ChromeDriver, loads the
//! page of a database with a projection running, one stalled and a failed event, and checks what
//! a person would read there; signs in with the token and retries the failed event; and saves
//! screenshots to `target/test-artifacts/` for a person to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask test` installs them).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod serve_support;
mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serve_support::{Scenario, Server, TOKEN};
use strata_store::EventStore;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver \
             (`cargo xtask test` does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Driver { child, port }
    }

    async fn client(&self) -> Client {
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1440,1100"]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{}", self.port);
        // ChromeDriver takes a moment to listen.
        for attempt in 0.. {
            // Plain HTTP: ChromeDriver is on loopback.
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => return client,
                Err(err) if attempt < 50 => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("cannot reach chromedriver: {err}"),
            }
        }
        unreachable!()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the element `css` finds, once the page shows it (a form's answer may still load).
async fn text(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{css}: {err}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_the_page_and_retries_a_failed_event_in_chromium() {
    let scenario = Scenario::start().await;
    let server = Server::start(&support::url(&scenario.database), &["--token", TOKEN]);
    let base = format!("http://{}", server.address);
    let driver = Driver::start();
    let client = driver.client().await;

    // The overview: one row per projection, worst first, with its figures. Pages are loaded
    // with refreshing off, so no reload replaces an element between finding and reading it.
    client.goto(&format!("{base}/?refresh=off")).await.unwrap();
    assert_eq!(text(&client, "#card-stalled").await, "2");
    assert_eq!(text(&client, "#card-failed").await, "1");
    let stuck = text(&client, "tr[data-projection=\"stuck\"]").await;
    assert!(stuck.contains("stalled"), "{stuck}");
    assert_eq!(
        text(&client, "tr[data-projection=\"stuck\"] td.events-behind").await,
        "5"
    );
    let first = text(&client, "#projections tbody tr:first-child").await;
    assert!(
        first.starts_with("stuck"),
        "the stalled projection comes first: {first}"
    );
    assert_eq!(
        text(&client, "tr[data-projection=\"balances\"] td.failed").await,
        "1"
    );
    assert_eq!(
        text(&client, "tr[data-projection=\"balances\"] td.events-behind").await,
        "0"
    );
    // A few seconds of pushes, sampled every second: the charts draw them.
    for round in 0..12 {
        let command = strata_event::Command::builder(
            "tenant-c",
            "user",
            format!("u-{round}"),
            "user.changed",
        )
        .creator("test")
        .owner("org-1")
        .build()
        .unwrap();
        scenario.store.push(vec![command]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    client.goto(&format!("{base}/")).await.unwrap();
    let charts = client
        .find_all(Locator::Css("svg.chart polyline"))
        .await
        .unwrap();
    assert!(charts.len() >= 3, "every chart draws a line");
    let overview = client.screenshot().await.unwrap();
    std::fs::write(artifacts().join("status-page.png"), overview).unwrap();

    // Drill down: the stalled projection's instances.
    client
        .find(Locator::LinkText("stuck"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&format!("{base}/projections/stuck").parse().unwrap())
        .await
        .unwrap();
    client
        .goto(&format!("{base}/projections/stuck?refresh=off"))
        .await
        .unwrap();
    let rows = client
        .find_all(Locator::Css("#instances tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "tenant-a, tenant-b and tenant-c");
    assert!(
        text(&client, "tr[data-instance=\"tenant-a\"]")
            .await
            .contains("stalled")
    );
    assert_eq!(
        text(&client, "tr[data-instance=\"tenant-a\"] td.events-behind").await,
        "3"
    );
    assert!(
        text(&client, "tr[data-instance=\"tenant-c\"]")
            .await
            .contains("stalled")
    );
    let detail = client.screenshot().await.unwrap();
    std::fs::write(artifacts().join("status-page-projection.png"), detail).unwrap();

    // The failed event with its error; read-only until signed in.
    client.goto(&format!("{base}/failed")).await.unwrap();
    let failed = text(&client, "tr.failed-event").await;
    assert!(
        failed.contains("boom: the ledger refuses this event"),
        "{failed}"
    );
    assert!(
        client
            .find_all(Locator::Css("button.retry"))
            .await
            .unwrap()
            .is_empty()
    );

    // A wrong token is refused; the right one signs in.
    client.goto(&format!("{base}/signin")).await.unwrap();
    let form = client
        .form(Locator::Css("form[action=\"/signin\"]"))
        .await
        .unwrap();
    form.set_by_name("token", "certainly-not-the-token")
        .await
        .unwrap();
    form.submit().await.unwrap();
    assert!(text(&client, ".alert").await.contains("not the token"));
    let form = client
        .form(Locator::Css("form[action=\"/signin\"]"))
        .await
        .unwrap();
    form.set_by_name("token", TOKEN).await.unwrap();
    form.submit().await.unwrap();
    assert!(text(&client, "#notice").await.contains("signed in"));

    // Retry, now that the projection accepts the event: a runtime applies it.
    scenario.failing.store(false, Ordering::SeqCst);
    client
        .goto(&format!("{base}/failed?refresh=off"))
        .await
        .unwrap();
    let failed_page = client.screenshot().await.unwrap();
    std::fs::write(artifacts().join("status-page-failed.png"), failed_page).unwrap();
    client
        .find(Locator::Css("button.retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text(&client, "#notice")
            .await
            .contains("retry of balances in tenant-a queued")
    );
    let mut gone = false;
    for _ in 0..60 {
        client
            .goto(&format!("{base}/failed?refresh=off"))
            .await
            .unwrap();
        if client.source().await.unwrap().contains("No failed events.") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(gone, "the retried event left the failed events");
    client.close().await.unwrap();
    scenario
        .runtime
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
}
