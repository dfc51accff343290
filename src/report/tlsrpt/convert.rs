//! From the values read to the typed report: required fields, types,
//! dates, and the leniency real senders need (RFC 8460 §4.4's counts and
//! `policy-domain` go missing in reports from large senders; they are read
//! as 0 and as the domain the report was sent for, with a warning).

use chrono::{DateTime, Utc};

use super::read::{Ctx, ListOrScalar, RawRoot, Scalar};
use super::{FailureDetail, PolicyType, ResultType, TlsPolicyResult, TlsReport, TlsRptError};
use crate::report::text::strip_controls;

/// An object's fields as read, or what was found instead of an object.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fields {
    Object(Vec<(String, ListOrScalar)>),
    NotAnObject(Scalar),
}

pub(super) fn wrong_type(pointer: &str, expected: &'static str, found: &Scalar) -> TlsRptError {
    TlsRptError::WrongType {
        pointer: if pointer.is_empty() { "/" } else { pointer }.to_string(),
        expected,
        found: found.describe(),
    }
}

fn field_pointer(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// One object's fields with typed accessors that report errors by pointer.
struct Object<'f> {
    fields: &'f [(String, ListOrScalar)],
    pointer: &'f str,
}

impl<'f> Object<'f> {
    /// The object at `pointer`; `None` when it is absent or null.
    fn optional(fields: &'f Option<Fields>, pointer: &'f str) -> Result<Option<Self>, TlsRptError> {
        match fields {
            None | Some(Fields::NotAnObject(Scalar::Null)) => Ok(None),
            Some(Fields::NotAnObject(found)) => Err(wrong_type(pointer, "an object", found)),
            Some(Fields::Object(fields)) => Ok(Some(Object { fields, pointer })),
        }
    }

    fn required(fields: &'f Option<Fields>, pointer: &'f str) -> Result<Self, TlsRptError> {
        Object::optional(fields, pointer)?.ok_or_else(|| TlsRptError::Missing {
            pointer: pointer.to_string(),
        })
    }

    /// The field's value, `None` when absent or null.
    fn get(&self, key: &str) -> Option<&'f ListOrScalar> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .filter(|value| **value != ListOrScalar::Scalar(Scalar::Null))
    }

    fn string(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<String, TlsRptError> {
        self.optional_text(ctx, key)?
            .ok_or_else(|| TlsRptError::Missing {
                pointer: field_pointer(self.pointer, key),
            })
    }

    /// A string field, trimmed; `None` when absent or null.
    fn optional_text(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<Option<String>, TlsRptError> {
        let pointer = || field_pointer(self.pointer, key);
        match self.get(key) {
            None => Ok(None),
            Some(ListOrScalar::Scalar(Scalar::Text(text))) => {
                Ok(Some(clean(ctx, text.trim(), &pointer())))
            }
            Some(ListOrScalar::Scalar(found)) => Err(wrong_type(&pointer(), "a string", found)),
            Some(ListOrScalar::List(_)) => Err(wrong_type(&pointer(), "a string", &Scalar::Array)),
        }
    }

    /// An optional string, with an empty one read as absent.
    fn optional_string(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<Option<String>, TlsRptError> {
        Ok(self
            .optional_text(ctx, key)?
            .filter(|text| !text.is_empty()))
    }

    /// A string or an array of strings (RFC 8460's example writes `mx-host`
    /// as a string, its text and Google as an array).
    fn string_list(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<Vec<String>, TlsRptError> {
        let pointer = field_pointer(self.pointer, key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(ListOrScalar::Scalar(Scalar::Text(text))) => {
                Ok(vec![clean(ctx, text.trim(), &pointer)])
            }
            Some(ListOrScalar::List(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Scalar::Text(text) => {
                        Ok(clean(ctx, text.trim(), &format!("{pointer}/{index}")))
                    }
                    other => Err(wrong_type(&format!("{pointer}/{index}"), "a string", other)),
                })
                .collect(),
            Some(ListOrScalar::Scalar(found)) => Err(wrong_type(
                &pointer,
                "a string or an array of strings",
                found,
            )),
        }
    }

    /// A count; `None` when absent. Some generators quote numbers: a count
    /// is still a count.
    fn count(&self, key: &str) -> Result<Option<u64>, TlsRptError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let parsed = match value {
            ListOrScalar::Scalar(Scalar::Unsigned(number)) => Some(*number),
            ListOrScalar::Scalar(Scalar::Text(text)) => text.trim().parse().ok(),
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| {
            let found = match value {
                ListOrScalar::Scalar(found) => found.describe(),
                ListOrScalar::List(_) => "an array".to_string(),
            };
            TlsRptError::WrongType {
                pointer: field_pointer(self.pointer, key),
                expected: "a non-negative integer",
                found,
            }
        })
    }

    /// A count that may be missing: read as 0, with a warning once per report.
    fn count_or_zero(&self, ctx: &mut Ctx<'_>, key: &'static str) -> Result<u64, TlsRptError> {
        match self.count(key)? {
            Some(count) => Ok(count),
            None => {
                let pointer = field_pointer(self.pointer, key);
                ctx.warn_once(key, || format!("{pointer} is missing; read as 0"));
                Ok(0)
            }
        }
    }

    fn datetime(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<DateTime<Utc>, TlsRptError> {
        let text = self.string(ctx, key)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|parsed| parsed.with_timezone(&Utc))
            .map_err(|_| TlsRptError::BadDate {
                pointer: field_pointer(self.pointer, key),
                value: text,
            })
    }
}

/// The text without control characters (PostgreSQL refuses NUL, which
/// JSON can smuggle in as `\u0000`), with a warning naming where.
fn clean(ctx: &mut Ctx<'_>, text: &str, pointer: &str) -> String {
    match strip_controls(text) {
        Some(cleaned) => {
            ctx.warn(format!("removed control characters from {pointer}"));
            cleaned
        }
        None => text.to_string(),
    }
}

pub(super) fn report(ctx: &mut Ctx<'_>, root: RawRoot) -> Result<TlsReport, TlsRptError> {
    let fields: Vec<(String, ListOrScalar)> = [
        ("organization-name", root.organization_name),
        ("report-id", root.report_id),
        ("contact-info", root.contact_info),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.to_string(), ListOrScalar::Scalar(value?))))
    .collect();
    let top = Object {
        fields: &fields,
        pointer: "",
    };
    let organization_name = top.string(ctx, "organization-name")?;
    let report_id = top.string(ctx, "report-id")?;
    let contact_info = top.optional_string(ctx, "contact-info")?;
    let range = Object::required(&root.date_range, "/date-range")?;
    let begin = range.datetime(ctx, "start-datetime")?;
    let end = range.datetime(ctx, "end-datetime")?;
    let policies = root.policies.ok_or_else(|| TlsRptError::Missing {
        pointer: "/policies".to_string(),
    })?;
    Ok(TlsReport {
        organization_name,
        begin,
        end,
        contact_info,
        report_id,
        policies,
        warnings: std::mem::take(&mut ctx.warnings),
    })
}

