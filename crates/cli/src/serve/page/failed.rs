//! Failed events an operator has not skipped, with retry and skip for one who signed in.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use strata_projection::FailedEvent;

use super::{Frame, PageQuery, ago, escape, layout, pager};

/// Failed events per page.
const FAILED_PER_PAGE: usize = 100;

/// Every failed event an operator has not skipped, oldest failure first.
pub(in crate::serve) fn failed(frame: &Frame<'_>, query: &PageQuery) -> String {
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

pub(super) fn failed_table(
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
