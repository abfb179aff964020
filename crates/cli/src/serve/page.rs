//! The status page, rendered on the server from the latest sample: an overview with one row per
//! projection (however many instances it runs in), a page per projection with its instances, and
//! the failed events, each with charts of the last minutes. Plain HTML and inline SVG; the page
//! refreshes itself with a `<meta>` tag, so it needs no script.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use strata_projection::{FailedEvent, Health, VersionState};

use super::chart::{Series, format_value, line_chart, sparkline};
use super::history::History;
use super::sample::{Kind, PairRow, ProjectionSummary, Sample};

/// Rows of the overview per page.
const PROJECTIONS_PER_PAGE: usize = 100;
/// Instances of one projection per page.
const INSTANCES_PER_PAGE: usize = 200;
/// Failed events per page.
const FAILED_PER_PAGE: usize = 100;

/// What every page needs besides its own content.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    pub(super) sample: Option<&'a Sample>,
    pub(super) history: &'a History,
    /// The last sampling error, when the latest attempt failed.
    pub(super) sample_error: Option<&'a str>,
    /// The session's CSRF token when an operator signed in; `None` shows the page read-only.
    pub(super) csrf: Option<&'a str>,
    /// Whether `strata serve` was started with a token (actions exist at all).
    pub(super) actions_enabled: bool,
    /// Seconds between refreshes; 0 turns refreshing off.
    pub(super) refresh: u64,
    /// How much history the charts span.
    pub(super) window_seconds: f64,
    /// A message about the last action, shown once.
    pub(super) notice: Option<&'a str>,
    /// This request's path and query, where actions return to.
    pub(super) here: &'a str,
}

/// `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `text` for a URL's path segment or query value.
pub(super) fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            other => {
                let _ = write!(encoded, "%{other:02X}");
            }
        }
    }
    encoded
}

