//! `strata serve`: a status page, Prometheus `/metrics` and `/health` for one Strata database.
//!
//! A background task samples the database every `--sample-every` seconds (`sample.rs`) and keeps
//! the last minutes (`history.rs`); every request renders from the latest sample, so however
//! often the page is viewed or scraped the database sees one sample per interval. The page
//! (`page/`, charts in `chart.rs`) is read-only unless the server was started with a token:
//! then an operator who signs in (`auth.rs`) may retry or skip failed events and rebuild a
//! projection in an instance (`actions.rs`), requests a running runtime carries out.
//! `/metrics` is `exposition.rs`.
//!
//! It binds 127.0.0.1 unless `--listen` names another address.

mod actions;
mod auth;
mod chart;
mod exposition;
mod history;
mod page;
mod sample;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use strata_postgres::PgStore;

use self::auth::Auth;
use self::history::History;
use self::page::Frame;
use self::sample::Sample;
use crate::Database;
use crate::connect::connect;

/// `strata serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; keep it on loopback unless a proxy in front adds TLS
    #[arg(long, default_value = "127.0.0.1:9650")]
    listen: SocketAddr,

    /// Enables retry, skip and rebuild for an operator who signs in with this token (at least
    /// 16 characters); without it the page is read-only
    #[arg(long, env = "STRATA_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Seconds between samples of the database (each is a handful of statements)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    sample_every: u64,

    /// Minutes of history the charts show
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=1440))]
    history_minutes: u64,

    /// Adds an `instance` label to /metrics: one series per projection and instance
    #[arg(long)]
    instance_labels: bool,

    /// Also answer requests for this host name (`name` or `name:port`, repeatable), e.g. the
    /// name a proxy in front forwards; by default only the listening address and localhost
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,

    #[command(flatten)]
    database: Database,
}

/// What every request reads.
#[derive(Debug)]
pub(super) struct AppState {
    store: PgStore,
    latest: RwLock<Option<Arc<Sample>>>,
    /// The latest sampling error; cleared by the next success.
    sample_error: RwLock<Option<String>>,
    /// Replaced whole after each sample, so a page renders from its own copy without holding a
    /// lock while the sampler records.
    history: RwLock<Arc<History>>,
    /// `/metrics` of the latest sample, rendered once for every scrape of it.
    exposition: Mutex<Option<RenderedMetrics>>,
    auth: Auth,
    sample_every: Duration,
    window_seconds: f64,
    instance_labels: bool,
    /// `Host` headers answered; any other is refused (`check_host`).
    allowed_hosts: Vec<String>,
}

impl AppState {
    fn latest(&self) -> Option<Arc<Sample>> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn history(&self) -> Arc<History> {
        Arc::clone(&self.history.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The text of `/metrics`: rendered once per sample (and per change of `up`).
    fn exposition(&self) -> Arc<String> {
        let sample = self.latest();
        let up = self.up();
        let key = sample.as_ref().map(|sample| sample.taken_at);
        let mut cached = self.exposition.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(key), Some((at, was_up, text))) = (key, cached.as_ref())
            && *at == key
            && *was_up == up
        {
            return Arc::clone(text);
        }
        let text = Arc::new(exposition::render(
            sample.as_deref(),
            up,
            self.instance_labels,
        ));
        if let Some(key) = key {
            *cached = Some((key, up, Arc::clone(&text)));
        }
        text
    }

    fn sample_error(&self) -> Option<String> {
        self.sample_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Samples the database once and keeps the result.
    async fn sample(&self) {
        let previous = self.latest();
        match sample::take(&self.store, previous.as_deref()).await {
            Ok(sample) => {
                let mut history = History::clone(&self.history());
                history.record(&sample);
                *self.history.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(history);
                *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(sample));
                *self.sample_error.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(err) => {
                eprintln!("warning: sampling the database failed: {err:#}");
                *self.sample_error.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{err:#}"));
            }
        }
    }

    /// Whether the latest sample succeeded and is recent.
    fn up(&self) -> bool {
        self.sample_error().is_none()
            && self.latest().is_some_and(|sample| {
                let age = (chrono::Utc::now() - sample.taken_at)
                    .to_std()
                    .unwrap_or_default();
                age <= self.sample_every * 3 + Duration::from_secs(10)
            })
    }
}

type Shared = Arc<AppState>;

/// `/metrics` as rendered for the sample taken at `.0`, with `strata_up` at `.1`.
type RenderedMetrics = (chrono::DateTime<chrono::Utc>, bool, Arc<String>);

/// Runs the server until Ctrl-C.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(token) = &args.token
        && token.chars().count() < auth::MIN_TOKEN_LEN
    {
        return Err(crate::usage(format!(
            "--token must be at least {} characters long",
            auth::MIN_TOKEN_LEN
        )));
    }
    let store = connect(&args.database.database_url).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let sample_every = Duration::from_secs(args.sample_every);
    let window = Duration::from_secs(args.history_minutes * 60);
    let keep = (window.as_secs() / args.sample_every).max(2) as usize + 1;
    let state = Arc::new(AppState {
        store,
        latest: RwLock::new(None),
        sample_error: RwLock::new(None),
        history: RwLock::new(Arc::new(History::new(keep))),
        exposition: Mutex::new(None),
        auth: Auth::new(args.token.as_deref()),
        sample_every,
        window_seconds: window.as_secs_f64(),
        instance_labels: args.instance_labels,
        allowed_hosts: allowed_hosts(address, &args.allow_hosts),
    });
    // The first sample before the first request, so the page is never empty once listening.
    state.sample().await;
    let sampler = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sample_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                state.sample().await;
            }
        })
    };
    if !address.ip().is_loopback() {
        eprintln!(
            "warning: listening on {address}, reachable from other machines; put TLS in front of it"
        );
    }
    println!("listening on http://{address}");
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    sampler.abort();
    served.context("serving HTTP")
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/projections/{name}", get(projection))
        .route("/failed", get(failed))
        .route("/runtimes", get(runtimes))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/signin", get(sign_in_page).post(actions::sign_in))
        .route("/signout", post(actions::sign_out))
        .route("/actions/{action}", post(actions::act))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            check_host,
        ))
        .with_state(state)
}

