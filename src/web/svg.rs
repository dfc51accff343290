//! Charts drawn on the server: SVG bars over time and HTML bars by name.
//! No script, no library, readable without colour (each series is also in
//! the legend with its total, and each bar has a title with its numbers,
//! which browsers show as a tooltip).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Datelike, Duration, Months, NaiveDate};

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

/// How much time one bar stands for: a day while the bars stay wide
/// enough to see and point at, then a week, then a month (a report dated
/// 1979 beside this year's would otherwise make every bar a hairline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

/// Days a chart shows one bar per day for, at most; weeks up to two years.
const MAX_DAILY_SPAN: i64 = 120;
const MAX_WEEKLY_SPAN: i64 = 2 * 366;

impl Bucket {
    fn for_span(first: NaiveDate, last: NaiveDate) -> Self {
        let days = (last - first).num_days() + 1;
        if days <= MAX_DAILY_SPAN {
            Bucket::Day
        } else if days <= MAX_WEEKLY_SPAN {
            Bucket::Week
        } else {
            Bucket::Month
        }
    }

    /// The first day of the bucket holding `day` (weeks begin on Monday).
    fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Bucket::Day => day,
            Bucket::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Bucket::Month => day.with_day(1).unwrap_or(day),
        }
    }

    fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Bucket::Day => start + Duration::days(1),
            Bucket::Week => start + Duration::days(7),
            Bucket::Month => start + Months::new(1),
        }
    }

    /// What one bar is, for the chart's caption.
    pub fn noun(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    /// A bucket as its tooltip names it.
    fn title(self, start: NaiveDate) -> String {
        match self {
            Bucket::Day => start.format("%Y-%m-%d").to_string(),
            Bucket::Week => format!("week of {}", start.format("%Y-%m-%d")),
            Bucket::Month => start.format("%Y-%m").to_string(),
        }
    }

    /// A bucket as the axis names it: with its year when the chart spans
    /// more than one (or is by month), else without (the caption says it).
    fn axis_label(self, start: NaiveDate, years: bool) -> String {
        match (self, years) {
            (Bucket::Month, _) => start.format("%b %Y").to_string(),
            (_, true) => start.format("%Y-%m-%d").to_string(),
            (_, false) => start.format("%b %-d").to_string(),
        }
    }
}