const STYLE: &str = "
:root { --ok:#1f8a4c; --warn:#b7791f; --bad:#c53030; --ink:#1a202c; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color:var(--ink); background:var(--bg); }
header { background:#1e293b; color:#fff; padding:10px 24px; display:flex; gap:24px; align-items:center; }
header h1 { font-size:18px; margin:0; letter-spacing:.5px; }
header nav a { color:#cbd5e1; margin-right:16px; text-decoration:none; }
header nav a:hover { color:#fff; }
header .who { margin-left:auto; color:#cbd5e1; font-size:13px; display:flex; gap:12px; align-items:center; }
header .who form { margin:0; }
main { padding:18px 24px 40px; max-width:1400px; }
h2 { font-size:17px; margin:22px 0 10px; }
.meta { color:var(--muted); font-size:12px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:8px 0 16px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:130px; }
.card .n { font-size:22px; font-weight:600; }
.card .l { color:var(--muted); font-size:12px; }
.charts { display:flex; flex-wrap:wrap; gap:12px; }
.chart { background:#fff; border:1px solid var(--line); border-radius:8px; width:560px; max-width:100%; height:auto; }
.chart .grid { stroke:#eef0f3; }
.chart .axis { fill:var(--muted); font-size:10px; }
.chart .legend { fill:var(--ink); font-size:11px; }
.chart .chart-title { fill:var(--ink); font-size:12px; font-weight:600; }
.spark { width:120px; height:22px; vertical-align:middle; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); border-radius:8px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:middle; }
th { background:#f1f5f9; font-weight:600; font-size:12px; color:#334155; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
tr:hover td { background:#f8fafc; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; }
.healthy { background:var(--ok); } .catching-up { background:var(--warn); } .stalled { background:var(--bad); }
.counts span { margin-right:6px; }
.error { color:var(--bad); font-family: ui-monospace, monospace; font-size:12px; white-space:pre-wrap; max-width:520px; }
.notice { background:#ecfdf5; border:1px solid #a7f3d0; padding:8px 12px; border-radius:6px; margin:10px 0; }
.alert { background:#fef2f2; border:1px solid #fecaca; padding:8px 12px; border-radius:6px; margin:10px 0; }
form.filter { display:flex; gap:8px; align-items:center; margin:6px 0 12px; flex-wrap:wrap; }
input, select, button { font:inherit; padding:4px 8px; border:1px solid #cbd5e1; border-radius:5px; background:#fff; }
button { cursor:pointer; background:#f1f5f9; }
button.danger { border-color:#fca5a5; color:var(--bad); }
form.inline { display:inline; margin:0; }
.pager { margin:10px 0; display:flex; gap:12px; }
a { color:#2b59c3; }
";

/// The page around `content`.
fn layout(frame: &Frame<'_>, title: &str, content: &str) -> String {
    let mut html = String::with_capacity(content.len() + 8192);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    if frame.refresh > 0 {
        // To the same page without the last action's notice, which was for one view.
        let _ = write!(
            html,
            "<meta http-equiv=\"refresh\" content=\"{}; url={}\">",
            frame.refresh,
            escape(&without_notice(frame.here))
        );
    }
    let _ = write!(
        html,
        "<title>{} · Strata</title><style>{STYLE}</style></head><body><header><h1>Strata</h1>\
         <nav><a href=\"/\">Projections</a><a href=\"/failed\">Failed events</a>\
         <a href=\"/runtimes\">Runtimes</a><a href=\"/metrics\">Metrics</a><a href=\"/health\">Health</a></nav>\
         <div class=\"who\">",
        escape(title)
    );
    match (frame.csrf, frame.actions_enabled) {
        (Some(csrf), _) => {
            let _ = write!(
                html,
                "<span>operator signed in</span><form method=\"post\" action=\"/signout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
                escape(csrf)
            );
        }
        (None, true) => {
            html.push_str("<span>read-only</span><a href=\"/signin\" style=\"color:#fff\">Sign in for actions</a>");
        }
        (None, false) => html.push_str("<span>read-only (started without --token)</span>"),
    }
    html.push_str("</div></header><main>");
    if let Some(notice) = frame.notice {
        let _ = write!(
            html,
            "<div class=\"notice\" id=\"notice\">{}</div>",
            escape(notice)
        );
    }
    if let Some(error) = frame.sample_error {
        let _ = write!(
            html,
            "<div class=\"alert\">The latest sample of the database failed: {}</div>",
            escape(error)
        );
    }
    match frame.sample {
        Some(sample) => {
            let _ = write!(
                html,
                "<div class=\"meta\">Sampled {} (took {} ms){}. <a href=\"{}\">{}</a></div>",
                sample.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
                sample.took.as_millis(),
                if frame.refresh > 0 {
                    format!("; this page refreshes every {} s", frame.refresh)
                } else {
                    String::new()
                },
                escape(&toggle_refresh(frame.here, frame.refresh)),
                if frame.refresh > 0 {
                    "Stop refreshing"
                } else {
                    "Refresh automatically"
                },
            );
        }
        None => html.push_str("<div class=\"meta\">No sample of the database yet.</div>"),
    }
    html.push_str(content);
    html.push_str("</main></body></html>");
    html
}

/// `here` without its `notice=` parameter.
fn without_notice(here: &str) -> String {
    let (path, query) = here.split_once('?').unwrap_or((here, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|part| !part.is_empty() && !part.starts_with("notice="))
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// `here` with refreshing switched.
fn toggle_refresh(here: &str, refresh: u64) -> String {
    let (path, query) = here.split_once('?').unwrap_or((here, ""));
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.starts_with("refresh=") && !part.starts_with("notice=")
        })
        .collect();
    let switch = if refresh > 0 {
        "refresh=off"
    } else {
        "refresh=on"
    };
    parts.push(switch);
    format!("{path}?{}", parts.join("&"))
}

fn badge(health: Health) -> String {
    let class = match health {
        Health::Healthy => "healthy",
        Health::CatchingUp => "catching-up",
        Health::Stalled => "stalled",
    };
    format!("<span class=\"badge {class}\">{}</span>", health.as_str())
}

fn seconds(value: f64) -> String {
    if value < 60.0 {
        format!("{value:.1} s")
    } else if value < 3600.0 {
        format!("{:.1} min", value / 60.0)
    } else {
        format!("{:.1} h", value / 3600.0)
    }
}

fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        Some(at) => format!(
            "{} ago",
            seconds((now - at).num_milliseconds().max(0) as f64 / 1000.0)
        ),
        None => "never".to_owned(),
    }
}

fn kind_cell(summary: &ProjectionSummary) -> String {
    let kind = match &summary.kind {
        Kind::Projection if summary.has_side_effects => "projection (side effects)".to_owned(),
        Kind::Projection => "projection".to_owned(),
        Kind::Consumer(consumer) => format!("consumer {}", escape(consumer)),
    };
    match summary.version {
        Some((version, state)) => format!("{kind} v{version} ({})", state_name(state)),
        None => kind,
    }
}

fn state_name(state: VersionState) -> &'static str {
    state.as_str()
}

/// The filters and paging of a page's query string; each page reads the ones it has.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct PageQuery {
    /// Part of a projection's name (the overview, the failed events).
    #[serde(default)]
    pub(super) q: String,
    /// Part of an instance id: only those instances are counted or listed.
    #[serde(default)]
    pub(super) instance: String,
    /// `healthy`, `catching-up`, `stalled` or empty for all (the overview).
    #[serde(default)]
    pub(super) health: String,
    #[serde(default)]
    pub(super) page: usize,
    /// `off` stops the page refreshing itself.
    pub(super) refresh: Option<String>,
    /// What the last action did, shown once.
    pub(super) notice: Option<String>,
}

impl PageQuery {
    /// No filters, and no refreshing: a page with a form to fill in.
    pub(super) fn still() -> PageQuery {
        PageQuery {
            refresh: Some("off".to_owned()),
            ..PageQuery::default()
        }
    }
}

fn health_selected(filter: &str, health: Health) -> bool {
    match filter {
        "healthy" => health == Health::Healthy,
        "catching-up" => health == Health::CatchingUp,
        "stalled" => health == Health::Stalled,
        _ => true,
    }
}

/// A projection's summary over the instances `instance` matches (all when empty).
fn summary_over(
    sample: &Sample,
    summary: &ProjectionSummary,
    instance: &str,
) -> Option<ProjectionSummary> {
    if instance.is_empty() {
        return Some(summary.clone());
    }
    let mut narrowed = summary.emptied();
    for row in sample.rows_of(summary) {
        if row.instance_id.as_str().contains(instance) {
            narrowed.add(row);
        }
    }
    (narrowed.healthy + narrowed.catching_up + narrowed.stalled > 0).then_some(narrowed)
}

/// The overview: cards, charts, and one row per projection, worst first.
pub(super) fn overview(frame: &Frame<'_>, query: &PageQuery) -> String {
    let Some(sample) = frame.sample else {
        return layout(frame, "Projections", "<p>Waiting for the first sample…</p>");
    };
    let now = sample.taken_at;
    let mut html = String::new();
    let (healthy, catching_up, stalled) = sample.health_counts();
    let consumers: std::collections::BTreeSet<&str> = sample
        .projections
        .iter()
        .filter_map(|p| match &p.kind {
            Kind::Consumer(name) => Some(name.as_str()),
            Kind::Projection => None,
        })
        .collect();
    let push_rate = frame
        .history
        .points()
        .last()
        .and_then(|point| point.push_rate)
        .map_or_else(|| "–".to_owned(), |rate| format_value(rate, ""));
    let _ = write!(
        html,
        "<div class=\"cards\">\
         <div class=\"card\"><div class=\"n\" id=\"card-projections\">{}</div><div class=\"l\">projections</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">consumers</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">(projection, instance) pairs</div></div>\
         <div class=\"card\"><div class=\"n\" style=\"color:var(--ok)\">{healthy}</div><div class=\"l\">healthy</div></div>\
         <div class=\"card\"><div class=\"n\" style=\"color:var(--warn)\">{catching_up}</div><div class=\"l\">catching up</div></div>\
         <div class=\"card\"><div class=\"n\" style=\"color:var(--bad)\" id=\"card-stalled\">{stalled}</div><div class=\"l\">stalled</div></div>\
         <div class=\"card\"><div class=\"n\" id=\"card-failed\">{}</div><div class=\"l\">failed events</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">runtimes alive</div></div>\
         <div class=\"card\"><div class=\"n\" id=\"card-push-rate\">{push_rate}</div><div class=\"l\">events stored / s</div></div>\
         </div>",
        sample
            .projections
            .iter()
            .filter(|p| p.kind == Kind::Projection)
            .count(),
        consumers.len(),
        sample.pairs.len(),
        sample.failed_total,
        sample.runtimes.len(),
    );
    let rate = frame.history.series(|point| point.push_rate);
    let behind = frame
        .history
        .series(|point| Some(point.events_behind as f64));
    let stalled_series = frame.history.series(|point| Some(point.stalled as f64));
    let catching_series = frame.history.series(|point| Some(point.catching_up as f64));
    html.push_str("<div class=\"charts\">");
    html.push_str(&line_chart(
        "Events stored per second",
        "",
        &[Series {
            label: "stored/s",
            points: &rate,
            color: "#2b59c3",
        }],
        now,
        frame.window_seconds,
    ));
    html.push_str(&line_chart(
        "Events behind, all projections",
        "",
        &[Series {
            label: "behind",
            points: &behind,
            color: "#b7791f",
        }],
        now,
        frame.window_seconds,
    ));
    html.push_str(&line_chart(
        "Pairs not healthy",
        "",
        &[
            Series {
                label: "stalled",
                points: &stalled_series,
                color: "#c53030",
            },
            Series {
                label: "catching up",
                points: &catching_series,
                color: "#b7791f",
            },
        ],
        now,
        frame.window_seconds,
    ));
    html.push_str("</div>");

    let _ = write!(
        html,
        "<h2>Projections and consumers</h2><form class=\"filter\" method=\"get\" action=\"/\">\
         <input name=\"q\" placeholder=\"projection name contains\" value=\"{}\">\
         <input name=\"instance\" placeholder=\"instance contains\" value=\"{}\">\
         <select name=\"health\"><option value=\"\">any health</option>{}</select>\
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>",
        escape(&query.q),
        escape(&query.instance),
        ["healthy", "catching-up", "stalled"]
            .iter()
            .map(|h| format!(
                "<option value=\"{h}\"{}>{}</option>",
                if query.health == *h { " selected" } else { "" },
                h.replace('-', " ")
            ))
            .collect::<String>()
    );
    let mut rows: Vec<ProjectionSummary> = sample
        .projections
        .iter()
        .filter(|summary| summary.name.contains(query.q.as_str()))
        .filter_map(|summary| summary_over(sample, summary, &query.instance))
        .filter(|summary| health_selected(&query.health, summary.health()))
        .collect();
    rows.sort_by(|a, b| {
        b.health()
            .cmp(&a.health())
            .then(b.events_behind.cmp(&a.events_behind))
            .then(a.name.cmp(&b.name))
    });
    let total = rows.len();
    let page = query.page;
    let shown = rows
        .iter()
        .skip(page * PROJECTIONS_PER_PAGE)
        .take(PROJECTIONS_PER_PAGE);
    html.push_str(
        "<table id=\"projections\"><thead><tr><th>Projection</th><th>Kind</th><th>Health</th>\
         <th class=\"num\">Instances</th><th>Healthy / catching up / stalled</th>\
         <th class=\"num\">Events behind</th><th class=\"num\">Oldest waiting</th>\
         <th class=\"num\">Failed</th><th class=\"num\">Parked</th><th class=\"num\">Runtimes</th>\
         <th>Lag, last minutes</th></tr></thead><tbody>",
    );
    for summary in shown {
        let (events, _) = frame.history.lag_of(&summary.name);
        let _ = write!(
            html,
            "<tr data-projection=\"{name}\"><td><a href=\"/projections/{link}\">{name}</a></td><td>{kind}</td>\
             <td>{badge}</td><td class=\"num\">{instances}</td>\
             <td class=\"counts\"><span>{h}</span>/<span>{c}</span>/<span>{s}</span></td>\
             <td class=\"num events-behind\">{behind}</td><td class=\"num\">{oldest}</td>\
             <td class=\"num failed\">{failed}</td><td class=\"num\">{parked}</td>\
             <td class=\"num\">{runtimes}</td><td>{spark}</td></tr>",
            name = escape(&summary.name),
            link = url_encode(&summary.name),
            kind = kind_cell(summary),
            badge = badge(summary.health()),
            instances = summary.healthy + summary.catching_up + summary.stalled,
            h = summary.healthy,
            c = summary.catching_up,
            s = summary.stalled,
            behind = summary.events_behind,
            oldest = seconds(summary.seconds_behind),
            failed = summary.failed,
            parked = summary.parked,
            runtimes = summary.runtimes_alive,
            spark = sparkline(&events, now, frame.window_seconds),
        );
    }
    html.push_str("</tbody></table>");
    if total == 0 {
        html.push_str(
            "<p>No projection matches. Runtimes register their projections when they start.</p>",
        );
    }
    pager(&mut html, frame.here, page, total, PROJECTIONS_PER_PAGE);
    layout(frame, "Projections", &html)
}

/// Links to the previous and next page of a listing.
fn pager(html: &mut String, here: &str, page: usize, total: usize, per_page: usize) {
    let pages = total.div_ceil(per_page).max(1);
    if pages <= 1 {
        return;
    }
    let (path, query) = here.split_once('?').unwrap_or((here, ""));
    let others: Vec<&str> = query
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.starts_with("page=") && !part.starts_with("notice=")
        })
        .collect();
    let link = |page: usize| {
        let mut parts = others.clone();
        let page = format!("page={page}");
        parts.push(&page);
        format!("{path}?{}", parts.join("&"))
    };
    html.push_str("<div class=\"pager\">");
    if page > 0 {
        let _ = write!(
            html,
            "<a href=\"{}\">← previous</a>",
            escape(&link(page - 1))
        );
    }
    let _ = write!(
        html,
        "<span>page {} of {pages} ({total} rows)</span>",
        page + 1
    );
    if page + 1 < pages {
        let _ = write!(html, "<a href=\"{}\">next →</a>", escape(&link(page + 1)));
    }
    html.push_str("</div>");
}

/// One projection: its charts, its instances worst first, its failed events.
pub(super) fn projection(frame: &Frame<'_>, name: &str, query: &PageQuery) -> Option<String> {
    let sample = frame.sample?;
    let summary = sample.projection(name)?;
    let now = sample.taken_at;
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>{}</h2><div class=\"cards\">\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">{}</div></div>\
         <div class=\"card\"><div class=\"n\" id=\"detail-behind\">{}</div><div class=\"l\">events behind</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">oldest waiting</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">failed events</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">runtimes alive</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">stalled after</div></div></div>",
        escape(&summary.name),
        badge(summary.health()),
        kind_cell(summary),
        summary.events_behind,
        seconds(summary.seconds_behind),
        summary.failed,
        summary.runtimes_alive,
        seconds(summary.stall_after.as_secs_f64()),
    );
    let (events, lag_seconds) = frame.history.lag_of(&summary.name);
    html.push_str("<div class=\"charts\">");
    html.push_str(&line_chart(
        "Events behind",
        "",
        &[Series {
            label: "behind",
            points: &events,
            color: "#b7791f",
        }],
        now,
        frame.window_seconds,
    ));
    html.push_str(&line_chart(
        "Oldest waiting event",
        "s",
        &[Series {
            label: "age",
            points: &lag_seconds,
            color: "#c53030",
        }],
        now,
        frame.window_seconds,
    ));
    html.push_str("</div>");
    if let Some(csrf) = frame.csrf {
        let _ = write!(
            html,
            "<h2>Actions</h2><p>Rebuild replays every event of one instance into this projection; \
             a running runtime carries it out within a second.</p>\
             <form class=\"filter\" method=\"post\" action=\"/actions/rebuild\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"projection\" value=\"{}\">\
             <input type=\"hidden\" name=\"return_to\" value=\"{}\">\
             <input name=\"instance\" placeholder=\"instance id\" required><button type=\"submit\" class=\"danger\">Rebuild in this instance</button></form>",
            escape(csrf),
            escape(&summary.name),
            escape(frame.here),
        );
    }
    let mut rows: Vec<&PairRow> = sample
        .rows_of(summary)
        .iter()
        .filter(|row| row.instance_id.as_str().contains(query.instance.as_str()))
        .collect();
    rows.sort_by(|a, b| {
        b.health
            .cmp(&a.health)
            .then(b.events_behind.cmp(&a.events_behind))
            .then(a.instance_id.cmp(&b.instance_id))
    });
    let _ = write!(
        html,
        "<h2>Instances</h2><form class=\"filter\" method=\"get\">\
         <input name=\"instance\" placeholder=\"instance contains\" value=\"{}\"><button type=\"submit\">Filter</button></form>\
         <table id=\"instances\"><thead><tr><th>Instance</th><th>Health</th><th class=\"num\">Events behind</th>\
         <th class=\"num\">Oldest waiting</th><th>Checkpoint</th><th>Last moved</th>\
         <th class=\"num\">Failed</th><th class=\"num\">Parked</th></tr></thead><tbody>",
        escape(&query.instance)
    );
    let total = rows.len();
    for row in rows
        .iter()
        .skip(query.page * INSTANCES_PER_PAGE)
        .take(INSTANCES_PER_PAGE)
    {
        let _ = write!(
            html,
            "<tr data-instance=\"{instance}\"><td>{instance}</td><td>{badge}</td>\
             <td class=\"num events-behind\">{behind}</td><td class=\"num\">{oldest}</td>\
             <td>{checkpoint}</td><td>{moved}</td><td class=\"num\">{failed}</td><td class=\"num\">{parked}</td></tr>",
            instance = escape(row.instance_id.as_str()),
            badge = badge(row.health),
            behind = row.events_behind,
            oldest = seconds(row.seconds_behind),
            checkpoint = escape(row.checkpoint.as_deref().unwrap_or("–")),
            moved = ago(row.last_moved_at, now),
            failed = row.failed,
            parked = row.parked,
        );
    }
    html.push_str("</tbody></table>");
    pager(&mut html, frame.here, query.page, total, INSTANCES_PER_PAGE);
    let failed: Vec<&FailedEvent> = sample
        .failed
        .iter()
        .filter(|event| event.projection == summary.name)
        .collect();
    html.push_str("<h2>Failed events</h2>");
    failed_table(&mut html, frame, &failed, 0, usize::MAX, now);
    Some(layout(frame, &summary.name, &html))
}

/// Every failed event an operator has not skipped, oldest failure first.
pub(super) fn failed(frame: &Frame<'_>, query: &PageQuery) -> String {
    let Some(sample) = frame.sample else {
        return layout(
            frame,
            "Failed events",
            "<p>Waiting for the first sample…</p>",
        );
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>Failed events</h2><p class=\"meta\">Retry asks a runtime to apply the event again now; \
         skip gives up on it for good (the read model lacks it). {} in all{}.</p>\
         <form class=\"filter\" method=\"get\"><input name=\"q\" placeholder=\"projection contains\" value=\"{}\">\
         <input name=\"instance\" placeholder=\"instance contains\" value=\"{}\"><button type=\"submit\">Filter</button></form>",
        sample.failed_total,
        if sample.failed_total > sample.failed.len() {
            format!(", the oldest {} listed", sample.failed.len())
        } else {
            String::new()
        },
        escape(&query.q),
        escape(&query.instance),
    );
    let events: Vec<&FailedEvent> = sample
        .failed
        .iter()
        .filter(|event| event.projection.contains(query.q.as_str()))
        .filter(|event| {
            event
                .aggregate
                .instance_id
                .as_str()
                .contains(query.instance.as_str())
        })
        .collect();
    failed_table(
        &mut html,
        frame,
        &events,
        query.page,
        FAILED_PER_PAGE,
        sample.taken_at,
    );
    layout(frame, "Failed events", &html)
}

fn failed_table(
    html: &mut String,
    frame: &Frame<'_>,
    events: &[&FailedEvent],
    page: usize,
    per_page: usize,
    now: DateTime<Utc>,
) {
    if events.is_empty() {
        html.push_str("<p>No failed events.</p>");
        return;
    }
    html.push_str(
        "<table id=\"failed\"><thead><tr><th>Projection</th><th>Instance</th><th>Aggregate</th>\
         <th class=\"num\">Sequence</th><th class=\"num\">Attempts</th><th>State</th><th>Last failed</th>\
         <th>Error</th><th></th></tr></thead><tbody>",
    );
    for event in events
        .iter()
        .skip(page.saturating_mul(per_page))
        .take(per_page)
    {
        let actions = match frame.csrf {
            Some(csrf) => {
                let hidden = format!(
                    "<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                     <input type=\"hidden\" name=\"projection\" value=\"{}\">\
                     <input type=\"hidden\" name=\"instance\" value=\"{}\">\
                     <input type=\"hidden\" name=\"aggregate_type\" value=\"{}\">\
                     <input type=\"hidden\" name=\"aggregate_id\" value=\"{}\">\
                     <input type=\"hidden\" name=\"sequence\" value=\"{}\">\
                     <input type=\"hidden\" name=\"return_to\" value=\"{}\">",
                    escape(csrf),
                    escape(&event.projection),
                    escape(event.aggregate.instance_id.as_str()),
                    escape(event.aggregate.aggregate_type.as_str()),
                    escape(event.aggregate.aggregate_id.as_str()),
                    event.sequence,
                    escape(frame.here),
                );
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/actions/retry\">{hidden}<button type=\"submit\" class=\"retry\">Retry</button></form> \
                     <form class=\"inline\" method=\"post\" action=\"/actions/skip\">{hidden}<button type=\"submit\" class=\"danger skip\">Skip</button></form>"
                )
            }
            None => String::new(),
        };
        let _ = write!(
            html,
            "<tr class=\"failed-event\"><td>{}</td><td>{}</td><td>{} {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td><td>{actions}</td></tr>",
            escape(&event.projection),
            escape(event.aggregate.instance_id.as_str()),
            escape(event.aggregate.aggregate_type.as_str()),
            escape(event.aggregate.aggregate_id.as_str()),
            event.sequence,
            event.failure_count,
            if event.parked { "parked" } else { "failed" },
            ago(Some(event.last_failed_at), now),
            escape(&event.error),
        );
    }
    html.push_str("</tbody></table>");
    if per_page != usize::MAX {
        pager(html, frame.here, page, events.len(), per_page);
    }
}

/// The runtimes alive, with what they run.
pub(super) fn runtimes(frame: &Frame<'_>) -> String {
    let Some(sample) = frame.sample else {
        return layout(frame, "Runtimes", "<p>Waiting for the first sample…</p>");
    };
    let mut html = String::from(
        "<h2>Runtimes alive</h2><p class=\"meta\">Processes running a projection runtime that sent a \
         heartbeat in the last 15 s.</p><table><thead><tr><th>Host</th><th class=\"num\">PID</th>\
         <th>Started</th><th>Last seen</th><th>Runs</th></tr></thead><tbody>",
    );
    for runtime in &sample.runtimes {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&runtime.host),
            runtime.pid,
            ago(Some(runtime.started_at), sample.taken_at),
            ago(Some(runtime.last_seen_at), sample.taken_at),
            escape(&runtime.projections.join(", ")),
        );
    }
    html.push_str("</tbody></table>");
    if sample.runtimes.is_empty() {
        html.push_str(
            "<p>No runtime is alive: retries, skips and rebuilds wait until one starts.</p>",
        );
    }
    layout(frame, "Runtimes", &html)
}

/// The sign-in form, or why there is none.
pub(super) fn sign_in(frame: &Frame<'_>, failed: bool) -> String {
    let content = if frame.actions_enabled {
        format!(
            "<h2>Sign in</h2><p>Retry, skip and rebuild need the token `strata serve` was started with.</p>{}\
             <form method=\"post\" action=\"/signin\" class=\"filter\">\
             <input type=\"password\" name=\"token\" placeholder=\"token\" autocomplete=\"current-password\" required>\
             <button type=\"submit\" id=\"signin\">Sign in</button></form>",
            if failed {
                "<div class=\"alert\">That is not the token.</div>"
            } else {
                ""
            }
        )
    } else {
        "<h2>Read-only</h2><p>This server was started without <code>--token</code> \
         (or <code>STRATA_SERVE_TOKEN</code>), so it offers no actions.</p>"
            .to_owned()
    };
    layout(frame, "Sign in", &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(url_encode("users@v2"), "users%40v2");
        assert_eq!(url_encode("mailer#0/4"), "mailer%230%2F4");
    }

    #[test]
    fn a_refresh_drops_the_notice_and_keeps_the_rest() {
        assert_eq!(
            without_notice("/failed?q=a&notice=done&page=1"),
            "/failed?q=a&page=1"
        );
        assert_eq!(without_notice("/?notice=signed%20in"), "/");
    }

    #[test]
    fn refresh_toggles_keep_the_filters() {
        assert_eq!(
            toggle_refresh("/?q=users&page=2", 5),
            "/?q=users&page=2&refresh=off"
        );
        assert_eq!(
            toggle_refresh("/failed?refresh=off", 0),
            "/failed?refresh=on"
        );
    }
}
