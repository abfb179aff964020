//! One projection or consumer part: its charts, its instances worst first, its failed events.

use std::fmt::Write;

use strata_projection::FailedEvent;

use super::failed::failed_table;
use super::{Frame, PageQuery, ago, badge, escape, kind_cell, layout, pager, seconds};
use crate::serve::chart::{Series, line_chart};
use crate::serve::sample::PairRow;

/// Instances of one projection per page.
const INSTANCES_PER_PAGE: usize = 200;

/// One projection: its charts, its instances worst first, its failed events.
pub(in crate::serve) fn projection(
    frame: &Frame<'_>,
    name: &str,
    query: &PageQuery,
) -> Option<String> {
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
        summary.counts.events_behind,
        seconds(summary.counts.seconds_behind),
        summary.counts.failed,
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
        .skip(query.page.saturating_mul(INSTANCES_PER_PAGE))
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
