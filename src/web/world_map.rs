//! The world map: countries shaded by how much mail came from them, drawn
//! on the server as SVG (no script). Each country links to the explorer
//! filtered by it and carries a `<title>` with its name and numbers, which
//! browsers show as a tooltip and screen readers read.
//!
//! The shapes are Natural Earth's 1:110m countries (public domain), projected
//! and simplified once by `tools/worldmap/generate.py` into `world_map.txt`
//! (about 28 KB), which is compiled in: nothing is fetched at build or run
//! time. Countries too small for that scale are dots.

use std::fmt::Write;
use std::sync::LazyLock;

use crate::query::compliance::grouped;

static SHAPES: &str = include_str!("world_map.txt");

/// One country of the shipped file.
struct Country {
    code: &'static str,
    name: &'static str,
    drawing: Drawing,
}

enum Drawing {
    /// SVG path data.
    Shape(&'static str),
    /// Too small to draw at this scale: a dot at its centre.
    Dot(u16, u16),
    /// Named only.
    Hidden,
}

struct Atlas {
    view_box: &'static str,
    countries: Vec<Country>,
}

static ATLAS: LazyLock<Atlas> = LazyLock::new(|| parse(SHAPES));

/// Reads the generator's output; the file is ours and checked by a test,
/// so a line that does not fit is skipped rather than reported.
fn parse(text: &'static str) -> Atlas {
    let mut view_box = "0 0 1000 438";
    let mut countries = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(found) = comment.trim().strip_prefix("viewBox ") {
                view_box = found;
            }
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(code), Some(name), Some(drawing)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let drawing = if drawing.is_empty() {
            Drawing::Hidden
        } else if let Some(dot) = drawing.strip_prefix('@') {
            let (x, y) = dot.split_once(',').unwrap_or_default();
            match (x.parse(), y.parse()) {
                (Ok(x), Ok(y)) => Drawing::Dot(x, y),
                _ => Drawing::Hidden,
            }
        } else {
            Drawing::Shape(drawing)
        };
        countries.push(Country {
            code,
            name,
            drawing,
        });
    }
    Atlas {
        view_box,
        countries,
    }
}

/// The English short name of an ISO 3166-1 alpha-2 code (`DE` → Germany).
pub fn country_name(code: &str) -> Option<&'static str> {
    ATLAS
        .countries
        .iter()
        .find(|country| country.code.eq_ignore_ascii_case(code))
        .map(|country| country.name)
}

/// What the map shades countries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMeasure {
    Messages,
    Failing,
}

impl MapMeasure {
    /// `map=failing` in a query string; anything else is messages.
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("failing") => MapMeasure::Failing,
            _ => MapMeasure::Messages,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MapMeasure::Messages => "messages",
            MapMeasure::Failing => "failing",
        }
    }

    fn label(self) -> &'static str {
        match self {
            MapMeasure::Messages => "Messages by country",
            MapMeasure::Failing => "Messages failing DMARC by country",
        }
    }

    /// Light to dark: ColorBrewer's Blues and Reds (sequential, readable
    /// by most colour-blind viewers as light-to-dark steps).
    fn palette(self) -> [&'static str; 5] {
        match self {
            MapMeasure::Messages => ["#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"],
            MapMeasure::Failing => ["#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15"],
        }
    }
}

/// One country's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCount {
    /// ISO 3166-1 alpha-2, as the IP databases give it.
    pub code: String,
    pub messages: i64,
    pub failing: i64,
}

impl CountryCount {
    fn value(&self, measure: MapMeasure) -> i64 {
        match measure {
            MapMeasure::Messages => self.messages,
            MapMeasure::Failing => self.failing,
        }
    }
}

const NO_DATA: &str = "#e5e7eb";
/// Mail came from the country, none of it failing (failing map only).
const ZERO: &str = "#f7f7f7";

