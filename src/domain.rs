//! Domain names as dmarcd lists them under Domains: a policy domain read
//! from a report is added only if it is one, so that a report cannot plant
//! text of its choosing ("<b>pay here</b>", "example.com evil") there.

/// Whether `name` (lower-cased, without a trailing dot) is a domain name:
/// at least two labels of letters, digits and inner hyphens (RFC 1035
/// section 2.3.1; an internationalised name's U-labels pass too), each at
/// most 63 bytes, 253 in all, and a top-level label that is not all
/// digits (an IP address is not a domain).
pub fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|top| !top.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_domain_name;

    #[test]
    fn names_of_labels_pass_and_other_text_does_not() {
        for name in [
            "example.com",
            "mail-01.example.co.uk",
            "xn--bcher-kva.de",
            "bücher.de",
        ] {
            assert!(is_domain_name(name), "{name}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        for text in [
            "",
            "localhost",
            "example..com",
            ".example.com",
            "-example.com",
            "example-.com",
            "example.com evil",
            "<b>x</b>.com",
            "example.com\0",
            "192.0.2.1",
            "under_score.example",
            long_label.as_str(),
        ] {
            assert!(!is_domain_name(text), "{text:?}");
        }
    }
}
