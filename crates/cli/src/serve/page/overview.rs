//! The overview: cards, charts, and one row per projection or consumer part, worst first.

use std::fmt::Write;

use strata_projection::Health;

use super::{Frame, PageQuery, badge, escape, kind_cell, layout, pager, seconds, url_encode};
use crate::serve::chart::{Series, format_value, line_chart, sparkline};
use crate::serve::sample::{Counts, Kind, ProjectionSummary, Sample};

/// Rows of the overview per page.
const PROJECTIONS_PER_PAGE: usize = 100;

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
    let mut narrowed = ProjectionSummary {
        counts: Counts::default(),
        ..summary.clone()
    };
    for row in sample.rows_of(summary) {
        if row.instance_id.as_str().contains(instance) {
            narrowed.counts.add(row);
        }
    }
    (narrowed.counts.instances() > 0).then_some(narrowed)
}

/// The overview: cards, charts, and one row per projection, worst first.
pub(in crate::serve) fn overview(frame: &Frame<'_>, query: &PageQuery) -> String {
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
            .then(b.counts.events_behind.cmp(&a.counts.events_behind))
            .then(a.name.cmp(&b.name))
    });
    let total = rows.len();
    let page = query.page;
    let shown = rows
        .iter()
        .skip(page.saturating_mul(PROJECTIONS_PER_PAGE))
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
            instances = summary.counts.instances(),
            h = summary.counts.healthy,
            c = summary.counts.catching_up,
            s = summary.counts.stalled,
            behind = summary.counts.events_behind,
            oldest = seconds(summary.counts.seconds_behind),
            failed = summary.counts.failed,
            parked = summary.counts.parked,
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
