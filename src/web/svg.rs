//! Charts drawn on the server as SVG: stacked bars per day. No script, no
//! library, readable without colour (each series is also in the legend
//! with its total, and each bar has a title with its numbers).

use std::fmt::Write;

/// One series of a stacked bar chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<i64>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Stacked bars, one per label (day), series bottom to top.
pub fn stacked_bars(labels: &[String], series: &[Series<'_>]) -> String {
    const WIDTH: f64 = 900.0;
    const HEIGHT: f64 = 220.0;
    const LEFT: f64 = 50.0;
    const BOTTOM: f64 = 30.0;
    const TOP: f64 = 24.0;
    if labels.is_empty() {
        return "<p class=\"muted\">No data for this period.</p>".to_string();
    }
    let totals: Vec<i64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / labels.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" aria-label=\"Messages per day\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    // Legend, with totals.
    let mut x = LEFT;
    for s in series {
        let total: i64 = s.values.iter().sum();
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"13\">{} ({total})</text>",
            s.colour,
            x + 14.0,
            escape(s.name)
        );
        x += 150.0;
    }
    // Axis: zero and the maximum.
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        LEFT - 6.0,
        TOP + 8.0,
        max as i64,
        LEFT - 6.0,
        HEIGHT - BOTTOM
    );
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{WIDTH}\" y2=\"{}\" stroke=\"#999\"/>",
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
    let label_every = (labels.len() / 10).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = HEIGHT - BOTTOM;
        let mut title = escape(label);
        for s in series {
            let value = s.values.get(i).copied().unwrap_or(0);
            let _ = write!(title, ", {}: {value}", escape(s.name));
        }
        let _ = write!(svg, "<g><title>{title}</title>");
        for s in series {
            let value = s.values.get(i).copied().unwrap_or(0);
            if value == 0 {
                continue;
            }
            let h = value as f64 / max * plot_height;
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                s.colour
            );
        }
        svg.push_str("</g>");
        if i % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                HEIGHT - 10.0,
                escape(label.get(5..).unwrap_or(label))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_day_and_escape_labels() {
        let svg = stacked_bars(
            &["2024-03-30".into(), "2024-03-31".into()],
            &[
                Series {
                    name: "pass",
                    colour: "#2e7d32",
                    values: vec![10, 5],
                },
                Series {
                    name: "fail <x>",
                    colour: "#c62828",
                    values: vec![10, 0],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("pass (15)") && svg.contains("fail &lt;x&gt; (10)"));
        assert!(svg.contains("<title>2024-03-30, pass: 10, fail &lt;x&gt;: 10</title>"));
        assert!(!svg.contains("<x>"));
        assert_eq!(
            stacked_bars(&[], &[]),
            "<p class=\"muted\">No data for this period.</p>"
        );
    }
}