/// Stacked bars over a continuous time axis: one slot per day (or week,
/// or month) from the first day with data to the last, empty ones
/// included, series bottom to top. `days[i]` is the day of the values at
/// `i` in each series. Bar heights follow the square root of the total,
/// so that a day of ten messages stays visible beside one of ten thousand;
/// the caption says so. Returns HTML: a legend, the SVG and a caption.
pub fn daily_bars(label: &str, days: &[NaiveDate], series: &[Series<'_>]) -> String {
    let (Some(&first), Some(&last)) = (days.iter().min(), days.iter().max()) else {
        return "<p class=\"muted\">No data for this period.</p>".to_string();
    };
    let bucket = Bucket::for_span(first, last);
    // Sums per bucket and series.
    let mut sums: BTreeMap<NaiveDate, Vec<i64>> = BTreeMap::new();
    let mut slot = bucket.start(first);
    while slot <= last {
        sums.insert(slot, vec![0; series.len()]);
        slot = bucket.next(slot);
    }
    for (i, day) in days.iter().enumerate() {
        if let Some(values) = sums.get_mut(&bucket.start(*day)) {
            for (s, one) in series.iter().enumerate() {
                values[s] += one.values.get(i).copied().unwrap_or(0).max(0);
            }
        }
    }
    let years = first.year() != last.year();
    let mut html = String::from("<figure class=\"chart\"><ul class=\"legend\">");
    for s in series {
        let total: i64 = s.values.iter().sum();
        let _ = write!(
            html,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{} ({total})</li>",
            s.colour,
            escape(s.name)
        );
    }
    html.push_str("</ul>");
    html.push_str(&bars_svg(label, bucket, years, &sums, series));
    let period = if first == last {
        first.format("%b %-d, %Y").to_string()
    } else if years || bucket == Bucket::Month {
        format!("{} – {}", first.format("%Y-%m-%d"), last.format("%Y-%m-%d"))
    } else {
        format!("{} – {}", first.format("%b %-d"), last.format("%b %-d, %Y"))
    };
    let _ = write!(
        html,
        "<figcaption class=\"muted\">{period}, one bar per {}, empty ones included. Bar heights \
         are on a square-root scale so that small {}s stay visible; point at a bar for its numbers.\
         </figcaption></figure>",
        bucket.noun(),
        bucket.noun()
    );
    html
}

fn bars_svg(
    label: &str,
    bucket: Bucket,
    years: bool,
    sums: &BTreeMap<NaiveDate, Vec<i64>>,
    series: &[Series<'_>],
) -> String {
    const WIDTH: f64 = 900.0;
    const HEIGHT: f64 = 240.0;
    const LEFT: f64 = 8.0;
    const RIGHT: f64 = 8.0;
    // Room for the axis labels, which phones draw larger (base.html).
    const BOTTOM: f64 = 40.0;
    // Room above the tallest bar for its gridline's value.
    const TOP: f64 = 32.0;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let baseline = HEIGHT - BOTTOM;
    let max = sums
        .values()
        .map(|values| values.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height_of = |value: f64| (value / max).sqrt() * plot_height;
    let slot = (WIDTH - LEFT - RIGHT) / sums.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label)
    );
    // Gridlines at the maximum and at a quarter of it (half the height on
    // this scale), their values written above them.
    let quarter = (max / 4.0).round();
    let ticks = if quarter >= 1.0 && quarter < max {
        vec![max, quarter]
    } else {
        vec![max]
    };
    for value in ticks {
        let y = baseline - height_of(value);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\
             <text class=\"value\" x=\"{LEFT}\" y=\"{:.1}\">{}</text>",
            WIDTH - RIGHT,
            y - 3.0,
            value as i64
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{baseline}\" x2=\"{}\" y2=\"{baseline}\" stroke=\"#999\"/>",
        WIDTH - RIGHT
    );
    // About eight labels at desktop width; phones show every other one.
    let label_every = sums.len().div_ceil(8).max(1);
    for (i, (start, values)) in sums.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let total: i64 = values.iter().sum();
        let mut title = bucket.title(*start);
        if total == 0 {
            title.push_str(": no reports");
        } else {
            for (s, value) in series.iter().zip(values) {
                let _ = write!(title, ", {}: {value}", escape(&s.name.replace(',', "")));
            }
        }
        // The whole column answers the pointer, not only the bar.
        let _ = write!(
            svg,
            "<g><title>{title}</title><rect x=\"{x:.1}\" y=\"{TOP}\" width=\"{slot:.1}\" \
             height=\"{plot_height}\" fill=\"transparent\"/>"
        );
        let column = height_of(total as f64);
        let mut y = baseline;
        for (s, value) in series.iter().zip(values) {
            if *value == 0 {
                continue;
            }
            let h = column * *value as f64 / total as f64;
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                x + (slot - bar) / 2.0,
                s.colour
            );
        }
        svg.push_str("</g>");
        if i % label_every == 0 {
            let minor = if (i / label_every) % 2 == 1 {
                " class=\"minor\""
            } else {
                ""
            };
            let _ = write!(
                svg,
                "<text{minor} x=\"{:.1}\" y=\"{}\" text-anchor=\"start\">{}</text>",
                x,
                HEIGHT - 8.0,
                escape(&bucket.axis_label(*start, years))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One bar of a bar chart by name.
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub colour: &'static str,
    /// Where the bar's name leads.
    pub href: Option<String>,
}

/// Horizontal bars, one per name, longest first as given, in HTML (the
/// names stay readable at any width and wrap when long). Lengths are
/// linear; a bar of 1 keeps a sliver so that it does not vanish.
pub fn named_bars(label: &str, bars: &[Bar]) -> String {
    if bars.is_empty() {
        return "<p class=\"muted\">No sessions for this filter.</p>".to_string();
    }
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let mut html = format!(
        "<table class=\"bars\" aria-label=\"{}\"><tbody>",
        escape(label)
    );
    for bar in bars {
        let name = match &bar.href {
            Some(href) => format!("<a href=\"{}\">{}</a>", escape(href), escape(&bar.label)),
            None => escape(&bar.label),
        };
        let width = bar.value.max(0) as f64 * 100.0 / max;
        let _ = write!(
            html,
            "<tr><th scope=\"row\" class=\"key\">{name}</th><td class=\"bar\" title=\"{}: {}\">\
             <span style=\"width:max({width:.1}%, 2px);background:{}\"></span></td>\
             <td class=\"num\">{}</td></tr>",
            escape(&bar.label),
            bar.value,
            bar.colour,
            bar.value
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// One segment of a share bar.
pub struct Share<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub value: i64,
}

/// One horizontal bar split into shares (messages per class, say).
pub struct ShareBar<'a> {
    pub label: &'a str,
    pub shares: Vec<Share<'a>>,
}

/// Bars each split by share of their total, one under the other, with a
/// legend naming each segment once. A segment narrower than its text
/// carries no text but keeps its title (the tooltip) with its numbers.
pub fn share_bars(label: &str, bars: &[ShareBar<'_>]) -> String {
    const WIDTH: f64 = 900.0;
    // Room for the label above each bar at phone size too (base.html
    // draws chart text 28 units tall there).
    const ROW: f64 = 84.0;
    const BAR: f64 = 36.0;
    const BAR_TOP: f64 = 40.0;
    let height = ROW * bars.len().max(1) as f64;
    let mut html = String::from("<figure class=\"chart\"><ul class=\"legend\">");
    if let Some(first) = bars.first() {
        for share in &first.shares {
            let _ = write!(
                html,
                "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
                share.colour,
                escape(share.name)
            );
        }
    }
    html.push_str("</ul>");
    let _ = write!(
        html,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label)
    );
    for (row, bar) in bars.iter().enumerate() {
        let top = row as f64 * ROW;
        let total: i64 = bar.shares.iter().map(|s| s.value.max(0)).sum();
        let _ = write!(
            html,
            "<text x=\"0\" y=\"{:.1}\">{} ({total})</text>",
            top + 30.0,
            escape(bar.label)
        );
        let mut x = 0.0;
        for share in &bar.shares {
            if share.value <= 0 || total == 0 {
                continue;
            }
            let width = WIDTH * share.value as f64 / total as f64;
            let percent = share.value as f64 * 100.0 / total as f64;
            let _ = write!(
                html,
                "<g><title>{}: {} ({percent:.1}%)</title><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" \
                 height=\"{BAR}\" fill=\"{}\"/>",
                escape(share.name),
                share.value,
                top + BAR_TOP,
                share.colour
            );
            // About 16 units per character at phone size.
            let text = format!("{percent:.0}%");
            if width > 16.0 * text.len() as f64 + 8.0 {
                let _ = write!(
                    html,
                    "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#fff\">{text}</text>",
                    x + 4.0,
                    top + BAR_TOP + BAR - 8.0
                );
            }
            html.push_str("</g>");
            x += width;
        }
        if total == 0 {
            let _ = write!(
                html,
                "<rect x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{BAR}\" fill=\"#eee\"/>",
                top + BAR_TOP
            );
        }
    }
    html.push_str("</svg><figcaption class=\"muted\">Each bar is 100%; point at a segment for its numbers.</figcaption></figure>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn two_series(pass: Vec<i64>, fail: Vec<i64>) -> [Series<'static>; 2] {
        [
            Series {
                name: "pass",
                colour: "#2e7d32",
                values: pass,
            },
            Series {
                name: "fail <x>",
                colour: "#c62828",
                values: fail,
            },
        ]
    }

    #[test]
    fn every_day_of_the_range_has_a_slot_and_a_title() {
        let html = daily_bars(
            "Messages per day",
            &[day("2024-03-30"), day("2024-04-02")],
            &two_series(vec![10, 5], vec![10, 0]),
        );
        assert!(html.contains("pass (15)") && html.contains("fail &lt;x&gt; (10)"));
        assert!(html.contains("<title>2024-03-30, pass: 10, fail &lt;x&gt;: 10</title>"));
        assert!(html.contains("<title>2024-03-31: no reports</title>"));
        assert!(html.contains("<title>2024-04-01: no reports</title>"));
        assert!(html.contains("<title>2024-04-02, pass: 5, fail &lt;x&gt;: 0</title>"));
        assert_eq!(html.matches("<title>").count(), 4);
        assert!(!html.contains("<x>"));
        // Within one year the axis leaves the year out and the caption says it.
        assert!(html.contains(">Mar 30</text>"), "{html}");
        assert!(html.contains("Mar 30 – Apr 2, 2024"), "{html}");
        assert!(html.contains("square-root scale"));
        assert_eq!(
            daily_bars("x", &[], &[]),
            "<p class=\"muted\">No data for this period.</p>"
        );
    }

    #[test]
    fn small_days_stay_visible_on_the_square_root_scale() {
        let html = daily_bars(
            "x",
            &[day("2024-03-30"), day("2024-03-31")],
            &two_series(vec![10_000, 1], vec![0, 0]),
        );
        // 1 of 10 000 is a hundredth of the height (1.7 of 168), not a
        // ten-thousandth (0.02).
        let heights: Vec<f64> = html
            .split("height=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next()?.parse().ok())
            .collect();
        assert!(heights.contains(&168.0), "{heights:?}");
        assert!(heights.contains(&1.7), "{heights:?}");
    }

    #[test]
    fn a_range_across_years_names_them_and_long_ranges_use_months() {
        let html = daily_bars(
            "x",
            &[day("2024-12-30"), day("2025-01-02")],
            &two_series(vec![1, 1], vec![0, 0]),
        );
        assert!(html.contains(">2024-12-30</text>"), "{html}");
        assert!(html.contains("2024-12-30 – 2025-01-02"), "{html}");
        // A 1979 report beside 2025's: one bar per month, 46 years of them.
        let html = daily_bars(
            "x",
            &[day("1979-06-15"), day("2025-03-01")],
            &two_series(vec![1, 1], vec![0, 0]),
        );
        assert!(html.contains("one bar per month"), "{html}");
        assert!(html.contains("<title>1979-06, pass: 1"), "{html}");
        assert!(html.contains("<title>1979-07: no reports</title>"));
        assert_eq!(html.matches("<title>").count(), 12 * 46 - 5 + 3);
        assert!(html.contains(">Jun 1979</text>"));
        // Weeks begin on Monday.
        assert_eq!(Bucket::Week.start(day("2024-03-31")), day("2024-03-25"));
    }

    #[test]
    fn share_bars_split_each_total_and_title_every_segment() {
        let html = share_bars(
            "Messages per class",
            &[ShareBar {
                label: "Messages",
                shares: vec![
                    Share {
                        name: "Authorized",
                        colour: "#2e7d32",
                        value: 75,
                    },
                    Share {
                        name: "Suspicious <x>",
                        colour: "#c62828",
                        value: 25,
                    },
                    Share {
                        name: "Ignored",
                        colour: "#999",
                        value: 0,
                    },
                ],
            }],
        );
        assert!(
            html.contains("<title>Authorized: 75 (75.0%)</title>"),
            "{html}"
        );
        assert!(html.contains("width=\"675.0\""), "{html}");
        assert!(html.contains("<title>Suspicious &lt;x&gt;: 25 (25.0%)</title>"));
        assert!(
            !html.contains("<title>Ignored"),
            "an empty share draws nothing"
        );
        assert!(html.contains("Messages (100)"));
    }

    #[test]
    fn named_bars_link_and_keep_small_ones_visible() {
        let html = named_bars(
            "Sessions per result type",
            &[
                Bar {
                    label: "certificate-expired".into(),
                    value: 100,
                    colour: "#c62828",
                    href: Some("/tls?result_type=certificate-expired".into()),
                },
                Bar {
                    label: "<b>".into(),
                    value: 1,
                    colour: "#c62828",
                    href: None,
                },
            ],
        );
        assert!(html.contains("<a href=\"/tls?result_type=certificate-expired\">"));
        assert!(html.contains("width:max(100.0%, 2px)") && html.contains("width:max(1.0%, 2px)"));
        assert!(html.contains("&lt;b&gt;") && !html.contains("<b>"));
    }
}