/// The upper bound of each colour step, up to five: steps grow by a
/// constant factor (mail volume spans orders of magnitude, so equal steps
/// would show one dark country and the rest pale) and are rounded to 1, 2
/// or 5 times a power of ten so the legend reads easily.
pub fn steps(max: i64) -> Vec<i64> {
    if max <= 0 {
        return Vec::new();
    }
    let mut bounds = Vec::new();
    for k in 1..=5 {
        let bound = if k == 5 {
            max
        } else {
            nice_ceiling((max as f64).powf(f64::from(k) / 5.0))
        };
        let bound = bound.min(max);
        if bounds.last().is_none_or(|&last| bound > last) {
            bounds.push(bound);
        }
    }
    bounds
}

fn nice_ceiling(value: f64) -> i64 {
    if value <= 1.0 {
        return 1;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&candidate| candidate >= value - 1e-9)
        .unwrap_or(10.0 * magnitude);
    nice.round() as i64
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The map and its legend as HTML: a legend list, then the SVG. `href`
/// gives the link of a country with mail.
pub fn world_map(
    counts: &[CountryCount],
    measure: MapMeasure,
    href: impl Fn(&str) -> String,
) -> String {
    let atlas = &*ATLAS;
    let by_code: std::collections::HashMap<String, &CountryCount> = counts
        .iter()
        .map(|count| (count.code.to_ascii_uppercase(), count))
        .collect();
    let max = counts.iter().map(|c| c.value(measure)).max().unwrap_or(0);
    let bounds = steps(max);
    let palette = measure.palette();
    // The darkest colours go to the top steps however few there are.
    let colours = &palette[palette.len() - bounds.len()..];
    let colour_of = |value: i64| -> &'static str {
        if value <= 0 {
            return ZERO;
        }
        bounds
            .iter()
            .position(|&bound| value <= bound)
            .map_or(palette[4], |i| colours[i])
    };

    let mut html = String::from("<figure class=\"chart world-map\"><ul class=\"legend\">");
    let mut lower = 1;
    for (bound, colour) in bounds.iter().zip(colours) {
        let range = if lower == *bound {
            grouped(*bound)
        } else {
            format!("{}–{}", grouped(lower), grouped(*bound))
        };
        let _ = write!(
            html,
            "<li><span class=\"swatch\" style=\"background:{colour}\"></span>{range}</li>"
        );
        lower = bound + 1;
    }
    if measure == MapMeasure::Failing && counts.iter().any(|c| c.messages > 0 && c.failing == 0) {
        let _ = write!(
            html,
            "<li><span class=\"swatch\" style=\"background:{ZERO};outline:1px solid #bbb\"></span>none failing</li>"
        );
    }
    let _ = write!(
        html,
        "<li><span class=\"swatch\" style=\"background:{NO_DATA}\"></span>no mail</li></ul>\
         <svg viewBox=\"{}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        atlas.view_box,
        measure.label(),
        measure.label()
    );
    let mut dots = String::new();
    for country in &atlas.countries {
        let count = by_code.get(country.code).copied();
        let title = match count {
            Some(count) => format!(
                "{} ({}): {} messages, {} failing DMARC",
                country.name,
                country.code,
                grouped(count.messages),
                grouped(count.failing)
            ),
            None => format!("{} ({}): no mail", country.name, country.code),
        };
        let fill = match count {
            Some(count) if count.messages > 0 => colour_of(count.value(measure)),
            _ => NO_DATA,
        };
        let shape = match country.drawing {
            Drawing::Shape(path) => format!(
                "<path d=\"{path}\" fill=\"{fill}\" data-country=\"{}\"><title>{}</title></path>",
                country.code,
                escape(&title)
            ),
            // A dot is drawn only with mail: dozens of grey dots would
            // clutter the Caribbean and the Pacific.
            Drawing::Dot(x, y) if count.is_some_and(|c| c.messages > 0) => format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"4\" fill=\"{fill}\" data-country=\"{}\"><title>{}</title></circle>",
                country.code,
                escape(&title)
            ),
            _ => continue,
        };
        let out = if matches!(country.drawing, Drawing::Dot(..)) {
            &mut dots
        } else {
            &mut html
        };
        match count {
            Some(count) if count.messages > 0 => {
                let _ = write!(
                    out,
                    "<a href=\"{}\">{shape}</a>",
                    escape(&href(country.code))
                );
            }
            _ => out.push_str(&shape),
        }
    }
    // Dots last, so no neighbour's shape covers them.
    html.push_str(&dots);
    html.push_str(
        "</svg><figcaption class=\"muted attribution\">Made with Natural Earth.</figcaption></figure>",
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_names_and_draws_the_countries_mail_comes_from() {
        let atlas = &*ATLAS;
        assert_eq!(atlas.view_box, "0 0 1000 438");
        assert!(atlas.countries.len() >= 240, "{}", atlas.countries.len());
        for code in ["US", "DE", "BR", "CN", "IN", "RU", "AU", "ZA", "FR", "NL"] {
            let country = atlas.countries.iter().find(|c| c.code == code).unwrap();
            assert!(matches!(country.drawing, Drawing::Shape(_)), "{code}");
        }
        // Too small for 1:110m, but big senders of mail.
        for code in ["SG", "HK", "LU", "MT", "BH", "XK"] {
            let country = atlas.countries.iter().find(|c| c.code == code).unwrap();
            assert!(
                !matches!(country.drawing, Drawing::Hidden),
                "{code} is on the map"
            );
        }
        assert_eq!(country_name("de"), Some("Germany"));
        assert_eq!(country_name("XK"), Some("Kosovo"));
        assert_eq!(country_name("ZZ"), None);
        // Every shape stays inside the view box.
        for country in &atlas.countries {
            if let Drawing::Shape(path) = country.drawing {
                assert!(
                    path.starts_with('M') && path.ends_with('z'),
                    "{}",
                    country.code
                );
            }
        }
        assert!(SHAPES.len() < 150_000);
    }

    #[test]
    fn steps_grow_by_a_factor_and_end_at_the_largest_value() {
        assert_eq!(steps(0), Vec::<i64>::new());
        assert_eq!(steps(1), vec![1]);
        assert_eq!(steps(3), vec![2, 3]);
        assert_eq!(steps(100_000), vec![10, 100, 1000, 10_000, 100_000]);
        assert_eq!(steps(12_345), vec![10, 50, 500, 2000, 12_345]);
    }

    #[test]
    fn countries_with_mail_link_and_are_shaded_by_the_chosen_measure() {
        let counts = vec![
            CountryCount {
                code: "DE".into(),
                messages: 1000,
                failing: 0,
            },
            CountryCount {
                code: "US".into(),
                messages: 10,
                failing: 10,
            },
            CountryCount {
                code: "SG".into(),
                messages: 5,
                failing: 1,
            },
        ];
        let link = |code: &str| format!("/aggregate?country={code}");
        let messages = world_map(&counts, MapMeasure::Messages, link);
        assert!(messages.contains("<a href=\"/aggregate?country=DE\"><path"));
        assert!(messages.contains("Germany (DE): 1,000 messages, 0 failing DMARC"));
        assert!(messages.contains("<a href=\"/aggregate?country=SG\"><circle"));
        assert!(messages.contains("Made with Natural Earth"));
        // France sent nothing: grey, no link.
        assert!(messages.contains(&format!("fill=\"{NO_DATA}\" data-country=\"FR\"")));
        assert!(!messages.contains("country=FR"));
        let fill_of = |html: &str, code: &str| {
            let at = html.find(&format!("data-country=\"{code}\"")).unwrap();
            let start = html[..at].rfind("fill=\"").unwrap() + 6;
            html[start..start + 7].to_string()
        };
        // Germany is the darkest on the message map and "none failing" on
        // the failing map, where the US is the darkest.
        assert_eq!(fill_of(&messages, "DE"), "#08519c");
        let failing = world_map(&counts, MapMeasure::Failing, |_| String::new());
        assert_eq!(fill_of(&failing, "DE"), ZERO);
        assert_eq!(fill_of(&failing, "US"), "#a50f15");
        assert!(failing.contains("none failing"));
    }
}
