//! Storing leaf values into the report, and the checks once it is read.

use std::net::IpAddr;

use super::parse::AggregateError;
use super::state::ParserState;
use super::tags::Tag;
use super::*;

const DMARC_2_NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

impl ParserState {
    /// Adds a finished record, unless it says nothing: no source IP and a
    /// count of 0 (seen from some reporters as padding rows).
    #[inline]
    pub(super) fn keep_record(&mut self, record: Record) -> Result<(), AggregateError> {
        if record.source_ip.is_none() && record.invalid_source_ip.is_none() && record.count == 0 {
            self.dropped_records += 1;
            return Ok(());
        }
        self.records.push(record);
        self.check_record_count()
    }

    pub(super) fn check_record_count(&self) -> Result<(), AggregateError> {
        if self.handed_out + self.records.len() as u64 > self.max_records {
            return Err(AggregateError::TooManyRecords {
                limit: self.max_records,
            });
        }
        Ok(())
    }

    /// An element the format does not define is kept as raw XML (with the
    /// report's or the record's extensions); a warning names it, except for
    /// the places RFC 9990 opens to extensions (`<extension>`, any element
    /// at the end of a record, and the `<extensions>` some reporters write
    /// after the records).
    pub(super) fn note_unknown_element(&mut self, parent: Option<Tag>, tag: Tag, name: &[u8]) {
        let expected = tag == Tag::Extension
            || parent == Some(Tag::Record)
            || parent == Some(Tag::Feedback) && name == b"extensions";
        if expected {
            return;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let parent_name = parent.map_or("?", Tag::name);
        let path = self.path();
        self.warn_once(format!("unknown {parent_name}/{name}"), || {
            format!("kept the unknown element <{name}> in {path} as raw XML")
        });
    }

    pub(super) fn assign(
        &mut self,
        parent: Option<Tag>,
        tag: Tag,
        value: Option<&str>,
    ) -> Result<(), AggregateError> {
        let owned = || value.map(str::to_string);
        let Some(parent) = parent else { return Ok(()) };
        // Record-level strings repeat from row to row (the same domains and
        // selectors thousands of times): share one allocation per value.
        let shared = match tag {
            Tag::Comment
            | Tag::HeaderFrom
            | Tag::EnvelopeFrom
            | Tag::EnvelopeTo
            | Tag::Domain
            | Tag::Selector
            | Tag::HumanResult => value.map(|text| self.strings.intern(text)),
            _ => None,
        };
        match (parent, tag) {
            (Tag::Feedback, Tag::Version) => self.version = owned(),
            (Tag::ReportMetadata, Tag::OrgName) => self.org_name = owned(),
            (Tag::ReportMetadata, Tag::Email) => self.email = owned(),
            (Tag::ReportMetadata, Tag::ExtraContactInfo) => self.extra_contact_info = owned(),
            (Tag::ReportMetadata, Tag::ReportId) => self.report_id = owned(),
            (Tag::ReportMetadata, Tag::Error) => self.errors.extend(owned()),
            (Tag::ReportMetadata, Tag::Generator) => self.generator = owned(),
            (Tag::DateRange, Tag::Begin) => self.begin = owned(),
            (Tag::DateRange, Tag::End) => self.end = owned(),
            (Tag::PolicyPublished, _) => self.assign_policy(tag, value),
            (Tag::Row, Tag::SourceIp) => {
                if let Some(record) = &mut self.record {
                    match value.map(parse_ip) {
                        Some(Some(ip)) => record.source_ip = Some(ip),
                        Some(None) => record.invalid_source_ip = value.map(Box::from),
                        None => {}
                    }
                }
            }
            (Tag::Row, Tag::Count) => {
                let count = match value {
                    Some(text) => {
                        text.parse::<u64>()
                            .map_err(|_| AggregateError::InvalidValue {
                                path: format!("{}/count", self.path()),
                                value: text.to_string(),
                                expected: "a message count",
                            })?
                    }
                    None => 0,
                };
                if let Some(record) = &mut self.record {
                    record.count = count;
                }
            }
            (Tag::PolicyEvaluated, _) => {
                if let Some(record) = &mut self.record {
                    let evaluated = &mut record.policy_evaluated;
                    match tag {
                        Tag::Disposition => evaluated.disposition = value.map(Disposition::parse),
                        Tag::Dkim => evaluated.dkim = value.map(DmarcResult::parse),
                        Tag::Spf => evaluated.spf = value.map(DmarcResult::parse),
                        _ => {}
                    }
                }
            }
            (Tag::Reason, _) => {
                let reason = self
                    .record
                    .as_mut()
                    .and_then(|record| record.policy_evaluated.reasons.last_mut());
                if let Some(reason) = reason {
                    match tag {
                        Tag::Type => reason.kind = value.map(OverrideType::parse),
                        Tag::Comment => reason.comment = shared,
                        _ => {}
                    }
                }
            }
            (Tag::Identifiers, _) => {
                if let Some(record) = &mut self.record {
                    let identifiers = &mut record.identifiers;
                    match tag {
                        Tag::HeaderFrom => identifiers.header_from = shared,
                        Tag::EnvelopeFrom => identifiers.envelope_from = shared,
                        Tag::EnvelopeTo => identifiers.envelope_to = shared,
                        _ => {}
                    }
                }
            }
            (Tag::DkimAuth, _) => {
                let dkim = self
                    .record
                    .as_mut()
                    .and_then(|r| r.auth_results.dkim.last_mut());
                if let Some(dkim) = dkim {
                    match tag {
                        Tag::Domain => dkim.domain = shared,
                        Tag::Selector => dkim.selector = shared,
                        Tag::Result => dkim.result = value.map(DkimResult::parse),
                        Tag::HumanResult => dkim.human_result = shared,
                        _ => {}
                    }
                }
            }
            (Tag::SpfAuth, _) => {
                let spf = self
                    .record
                    .as_mut()
                    .and_then(|r| r.auth_results.spf.last_mut());
                if let Some(spf) = spf {
                    match tag {
                        Tag::Domain => spf.domain = shared,
                        Tag::Scope => spf.scope = value.map(SpfScope::parse),
                        Tag::Result => spf.result = value.map(SpfResult::parse),
                        Tag::HumanResult => spf.human_result = shared,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn assign_policy(&mut self, tag: Tag, value: Option<&str>) {
        let policy = &mut self.policy;
        let owned = || value.map(str::to_string);
        match tag {
            Tag::Domain => policy.domain = value.unwrap_or_default().to_string(),
            Tag::Adkim => policy.adkim = value.map(Alignment::parse),
            Tag::Aspf => policy.aspf = value.map(Alignment::parse),
            Tag::P => policy.p = value.map(Disposition::parse),
            Tag::Sp => policy.sp = value.map(Disposition::parse),
            Tag::Np => policy.np = value.map(Disposition::parse),
            Tag::Fo => policy.fo = owned(),
            Tag::Testing => policy.testing = value.map(str::to_ascii_lowercase),
            Tag::DiscoveryMethod => policy.discovery_method = value.map(str::to_ascii_lowercase),
            Tag::Pct => match value.map(str::parse::<u8>) {
                Some(Ok(pct)) if pct <= 100 => policy.pct = Some(pct),
                Some(_) => {
                    let raw = value.unwrap_or_default().to_string();
                    self.warn(format!("ignored <pct> {raw:?}, which is not 0-100"));
                }
                None => {}
            },
            _ => {}
        }
    }

    pub(super) fn finish(mut self) -> Result<AggregateReport, AggregateError> {
        if !self.seen_root {
            return Err(AggregateError::NoFeedbackRoot);
        }
        if !self.root_closed {
            return Err(AggregateError::Truncated { path: self.path() });
        }
        if let Some(capture) = &self.capture {
            if capture.depth > 0 {
                self.finish_capture();
            }
        }

        let report_id = self
            .report_id
            .take()
            .ok_or_else(|| missing("/feedback/report_metadata/report_id"))?;
        let begin = self.timestamp(self.begin.clone(), "begin")?;
        let end = self.timestamp(self.end.clone(), "end")?;
        if self.policy.domain.is_empty() {
            return Err(missing("/feedback/policy_published/domain"));
        }
        let org_name = match self.org_name.take() {
            Some(name) => name,
            None => {
                let fallback = self
                    .email
                    .as_deref()
                    .and_then(|email| email.rsplit_once('@'))
                    .map(|(_, domain)| domain.trim_end_matches('>').to_string())
                    .filter(|domain| !domain.is_empty())
                    .ok_or_else(|| missing("/feedback/report_metadata/org_name"))?;
                self.warn(format!(
                    "<org_name> is empty; using {fallback:?} from <email>"
                ));
                fallback
            }
        };
        if let Some(namespace) = &mut self.namespace {
            if crate::report::text::strip_controls_in_place(namespace) {
                self.warn("removed control characters from the namespace".to_string());
            }
        }
        if self.records.is_empty() && self.handed_out == 0 && self.dropped_records > 0 {
            return Err(AggregateError::EmptyReport {
                dropped: self.dropped_records,
            });
        }
        if self.dropped_records > 0 {
            let dropped = self.dropped_records;
            self.warn(format!(
                "dropped {dropped} record(s) with no source IP and a count of 0"
            ));
        }
        if end < begin {
            self.warn(format!(
                "the date range ends ({end}) before it begins ({begin})"
            ));
        }

        let schema = self.schema();
        Ok(AggregateReport {
            schema,
            version: self.version,
            namespace: self.namespace,
            metadata: ReportMetadata {
                org_name,
                email: self.email,
                extra_contact_info: self.extra_contact_info,
                report_id,
                begin,
                end,
                errors: self.errors,
                generator: self.generator,
            },
            policy_published: self.policy,
            extensions: self.extensions,
            records: self.records,
            warnings: self
                .warnings
                .into_iter()
                .map(|warning| crate::report::text::strip_controls(&warning).unwrap_or(warning))
                .collect(),
        })
    }
}

impl ParserState {
    /// The schema the document follows, from what it has shown so far.
    fn schema(&self) -> SchemaFamily {
        if self.namespace.as_deref() == Some(DMARC_2_NAMESPACE)
            || self.version.as_deref() == Some("2.0")
            || self.saw_dmarcbis_element
        {
            SchemaFamily::Rfc9990
        } else if self.version.is_some() {
            SchemaFamily::Rfc7489
        } else {
            SchemaFamily::Draft
        }
    }

    /// The report as read so far, without records, once everything that
    /// identifies it is known (metadata and policy read: they come before
    /// the records in every real report): what a sink gets with each run of
    /// records. `finish` gives the final report; its header is checked
    /// against this one by whoever stored the runs.
    pub(super) fn header_so_far(&self) -> Option<AggregateReport> {
        if !self.policy_closed || self.policy.domain.is_empty() {
            return None;
        }
        let seconds = |value: &Option<String>| {
            let value = value.as_deref()?;
            let whole = value.split_once('.').map_or(value, |(whole, _)| whole);
            whole
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| iso8601_seconds(value))
        };
        let org_name = self.org_name.clone().or_else(|| {
            self.email
                .as_deref()
                .and_then(|email| email.rsplit_once('@'))
                .map(|(_, domain)| domain.trim_end_matches('>').to_string())
                .filter(|domain| !domain.is_empty())
        })?;
        Some(AggregateReport {
            schema: self.schema(),
            version: self.version.clone(),
            namespace: self.namespace.clone(),
            metadata: ReportMetadata {
                org_name,
                email: self.email.clone(),
                extra_contact_info: self.extra_contact_info.clone(),
                report_id: self.report_id.clone()?,
                begin: seconds(&self.begin)?,
                end: seconds(&self.end)?,
                errors: self.errors.clone(),
                generator: self.generator.clone(),
            },
            policy_published: self.policy.clone(),
            extensions: self.extensions.clone(),
            records: Vec::new(),
            warnings: Vec::new(),
        })
    }
}

fn missing(path: &str) -> AggregateError {
    AggregateError::Missing {
        path: path.to_string(),
    }
}

impl ParserState {
    /// Epoch seconds; a fractional part (seen from some generators) is
    /// dropped. An ISO 8601 date-time instead of seconds (also seen) is
    /// read, with a warning.
    fn timestamp(
        &mut self,
        value: Option<String>,
        element: &'static str,
    ) -> Result<i64, AggregateError> {
        let path = format!("/feedback/report_metadata/date_range/{element}");
        let value = value.ok_or_else(|| missing(&path))?;
        let whole = value
            .split_once('.')
            .map_or(value.as_str(), |(whole, _)| whole);
        if let Ok(seconds) = whole.trim().parse::<i64>() {
            return Ok(seconds);
        }
        match iso8601_seconds(&value) {
            Some(seconds) => {
                self.warn(format!(
                    "read <{element}> {value:?} as an ISO 8601 date-time (RFC 7489 wants Unix seconds)"
                ));
                Ok(seconds)
            }
            None => Err(AggregateError::InvalidValue {
                path,
                value,
                expected: "a Unix timestamp",
            }),
        }
    }
}

/// `2024-03-30T00:00:00Z`, with an offset, with a space for the `T`, or
/// with no zone (read as UTC); or a bare date (its midnight, UTC).
fn iso8601_seconds(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.timestamp());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(parsed) = DateTime::parse_from_str(text, format) {
            return Some(parsed.timestamp());
        }
    }
    let naive = text.trim_end_matches(['Z', 'z']);
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(parsed.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc().timestamp())
}

/// IPv4 or IPv6 (compressed forms too); tolerates brackets around IPv6.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim_start_matches('[').trim_end_matches(']');
    text.parse().ok()
}
