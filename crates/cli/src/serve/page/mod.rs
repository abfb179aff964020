//! The status page, rendered on the server from the latest sample: an overview with one row per
//! projection (however many instances it runs in), a page per projection with its instances, and
//! the failed events, each with charts of the last minutes. Plain HTML and inline SVG; the page
//! refreshes itself with a `<meta>` tag, so it needs no script.
//!
//! One file per page: `overview.rs`, `projection.rs` (one projection's instances), `failed.rs`,
//! `runtimes.rs`, `sign_in.rs`; this file has the frame every page shares, the helpers they use,
//! and `style.css`.

mod failed;
mod overview;
mod projection;
mod runtimes;
mod sign_in;

use std::fmt::Write;

use chrono::{DateTime, Utc};
use strata_projection::{Health, VersionState};

use super::history::History;
use super::sample::{Kind, ProjectionSummary, Sample};

pub(super) use self::failed::failed;
pub(super) use self::overview::overview;
pub(super) use self::projection::projection;
pub(super) use self::runtimes::runtimes;
pub(super) use self::sign_in::sign_in;

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

/// The page's styles: inline, so the page needs nothing from elsewhere.
const STYLE: &str = include_str!("style.css");

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

/// Links to the previous and next page of a listing.
fn pager(html: &mut String, here: &str, page: usize, total: usize, per_page: usize) {
    let pages = total.div_ceil(per_page).max(1);
    if pages <= 1 {
        return;
    }
    // A page past the last (a hand-edited link) shows nothing and links back into range.
    let page = page.min(pages);
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