/// The `Host` values answered: the bound address, `localhost` and the loopback addresses at its
/// port, and each `--allow-host` (with the port added when it names none).
fn allowed_hosts(address: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = address.port();
    let mut hosts = vec![
        address.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    for host in extra {
        hosts.push(host.clone());
        if !host.contains(':') || host.ends_with(']') {
            hosts.push(format!("{host}:{port}"));
        }
    }
    hosts
}

/// Refuses a request whose `Host` header names no host this server answers for. A page on
/// another site that resolves its own name to 127.0.0.1 (DNS rebinding) could otherwise read the
/// status page and /metrics from a browser on this machine.
async fn check_host(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok());
    match host {
        Some(host)
            if state
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host)) =>
        {
            next.run(request).await
        }
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            "refused: this server does not answer for that Host; start it with --allow-host NAME \
             to serve under that name",
        )
            .into_response(),
    }
}

/// Seconds between refreshes a page asks for: off with `refresh=off`, else the sampling interval.
fn refresh_of(state: &AppState, refresh: Option<&str>) -> u64 {
    match refresh {
        Some("off") => 0,
        _ => state.sample_every.as_secs().max(2),
    }
}

/// Renders a page with the frame every page shares, timing the render for `Server-Timing`.
fn render_page(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    query: &page::PageQuery,
    body: impl FnOnce(&Frame<'_>) -> Option<String>,
) -> Response {
    let started = Instant::now();
    let sample = state.latest();
    let sample_error = state.sample_error();
    let csrf = state.auth.csrf_of(headers);
    let here = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let history = state.history();
    let frame = Frame {
        sample: sample.as_deref(),
        history: &history,
        sample_error: sample_error.as_deref(),
        csrf: csrf.as_deref(),
        actions_enabled: state.auth.actions_enabled(),
        refresh: refresh_of(state, query.refresh.as_deref()),
        window_seconds: chart_window(&history, state.window_seconds),
        notice: query.notice.as_deref(),
        here: &here,
    };
    let Some(html) = body(&frame) else {
        return (
            StatusCode::NOT_FOUND,
            "no such projection or consumer is registered",
        )
            .into_response();
    };
    let mut response = Html(html).into_response();
    let timing = format!(
        "render;dur={:.1}, sample;dur={:.1}",
        started.elapsed().as_secs_f64() * 1000.0,
        sample.map_or(0.0, |s| s.took.as_secs_f64() * 1000.0)
    );
    secure_headers(response.headers_mut());
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    response
}

/// The span the charts show: the history kept, or since the first sample while there is less
/// (at least a minute), so that a server started a moment ago draws readable lines.
fn chart_window(history: &History, kept_seconds: f64) -> f64 {
    let since_first = history.points().next().map_or(0.0, |first| {
        (chrono::Utc::now() - first.at).num_milliseconds() as f64 / 1000.0
    });
    since_first.clamp(60.0, kept_seconds.max(60.0))
}

/// Headers every page carries: no script or outside resource may run, no framing, no caching.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own forms,
        // and the origin check refuses them.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn overview(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<page::PageQuery>,
) -> Response {
    render_page(&state, &headers, &uri, &query, |frame| {
        Some(page::overview(frame, &query))
    })
}

async fn projection(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
    Query(query): Query<page::PageQuery>,
) -> Response {
    render_page(&state, &headers, &uri, &query, |frame| {
        page::projection(frame, &name, &query)
    })
}

async fn failed(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<page::PageQuery>,
) -> Response {
    render_page(&state, &headers, &uri, &query, |frame| {
        Some(page::failed(frame, &query))
    })
}

async fn runtimes(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    render_page(
        &state,
        &headers,
        &uri,
        &page::PageQuery::default(),
        |frame| Some(page::runtimes(frame)),
    )
}

async fn sign_in_page(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    render_page(&state, &headers, &uri, &page::PageQuery::still(), |frame| {
        Some(page::sign_in(frame, false))
    })
}

async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.exposition().as_str().to_owned();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `/health?stalled=fail`: also unhealthy while any pair is stalled.
#[derive(Debug, serde::Deserialize)]
struct HealthQuery {
    stalled: Option<String>,
}

/// `/health`: 200 while the database answers (and, with `?stalled=fail`, no pair is stalled),
/// 503 otherwise, with a JSON body that says which.
async fn health(State(state): State<Shared>, Query(query): Query<HealthQuery>) -> Response {
    let up = state.up();
    let sample = state.latest();
    let (healthy, catching_up, stalled) =
        sample.as_deref().map_or((0, 0, 0), Sample::health_counts);
    let fail_on_stalled = query.stalled.as_deref() == Some("fail");
    let ok = up && !(fail_on_stalled && stalled > 0);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": if up { "up" } else { "down" },
        "error": state.sample_error(),
        "sampled_at": sample.as_ref().map(|s| s.taken_at.to_rfc3339()),
        "pairs": { "healthy": healthy, "catching_up": catching_up, "stalled": stalled },
        "failed_events": sample.as_ref().map_or(0, |s| s.failed_total),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}
