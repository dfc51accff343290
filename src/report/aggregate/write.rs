//! Writes an `AggregateReport` as RFC 7489 / RFC 9990 XML. Used to generate
//! test and benchmark inputs, and by property tests that check a report
//! survives a write/parse round trip.

use std::fmt::Write as _;

use super::*;

impl AggregateReport {
    /// The report as an XML document.
    pub fn to_xml(&self) -> String {
        let mut xml = String::with_capacity(1024 + self.records.len() * 700);
        self.write_xml(&mut xml);
        xml
    }

    /// Appends the report as an XML document to `out`.
    pub fn write_xml(&self, out: &mut String) {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        match &self.namespace {
            Some(namespace) => {
                let _ = writeln!(out, "<feedback xmlns=\"{}\">", escape(namespace));
            }
            None => out.push_str("<feedback>\n"),
        }
        element(out, 1, "version", self.version.as_deref());
        self.metadata.write_xml(out);
        self.policy_published.write_xml(out);
        for extension in &self.extensions {
            out.push_str("  ");
            out.push_str(extension);
            out.push('\n');
        }
        for record in &self.records {
            record.write_xml(out);
        }
        out.push_str("</feedback>\n");
    }
}

impl ReportMetadata {
    fn write_xml(&self, out: &mut String) {
        out.push_str("  <report_metadata>\n");
        element(out, 2, "org_name", Some(&self.org_name));
        element(out, 2, "email", self.email.as_deref());
        element(
            out,
            2,
            "extra_contact_info",
            self.extra_contact_info.as_deref(),
        );
        element(out, 2, "report_id", Some(&self.report_id));
        let _ = writeln!(
            out,
            "    <date_range>\n      <begin>{}</begin>\n      <end>{}</end>\n    </date_range>",
            self.begin, self.end
        );
        for error in &self.errors {
            element(out, 2, "error", Some(error));
        }
        element(out, 2, "generator", self.generator.as_deref());
        out.push_str("  </report_metadata>\n");
    }
}

impl PolicyPublished {
    fn write_xml(&self, out: &mut String) {
        out.push_str("  <policy_published>\n");
        element(out, 2, "domain", Some(&self.domain));
        element(out, 2, "adkim", self.adkim.as_ref().map(Alignment::as_str));
        element(out, 2, "aspf", self.aspf.as_ref().map(Alignment::as_str));
        element(out, 2, "p", self.p.as_ref().map(Disposition::as_str));
        element(out, 2, "sp", self.sp.as_ref().map(Disposition::as_str));
        element(out, 2, "np", self.np.as_ref().map(Disposition::as_str));
        element(
            out,
            2,
            "pct",
            self.pct.map(|pct| pct.to_string()).as_deref(),
        );
        element(out, 2, "fo", self.fo.as_deref());
        element(out, 2, "testing", self.testing.as_deref());
        element(out, 2, "discovery_method", self.discovery_method.as_deref());
        out.push_str("  </policy_published>\n");
    }
}

impl Record {
    fn write_xml(&self, out: &mut String) {
        out.push_str("  <record>\n    <row>\n");
        let source_ip = self.source_ip.map(|ip| ip.to_string());
        let source_ip = source_ip.as_deref().or(self.invalid_source_ip.as_deref());
        element(out, 3, "source_ip", source_ip);
        let _ = writeln!(out, "      <count>{}</count>", self.count);
        let evaluated = &self.policy_evaluated;
        out.push_str("      <policy_evaluated>\n");
        element(
            out,
            4,
            "disposition",
            evaluated.disposition.as_ref().map(Disposition::as_str),
        );
        element(
            out,
            4,
            "dkim",
            evaluated.dkim.as_ref().map(DmarcResult::as_str),
        );
        element(
            out,
            4,
            "spf",
            evaluated.spf.as_ref().map(DmarcResult::as_str),
        );
        for reason in &evaluated.reasons {
            out.push_str("        <reason>\n");
            element(
                out,
                5,
                "type",
                reason.kind.as_ref().map(OverrideType::as_str),
            );
            element(out, 5, "comment", reason.comment.as_deref());
            out.push_str("        </reason>\n");
        }
        out.push_str("      </policy_evaluated>\n    </row>\n    <identifiers>\n");
        element(
            out,
            3,
            "envelope_to",
            self.identifiers.envelope_to.as_deref(),
        );
        element(
            out,
            3,
            "envelope_from",
            self.identifiers.envelope_from.as_deref(),
        );
        element(
            out,
            3,
            "header_from",
            self.identifiers.header_from.as_deref(),
        );
        out.push_str("    </identifiers>\n    <auth_results>\n");
        for dkim in &self.auth_results.dkim {
            out.push_str("      <dkim>\n");
            element(out, 4, "domain", dkim.domain.as_deref());
            element(out, 4, "selector", dkim.selector.as_deref());
            element(
                out,
                4,
                "result",
                dkim.result.as_ref().map(DkimResult::as_str),
            );
            element(out, 4, "human_result", dkim.human_result.as_deref());
            out.push_str("      </dkim>\n");
        }
        for spf in &self.auth_results.spf {
            out.push_str("      <spf>\n");
            element(out, 4, "domain", spf.domain.as_deref());
            element(out, 4, "scope", spf.scope.as_ref().map(SpfScope::as_str));
            element(out, 4, "result", spf.result.as_ref().map(SpfResult::as_str));
            element(out, 4, "human_result", spf.human_result.as_deref());
            out.push_str("      </spf>\n");
        }
        out.push_str("    </auth_results>\n");
        for extension in &self.extensions {
            out.push_str("    ");
            out.push_str(extension);
            out.push('\n');
        }
        out.push_str("  </record>\n");
    }
}

/// Writes `<name>value</name>` on its own line; nothing when the value is absent.
fn element(out: &mut String, depth: usize, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        for _ in 0..depth {
            out.push_str("  ");
        }
        let _ = writeln!(out, "<{name}>{}</{name}>", escape(value));
    }
}

fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 16);
    for character in value.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

use std::borrow::Cow;
