//! Source names: the base domain of a PTR name (`amazonses.com`) mapped to
//! the sender a mail admin recognises ("Amazon SES") and its type (`esp`).
//!
//! The map shipped in `src/enrich/sources.csv` was written for dmarcd from public
//! facts; users add or override rows with their own CSV in the same
//! `base_reverse_dns,name,type` layout.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The map compiled into the binary.
const SHIPPED: &str = include_str!("sources.csv");

/// The types used by the shipped map.
pub const SOURCE_TYPES: &[&str] = &[
    "mailbox_provider",
    "esp",
    "marketing",
    "crm",
    "ticketing",
    "security_gateway",
    "forwarder",
    "hosting",
    "isp",
    "saas",
];

/// One sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceName {
    pub name: Arc<str>,
    pub kind: Arc<str>,
}

#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    by_domain: HashMap<Box<str>, SourceName>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceMapError {
    #[error("cannot read the source map {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} line {line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

impl SourceMap {
    /// The map shipped with dmarcd.
    pub fn shipped() -> Self {
        let mut map = SourceMap::default();
        map.add_csv(SHIPPED, "src/enrich/sources.csv")
            .expect("the shipped source map is valid (tested)");
        map
    }

    /// This map with the rows of a user's CSV file added (they win).
    pub fn with_csv_file(mut self, path: &Path) -> Result<Self, SourceMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceMapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.add_csv(&text, &path.display().to_string())?;
        Ok(self)
    }

    /// Adds `base_reverse_dns,name,type` rows (RFC 4180: a quoted field
    /// may hold a comma, a doubled quote or a line break); a header row
    /// is skipped, and so are blank lines and lines starting with `#`.
    /// Returns the number of rows added.
    pub fn add_csv(&mut self, text: &str, origin: &str) -> Result<usize, SourceMapError> {
        let mut rows = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let mut added = 0;
        let mut record = csv::StringRecord::new();
        loop {
            let invalid = |line: u64, message: String| SourceMapError::Invalid {
                origin: origin.to_string(),
                line: line as usize,
                message,
            };
            match rows.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    let line = error.position().map_or(0, |at| at.line());
                    return Err(invalid(line, csv_problem(&error)));
                }
            }
            // Where the row begins (a quoted line break spans lines).
            let line = record.position().map_or(0, |at| at.line());
            let invalid = |message: String| invalid(line, message);
            if record.iter().all(|field| field.trim().is_empty()) {
                continue;
            }
            let (Some(domain), Some(name), Some(kind), 3) =
                (record.get(0), record.get(1), record.get(2), record.len())
            else {
                return Err(invalid(format!(
                    "expected 3 fields (base_reverse_dns,name,type), found {}",
                    record.len()
                )));
            };
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if line == 1 && domain == "base_reverse_dns" {
                continue;
            }
            if domain.is_empty() || domain.contains(char::is_whitespace) {
                return Err(invalid(format!("{domain:?} is not a domain")));
            }
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the name is empty".to_string()));
            }
            self.by_domain.insert(
                domain.into_boxed_str(),
                SourceName {
                    name: Arc::from(name),
                    kind: Arc::from(kind.trim().to_ascii_lowercase()),
                },
            );
            added += 1;
        }
        Ok(added)
    }

    /// The sender behind a base domain.
    pub fn get(&self, base_domain: &str) -> Option<&SourceName> {
        self.by_domain.get(base_domain)
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Every (domain, sender), for listings and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SourceName)> {
        self.by_domain
            .iter()
            .map(|(domain, name)| (&**domain, name))
    }
}

/// The registrable domain of a host name by the public suffix list:
/// `mail-yw1-f41.google.com` → `google.com`, `a.b.example.co.uk` →
/// `example.co.uk`. `None` for a bare suffix or something that is not a name.
pub fn base_domain(host: &str) -> Option<&str> {
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.len() > 253 || !host.contains('.') {
        return None;
    }
    psl::domain_str(host)
}

/// What is wrong with the CSV text, without the position (the caller
/// names the line).
fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8: {err}"),
        csv::ErrorKind::Io(err) => err.to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes() {
        let mut map = SourceMap::default();
        map.add_csv(
            "example.com,\"Example, Inc. \"\"EX\"\"\",esp\n\
             example.net,\"Two\nlines\",esp\n",
            "test",
        )
        .unwrap();
        assert_eq!(
            &*map.get("example.com").unwrap().name,
            "Example, Inc. \"EX\""
        );
        assert_eq!(&*map.get("example.net").unwrap().name, "Two\nlines");
        let error = SourceMap::default()
            .add_csv("example.org,Fine,esp\na,\"b,c", "test")
            .unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    /// parsedmarc's map (`base_reverse_dns_map.csv`, 38k rows) in its
    /// layout: a header, names with commas in quotes and non-ASCII text,
    /// types such as `Web Host`.
    #[test]
    fn a_map_in_parsedmarcs_layout_of_38k_rows_loads() {
        let mut text = String::from("base_reverse_dns,name,type\n");
        for n in 0..38_628 {
            match n % 3 {
                0 => text.push_str(&format!(
                    "host{n}.com.br,\"Provedor {n}, Ltda – Região\",ISP\n"
                )),
                1 => text.push_str(&format!("mail{n}.example,Sender {n} | Інтернет,Web Host\n")),
                _ => text.push_str(&format!("esp{n}.net,ESP {n},Email Provider\n")),
            }
        }
        let mut map = SourceMap::default();
        assert_eq!(map.add_csv(&text, "parsedmarc").unwrap(), 38_628);
        let first = map.get("host0.com.br").unwrap();
        assert_eq!(&*first.name, "Provedor 0, Ltda – Região");
        assert_eq!(&*first.kind, "isp");
        assert_eq!(&*map.get("mail1.example").unwrap().kind, "web host");
    }

    #[test]
    fn base_domains_follow_the_public_suffix_list() {
        assert_eq!(base_domain("mail-yw1-f41.google.com"), Some("google.com"));
        assert_eq!(base_domain("a.b.example.co.uk."), Some("example.co.uk"));
        assert_eq!(base_domain("co.uk"), None);
        assert_eq!(base_domain("localhost"), None);
    }

    #[test]
    fn shipped_map_is_valid_and_uses_known_types() {
        let map = SourceMap::shipped();
        assert!(map.len() >= 280, "only {} rows", map.len());
        // A row that is not a registrable domain can never match a base domain.
        let mut bad = Vec::new();
        for (domain, source) in map.iter() {
            assert!(
                SOURCE_TYPES.contains(&&*source.kind),
                "{domain}: unknown type {}",
                source.kind
            );
            if base_domain(domain) != Some(domain) {
                bad.push(domain.to_string());
            }
        }
        bad.sort();
        assert!(bad.is_empty(), "not registrable domains: {bad:?}");
        // The shipped file has no duplicate rows (a later row would hide an earlier one).
        let rows = SHIPPED
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        assert_eq!(rows, map.len());
    }
}
