//! Line charts as inline SVG: no script, no font or file to fetch, so the page works where
//! nothing outside the machine is reachable.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::page::escape;

/// One line of a chart.
#[derive(Debug)]
pub(super) struct Series<'a> {
    pub(super) label: &'a str,
    pub(super) points: &'a [(DateTime<Utc>, f64)],
    /// A CSS colour.
    pub(super) color: &'a str,
}

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 22.0;

/// A chart of `series` over the `window_seconds` up to `now`, its y axis from 0 to a round value
/// above the largest point, `unit` after each value.
pub(super) fn line_chart(
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    now: DateTime<Utc>,
    window_seconds: f64,
) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#,
        title = escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="16" class="chart-title">{}</text>"#,
        escape(title)
    );
    let largest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let top = round_up(largest);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    for step in 0..=4 {
        let value = top * f64::from(step) / 4.0;
        let y = TOP + plot_height - plot_height * f64::from(step) / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{lx}" y="{ty:.1}" class="axis" text-anchor="end">{label}</text>"#,
            x2 = WIDTH - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            label = format_value(value, unit)
        );
    }
    for (fraction, label) in [
        (0.0, ago_label(window_seconds)),
        (0.5, ago_label(window_seconds / 2.0)),
        (1.0, "now".to_owned()),
    ] {
        let x = LEFT + plot_width * fraction;
        let anchor = match fraction {
            f if f <= 0.0 => "start",
            f if f >= 1.0 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y}" class="axis" text-anchor="{anchor}">{label}</text>"#,
            y = HEIGHT - 6.0
        );
    }
    // After the title (about 7 px a character at its size).
    let mut legend_x = LEFT + title.chars().count() as f64 * 7.0 + 18.0;
    let mut drawn = false;
    for line in series {
        let mut path = String::new();
        for (at, value) in line.points {
            let age = (now - *at).num_milliseconds() as f64 / 1000.0;
            if age > window_seconds || age < 0.0 {
                continue;
            }
            let x = LEFT + plot_width * (1.0 - age / window_seconds);
            let y = TOP + plot_height - plot_height * (value / top);
            let _ = write!(path, "{x:.1},{y:.1} ");
        }
        if let Some(last) = path.split_whitespace().last() {
            drawn = true;
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                path.trim_end(),
                line.color
            );
            // The latest point, so that a single sample shows too.
            if let Some((x, y)) = last.split_once(',') {
                let _ = write!(
                    svg,
                    r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                    line.color
                );
            }
        }
        let latest = line
            .points
            .last()
            .map_or_else(|| "–".to_owned(), |(_, v)| format_value(*v, unit));
        let _ = write!(
            svg,
            r#"<rect x="{legend_x:.0}" y="8" width="10" height="10" fill="{}"/><text x="{tx:.0}" y="17" class="legend">{} {}</text>"#,
            line.color,
            escape(line.label),
            latest,
            tx = legend_x + 14.0
        );
        legend_x += 130.0;
    }
    if !drawn {
        let _ = write!(
            svg,
            r#"<text x="{x:.0}" y="{y:.0}" class="axis" text-anchor="middle">no samples yet</text>"#,
            x = LEFT + plot_width / 2.0,
            y = TOP + plot_height / 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `-90s`, `-7m`: how long before now a point of the x axis is.
fn ago_label(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("-{:.0}s", seconds)
    } else {
        format!("-{:.0}m", seconds / 60.0)
    }
}

/// A small chart of one series without axes, for a table row.
pub(super) fn sparkline(
    points: &[(DateTime<Utc>, f64)],
    now: DateTime<Utc>,
    window_seconds: f64,
) -> String {
    const W: f64 = 120.0;
    const H: f64 = 22.0;
    let largest = points.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let top = if largest > 0.0 { largest } else { 1.0 };
    let mut path = String::new();
    for (at, value) in points {
        let age = (now - *at).num_milliseconds() as f64 / 1000.0;
        if age > window_seconds || age < 0.0 {
            continue;
        }
        let x = W * (1.0 - age / window_seconds);
        let y = H - 2.0 - (H - 4.0) * (value / top);
        let _ = write!(path, "{x:.1},{y:.1} ");
    }
    format!(
        r##"<svg class="spark" viewBox="0 0 {W} {H}" aria-hidden="true"><polyline points="{}" fill="none" stroke="#5b6ee1" stroke-width="1.5"/></svg>"##,
        path.trim_end()
    )
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `value` (1 for 0).
fn round_up(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// `1.5k`, `2M`, `0.25 s`: a value short enough for an axis.
pub(super) fn format_value(value: f64, unit: &str) -> String {
    let number = if value >= 1_000_000.0 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if value >= 10_000.0 {
        format!("{:.0}k", value / 1_000.0)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1_000.0)
    } else if value >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    if unit.is_empty() {
        number
    } else {
        format!("{number} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_at_round_values() {
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(3.0), 5.0);
        assert_eq!(round_up(120.0), 200.0);
        assert_eq!(round_up(1000.0), 1000.0);
    }

    #[test]
    fn values_are_short() {
        assert_eq!(format_value(1_500.0, ""), "1.5k");
        assert_eq!(format_value(25_000.0, "ev/s"), "25k ev/s");
        assert_eq!(format_value(0.5, "s"), "0.50 s");
    }

    #[test]
    fn a_chart_draws_its_points_and_escapes_its_labels() {
        let now = Utc::now();
        let points = [(now - chrono::Duration::seconds(30), 4.0), (now, 8.0)];
        let svg = line_chart(
            "lag <of> users",
            "",
            &[Series {
                label: "a&b",
                points: &points,
                color: "#000",
            }],
            now,
            600.0,
        );
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("lag &lt;of&gt; users"));
        assert!(svg.contains("a&amp;b 8"));
    }
}
