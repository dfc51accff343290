//! PURE. The DMARC record dmarcd hosts for a domain, edited as fields on
//! the dashboard and served as TXT in `<domain>._dmarc.<zone>`. Fields
//! of RFC 7489 and of its successor RFC 9989 (`np`, `t`) are both
//! accepted: receivers ignore the tags they do not know.

use serde::{Deserialize, Serialize};

/// At most this many report addresses per tag: receivers may stop at two
/// (RFC 7489 section 6.2), and each is mail this domain owner asked for.
const MAX_URIS: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostedDmarc {
    /// `none`, `quarantine` or `reject`.
    pub p: String,
    /// Policy for subdomains (`sp`), when it differs.
    #[serde(default)]
    pub sp: Option<String>,
    /// Policy for non-existent subdomains (`np`, RFC 9989).
    #[serde(default)]
    pub np: Option<String>,
    /// Test mode (`t=y`, RFC 9989): receivers apply one step less.
    #[serde(default)]
    pub t: Option<bool>,
    /// Percentage of failing mail the policy applies to (`pct`, RFC 7489).
    #[serde(default)]
    pub pct: Option<u8>,
    /// Aggregate report addresses (`mailto:` URIs).
    #[serde(default)]
    pub rua: Vec<String>,
    /// Failure report addresses (`mailto:` URIs).
    #[serde(default)]
    pub ruf: Vec<String>,
    /// DKIM alignment: `r` (relaxed) or `s` (strict).
    #[serde(default)]
    pub adkim: Option<String>,
    /// SPF alignment: `r` or `s`.
    #[serde(default)]
    pub aspf: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct DmarcFieldError {
    pub field: &'static str,
    pub problem: String,
}

fn problem(field: &'static str, problem: impl Into<String>) -> DmarcFieldError {
    DmarcFieldError {
        field,
        problem: problem.into(),
    }
}

impl HostedDmarc {
    /// The TXT record, or the first field that is wrong.
    pub fn record(&self) -> Result<String, DmarcFieldError> {
        let mut tags = vec![("v", "DMARC1".to_string())];
        tags.push(("p", policy("p", &self.p)?));
        for (name, value) in [("sp", &self.sp), ("np", &self.np)] {
            if let Some(value) = value {
                tags.push((name, policy(name, value)?));
            }
        }
        if let Some(pct) = self.pct {
            if pct > 100 {
                return Err(problem("pct", "give a percentage from 0 to 100"));
            }
            tags.push(("pct", pct.to_string()));
        }
        if self.t == Some(true) {
            tags.push(("t", "y".to_string()));
        }
        for (name, uris) in [("rua", &self.rua), ("ruf", &self.ruf)] {
            if uris.len() > MAX_URIS {
                return Err(problem(name, format!("at most {MAX_URIS} addresses")));
            }
            if !uris.is_empty() {
                let checked: Result<Vec<String>, _> =
                    uris.iter().map(|uri| mailto(name, uri)).collect();
                tags.push((name, checked?.join(",")));
            }
        }
        for (name, value) in [("adkim", &self.adkim), ("aspf", &self.aspf)] {
            if let Some(value) = value {
                if value != "r" && value != "s" {
                    return Err(problem(name, "give r (relaxed) or s (strict)"));
                }
                tags.push((name, value.clone()));
            }
        }
        Ok(tags
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; "))
    }

    /// The fields of a stored record (written by `record`).
    pub fn from_record(text: &str) -> HostedDmarc {
        let mut fields = HostedDmarc::default();
        let list = |value: &str| -> Vec<String> {
            value
                .split(',')
                .map(|uri| uri.trim().to_string())
                .filter(|uri| !uri.is_empty())
                .collect()
        };
        for tag in text.split(';') {
            let Some((name, value)) = tag.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match name.trim() {
                "p" => fields.p = value.to_string(),
                "sp" => fields.sp = Some(value.to_string()),
                "np" => fields.np = Some(value.to_string()),
                "t" => fields.t = Some(value == "y"),
                "pct" => fields.pct = value.parse().ok(),
                "rua" => fields.rua = list(value),
                "ruf" => fields.ruf = list(value),
                "adkim" => fields.adkim = Some(value.to_string()),
                "aspf" => fields.aspf = Some(value.to_string()),
                _ => {}
            }
        }
        fields
    }
}

fn policy(field: &'static str, value: &str) -> Result<String, DmarcFieldError> {
    match value {
        "none" | "quarantine" | "reject" => Ok(value.to_string()),
        _ => Err(problem(field, "give none, quarantine or reject")),
    }
}

/// A `mailto:` report URI with an address (and an optional `!size`),
/// with nothing that would break the record (`;`, `,`, spaces, quotes).
fn mailto(field: &'static str, uri: &str) -> Result<String, DmarcFieldError> {
    let uri = uri.trim();
    let bad = || problem(field, format!("{uri:?} is not mailto:address@domain"));
    let address = uri
        .strip_prefix("mailto:")
        .or_else(|| uri.strip_prefix("MAILTO:"))
        .ok_or_else(bad)?;
    let address = address.split('!').next().unwrap_or_default();
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\' | '!');
    if local.is_empty()
        || !domain.contains('.')
        || !address.chars().all(allowed)
        || uri.len() > 254
        || !uri
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ';' && c != ',')
    {
        return Err(bad());
    }
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_in_tag_order_and_read_back() {
        let fields = HostedDmarc {
            p: "quarantine".to_string(),
            sp: Some("reject".to_string()),
            np: Some("reject".to_string()),
            t: Some(true),
            pct: Some(50),
            rua: vec!["mailto:dmarc@reports.example.net".to_string()],
            ruf: vec![],
            adkim: Some("s".to_string()),
            aspf: None,
        };
        let record = fields.record().unwrap();
        assert_eq!(
            record,
            "v=DMARC1; p=quarantine; sp=reject; np=reject; pct=50; t=y; rua=mailto:dmarc@reports.example.net; adkim=s"
        );
        assert_eq!(HostedDmarc::from_record(&record), fields);
        let (parsed, _) = crate::dns::dmarc::parse_dmarc(&record);
        assert_eq!(parsed.unwrap().policy.as_deref(), Some("quarantine"));
    }

    #[test]
    fn wrong_fields_are_named() {
        let base = HostedDmarc {
            p: "reject".to_string(),
            ..HostedDmarc::default()
        };
        let field = |fields: HostedDmarc| fields.record().unwrap_err().field;
        assert_eq!(
            field(HostedDmarc {
                p: "block".into(),
                ..base.clone()
            }),
            "p"
        );
        assert_eq!(
            field(HostedDmarc {
                pct: Some(101),
                ..base.clone()
            }),
            "pct"
        );
        assert_eq!(
            field(HostedDmarc {
                adkim: Some("x".into()),
                ..base.clone()
            }),
            "adkim"
        );
        for uri in [
            "dmarc@example.com",
            "mailto:dmarc",
            "mailto:a@b.c; p=none",
            "mailto:a@b.c,mailto:x@y.z",
            "https://example.com/",
        ] {
            assert_eq!(
                field(HostedDmarc {
                    rua: vec![uri.into()],
                    ..base.clone()
                }),
                "rua",
                "{uri}"
            );
        }
        assert!(HostedDmarc {
            rua: vec!["mailto:a@example.com!10m".into()],
            ..base
        }
        .record()
        .is_ok());
    }
}
