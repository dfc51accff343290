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

    /// Adds `base_reverse_dns,name,type` rows; a header row is skipped.
    /// Returns the number of rows added.
    pub fn add_csv(&mut self, text: &str, origin: &str) -> Result<usize, SourceMapError> {
        let mut added = 0;
        for (index, line) in text.lines().enumerate() {
            let invalid = |message: String| SourceMapError::Invalid {
                origin: origin.to_string(),
                line: index + 1,
                message,
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv_line(line).map_err(invalid)?;
            let [domain, name, kind] = fields.as_slice() else {
                return Err(invalid(format!(
                    "expected 3 fields (base_reverse_dns,name,type), found {}",
                    fields.len()
                )));
            };
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if index == 0 && domain == "base_reverse_dns" {
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

/// One RFC 4180 line: fields separated by commas, optionally in double
/// quotes with `""` for a quote inside.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => quoted = true,
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            other => field.push(other),
        }
        at_field_start = false;
    }
    if quoted {
        return Err("a quoted field is not closed".to_string());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes() {
        assert_eq!(
            split_csv_line(r#"example.com,"Example, Inc. ""EX""",esp"#).unwrap(),
            vec!["example.com", "Example, Inc. \"EX\"", "esp"]
        );
        assert!(split_csv_line(r#"a,"b,c"#).is_err());
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
