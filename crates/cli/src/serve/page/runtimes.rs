//! The runtimes alive, with what they run.

use std::fmt::Write;

use super::{Frame, ago, escape, layout};

/// The runtimes alive, with what they run.
pub(in crate::serve) fn runtimes(frame: &Frame<'_>) -> String {
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
