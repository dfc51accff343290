//! PURE. The names of a hosted zone and what they hold. A domain owner
//! delegates with CNAMEs (`_mta-sts.example.com CNAME
//! example.com._mta-sts.<zone>`); dmarcd's DNS listener then answers the
//! TXT records under `<zone>`, and the page shows either the CNAMEs to
//! publish once or, without the listener, the TXT records themselves.

use serde::Serialize;

/// Which record a name under the hosted zone stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostedName {
    /// The zone's own name (SOA, NS).
    Apex,
    /// `<domain>._mta-sts.<zone>`: the policy id.
    MtaSts(String),
    /// `<domain>._smtp._tls.<zone>`: the TLS-RPT record.
    TlsRpt(String),
    /// `<domain>._dmarc.<zone>`: the hosted DMARC record.
    Dmarc(String),
    /// Another name inside the zone: it does not exist.
    Unknown,
}

/// The labels that follow a domain's name in the hosted zone.
const MTA_STS: &str = "._mta-sts";
const TLSRPT: &str = "._smtp._tls";
const DMARC: &str = "._dmarc";

/// What `name` is in `zone` (both any case, with or without the final
/// dot); `None` when it is outside the zone, which a server refuses.
pub fn classify(zone: &str, name: &str) -> Option<HostedName> {
    let zone = canonical(zone);
    let name = canonical(name);
    if name == zone {
        return Some(HostedName::Apex);
    }
    // "example.com._mta-sts" of "example.com._mta-sts.<zone>".
    let inside = name.strip_suffix(&zone)?.strip_suffix('.')?;
    let domain_before = |labels: &str| {
        inside
            .strip_suffix(labels)
            .filter(|domain| !domain.is_empty())
            .map(str::to_string)
    };
    Some(if let Some(domain) = domain_before(MTA_STS) {
        HostedName::MtaSts(domain)
    } else if let Some(domain) = domain_before(TLSRPT) {
        HostedName::TlsRpt(domain)
    } else if let Some(domain) = domain_before(DMARC) {
        HostedName::Dmarc(domain)
    } else {
        HostedName::Unknown
    })
}

/// Lower case, without the final dot.
pub fn canonical(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The hosted name of `domain`'s `_mta-sts` record.
pub fn mta_sts_name(zone: &str, domain: &str) -> String {
    format!("{domain}{MTA_STS}.{}", canonical(zone))
}

pub fn tlsrpt_name(zone: &str, domain: &str) -> String {
    format!("{domain}{TLSRPT}.{}", canonical(zone))
}

pub fn dmarc_name(zone: &str, domain: &str) -> String {
    format!("{domain}{DMARC}.{}", canonical(zone))
}

/// The TLS-RPT record that has reports sent here: by mail to `address`
/// and by HTTPS POST to `https_uri` (RFC 8460 section 3: several `rua`
/// URIs separated by commas).
pub fn tlsrpt_record(address: Option<&str>, https_uri: Option<&str>) -> Option<String> {
    let uris: Vec<String> = address
        .map(|address| format!("mailto:{address}"))
        .into_iter()
        .chain(https_uri.map(str::to_string))
        .collect();
    (!uris.is_empty()).then(|| format!("v=TLSRPTv1; rua={}", uris.join(",")))
}

/// One record for the domain owner to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecordToPublish {
    /// Fully qualified, with the final dot.
    pub name: String,
    /// `CNAME` or `TXT`.
    pub kind: String,
    /// The target (CNAME, with the final dot) or the text (TXT).
    pub value: String,
    /// What it is for.
    pub purpose: String,
}