pub(super) fn policy_result(
    ctx: &mut Ctx<'_>,
    pointer: &str,
    policy: Option<Fields>,
    summary: Option<Fields>,
    failure_details: Vec<FailureDetail>,
) -> Result<TlsPolicyResult, TlsRptError> {
    let policy_pointer = format!("{pointer}/policy");
    let policy = Object::required(&policy, &policy_pointer)?;
    let summary_pointer = format!("{pointer}/summary");
    let summary = Object::optional(&summary, &summary_pointer)?;
    let (successful_sessions, failed_sessions) = match summary {
        Some(summary) => (
            summary.count_or_zero(ctx, "total-successful-session-count")?,
            summary.count_or_zero(ctx, "total-failure-session-count")?,
        ),
        None => {
            ctx.warn_once("summary", || {
                format!("{summary_pointer} is missing; session counts read as 0")
            });
            (0, 0)
        }
    };
    let policy_domain = match policy.optional_string(ctx, "policy-domain")? {
        Some(domain) => Some(domain),
        None => {
            let hint = ctx.domain_hint.map(str::to_string);
            let missing = format!("{policy_pointer}/policy-domain is missing");
            match &hint {
                Some(domain) => ctx.warn(format!(
                    "{missing}; used {domain:?}, the domain the report was sent for"
                )),
                None => ctx.warn(format!("{missing}; the policy domain is unknown")),
            }
            hint
        }
    };
    Ok(TlsPolicyResult {
        policy_type: PolicyType::parse(&policy.string(ctx, "policy-type")?),
        policy_domain,
        policy_strings: policy.string_list(ctx, "policy-string")?,
        mx_hosts: policy.string_list(ctx, "mx-host")?,
        successful_sessions,
        failed_sessions,
        failure_details,
    })
}

/// An address in its canonical text (RFC 5952 for IPv6: `2001:db8::1`,
/// not `2001:0db8:0000:…`), so one sender is one value in filters and
/// tables; text that is no address is kept as written.
fn canonical_ip(text: String) -> String {
    text.parse::<std::net::IpAddr>()
        .map_or(text, |ip| ip.to_string())
}

pub(super) fn failure_detail(
    ctx: &mut Ctx<'_>,
    pointer: &str,
    fields: Fields,
) -> Result<FailureDetail, TlsRptError> {
    let fields = Some(fields);
    let detail = Object::required(&fields, pointer)?;
    Ok(FailureDetail {
        result_type: ResultType::parse(&detail.string(ctx, "result-type")?),
        sending_mta_ip: detail
            .optional_string(ctx, "sending-mta-ip")?
            .map(canonical_ip),
        receiving_mx_hostname: detail.optional_string(ctx, "receiving-mx-hostname")?,
        receiving_mx_helo: detail.optional_string(ctx, "receiving-mx-helo")?,
        receiving_ip: detail
            .optional_string(ctx, "receiving-ip")?
            .map(canonical_ip),
        failed_sessions: detail.count_or_zero(ctx, "failed-session-count")?,
        additional_information: detail.optional_string(ctx, "additional-information")?,
        failure_reason_code: detail.optional_string(ctx, "failure-reason-code")?,
    })
}

#[cfg(test)]
mod tests {
    /// RFC 8460's own example writes `2001:db8:abcd:0012::1`; tables,
    /// filters and the API show one sender as one value, `…:12::1`.
    #[test]
    fn addresses_are_kept_in_canonical_form() {
        let json =
            include_bytes!("../../../tests/fixtures/corpus/parsedmarc/smtp_tls/rfc8460.json");
        let report = super::super::parse_bytes(json).expect("RFC 8460 example parses");
        let senders: Vec<Option<&str>> = report
            .policies
            .iter()
            .flat_map(|policy| &policy.failure_details)
            .map(|detail| detail.sending_mta_ip.as_deref())
            .collect();
        assert!(
            senders.contains(&Some("2001:db8:abcd:12::1")),
            "{senders:?}"
        );
        assert!(senders.contains(&Some("198.51.100.62")), "{senders:?}");
        assert!(
            !senders.iter().flatten().any(|ip| ip.contains(":0012:")),
            "{senders:?}"
        );
    }
}