/// The CNAMEs that delegate `domain`'s records to the hosted `zone`, and
/// the policy host to `policy_host` (this dmarcd's HTTPS name) if known.
pub fn delegation(
    zone: &str,
    domain: &str,
    policy_host: Option<&str>,
    with_dmarc: bool,
) -> Vec<RecordToPublish> {
    let cname = |name: String, target: String, purpose: &str| RecordToPublish {
        name: format!("{name}."),
        kind: "CNAME".to_string(),
        value: format!("{target}."),
        purpose: purpose.to_string(),
    };
    let mut records = vec![
        cname(
            format!("_mta-sts.{domain}"),
            mta_sts_name(zone, domain),
            "MTA-STS policy id, changed by dmarcd with every policy change",
        ),
        cname(
            format!("_smtp._tls.{domain}"),
            tlsrpt_name(zone, domain),
            "TLS-RPT: where senders send their TLS reports (here)",
        ),
    ];
    if with_dmarc {
        records.push(cname(
            format!("_dmarc.{domain}"),
            dmarc_name(zone, domain),
            "DMARC record, edited on this page",
        ));
    }
    if let Some(host) = policy_host {
        records.push(cname(
            format!("mta-sts.{domain}"),
            canonical(host),
            "the HTTPS host senders fetch the policy from (this dmarcd)",
        ));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "_hosted.reports.example.net";

    #[test]
    fn names_in_the_zone_are_told_apart() {
        assert_eq!(
            classify(ZONE, "_HOSTED.reports.example.net."),
            Some(HostedName::Apex)
        );
        assert_eq!(
            classify(ZONE, "example.com._mta-sts._hosted.reports.example.net."),
            Some(HostedName::MtaSts("example.com".to_string()))
        );
        assert_eq!(
            classify(
                ZONE,
                "Mail.Example.CO.uk._smtp._tls._hosted.reports.example.net"
            ),
            Some(HostedName::TlsRpt("mail.example.co.uk".to_string()))
        );
        assert_eq!(
            classify(ZONE, "example.com._dmarc._hosted.reports.example.net"),
            Some(HostedName::Dmarc("example.com".to_string()))
        );
        for unknown in [
            "_mta-sts._hosted.reports.example.net",
            "www._hosted.reports.example.net",
            "example.com._tls._hosted.reports.example.net",
        ] {
            assert_eq!(
                classify(ZONE, unknown),
                Some(HostedName::Unknown),
                "{unknown}"
            );
        }
        for outside in [
            "example.com",
            "reports.example.net",
            "x_hosted.reports.example.net",
        ] {
            assert_eq!(classify(ZONE, outside), None, "{outside}");
        }
    }

    #[test]
    fn names_made_are_names_classified() {
        assert_eq!(
            classify(ZONE, &mta_sts_name(ZONE, "example.com")),
            Some(HostedName::MtaSts("example.com".to_string()))
        );
        assert_eq!(
            classify(ZONE, &tlsrpt_name(ZONE, "example.com")),
            Some(HostedName::TlsRpt("example.com".to_string()))
        );
        assert_eq!(
            classify(ZONE, &dmarc_name(ZONE, "example.com")),
            Some(HostedName::Dmarc("example.com".to_string()))
        );
    }

    #[test]
    fn the_tlsrpt_record_lists_mail_and_https() {
        assert_eq!(
            tlsrpt_record(
                Some("tls@reports.example.net"),
                Some("https://reports.example.net/tlsrpt")
            ),
            Some(
                "v=TLSRPTv1; rua=mailto:tls@reports.example.net,https://reports.example.net/tlsrpt"
                    .to_string()
            )
        );
        assert_eq!(tlsrpt_record(None, None), None);
    }

    #[test]
    fn delegation_lists_the_cnames() {
        let records = delegation(ZONE, "example.com", Some("Reports.example.net."), true);
        let lines: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.kind, r.value))
            .collect();
        assert_eq!(
            lines,
            [
                "_mta-sts.example.com. CNAME example.com._mta-sts._hosted.reports.example.net.",
                "_smtp._tls.example.com. CNAME example.com._smtp._tls._hosted.reports.example.net.",
                "_dmarc.example.com. CNAME example.com._dmarc._hosted.reports.example.net.",
                "mta-sts.example.com. CNAME reports.example.net.",
            ]
        );
    }
}
