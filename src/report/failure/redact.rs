//! Redaction of a failure report on arrival (`retention.redact_failure_reports`,
//! issue 27): a failure report copies someone's mail. When an admin asks
//! for privacy, every address in the report keeps its domain (what DMARC is
//! about: who sent as whom, from where) and loses its local part
//! (`j.smith@example.com` → `redacted@example.com`). The original body is
//! never a field of the parsed report; the raw message that holds it is
//! deleted when the report is stored (store/save.rs).
//!
//! Message-IDs are left as they are: they name no person's mailbox but a
//! message, and they are what recognises the same report received twice
//! (key.rs).

use super::{DeliveryResult, FailureReport};

/// What a redacted local part becomes.
pub const REDACTED: &str = "redacted";

impl FailureReport {
    /// The report with the local part of every address replaced; marks it
    /// `redacted` so that the store also deletes its raw message.
    pub fn redact(&mut self) {
        let optional = [
            &mut self.user_agent,
            &mut self.identity_alignment,
            &mut self.arrival_date_raw,
            &mut self.reporting_mta,
            &mut self.original_envelope_id,
            &mut self.original_mail_from,
            &mut self.dkim_domain,
            &mut self.dkim_identity,
            &mut self.dkim_selector,
            &mut self.dkim_selector_dns,
            &mut self.report_subject,
        ];
        for value in optional.into_iter().flatten() {
            redact_in_place(value);
        }
        let lists = [
            &mut self.original_rcpt_to,
            &mut self.reported_uri,
            &mut self.authentication_results,
            &mut self.spf_dns,
        ];
        for values in lists {
            values.iter_mut().for_each(redact_in_place);
        }
        for (_, value) in &mut self.other_fields {
            redact_in_place(value);
        }
        if let Some(DeliveryResult::Unknown(raw)) = &mut self.delivery_result {
            redact_in_place(raw);
        }
        if let Some(original) = &mut self.original {
            for value in [&mut original.from, &mut original.to, &mut original.subject]
                .into_iter()
                .flatten()
            {
                redact_in_place(value);
            }
        }
        self.warnings.iter_mut().for_each(redact_in_place);
        self.redacted = true;
    }
}

fn redact_in_place(value: &mut String) {
    if value.contains('@') {
        *value = redact_addresses(value);
    }
}

/// Characters of an unquoted local part (RFC 5322 `dot-atom`), but for
/// `=`: it ends a `key=value` (`smtp.mailfrom=bounce@example.com` in
/// Authentication-Results keeps its key), and in an SRS address
/// (`SRS0=h=tt=example.org=jsmith@forwarder.example`) the part after the
/// last `=` is the original local part.
fn is_local_part_char(character: char) -> bool {
    character.is_alphanumeric() || "!#$%&'*+-/?^_`{|}~.".contains(character)
}

/// Characters of a domain (letters, digits, hyphens, dots; a literal's
/// brackets and colons).
fn is_domain_char(character: char) -> bool {
    character.is_alphanumeric() || "-.[]:".contains(character)
}

/// `text` with the local part of every address (`local@domain`, also a
/// quoted `"j smith"@domain`) replaced by `redacted`.
pub fn redact_addresses(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // Characters before `copied` are in `out` already.
    let mut copied = 0;
    for at in 0..characters.len() {
        if characters[at] != '@' || at < copied {
            continue;
        }
        let domain_ok = characters
            .get(at + 1)
            .is_some_and(|&next| is_domain_char(next) && next != '.');
        if !domain_ok {
            continue;
        }
        let start = if at > 0 && characters[at - 1] == '"' {
            // A quoted local part: back to its opening quote.
            match characters[copied..at - 1].iter().rposition(|&c| c == '"') {
                Some(open) => copied + open,
                None => continue,
            }
        } else {
            let mut start = at;
            while start > copied && is_local_part_char(characters[start - 1]) {
                start -= 1;
            }
            start
        };
        if start == at {
            continue;
        }
        out.extend(&characters[copied..start]);
        out.push_str(REDACTED);
        copied = at;
    }
    out.extend(&characters[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parts_go_and_domains_stay() {
        assert_eq!(
            redact_addresses("J. Smith <j.smith+tag@example.com>"),
            "J. Smith <redacted@example.com>"
        );
        assert_eq!(
            redact_addresses("a@one.example, \"Jane Doe\"@two.example"),
            "redacted@one.example, redacted@two.example"
        );
        assert_eq!(
            redact_addresses(
                "mx.example; dkim=pass header.i=@example.com; spf=fail smtp.mailfrom=bounce-42@mail.example"
            ),
            "mx.example; dkim=pass header.i=@example.com; spf=fail smtp.mailfrom=redacted@mail.example"
        );
        assert_eq!(
            redact_addresses("mailto:ruf@example.org"),
            "mailto:redacted@example.org"
        );
        assert_eq!(
            redact_addresses("SRS0=HHH=TT=example.org=jsmith@forwarder.example"),
            "SRS0=HHH=TT=example.org=redacted@forwarder.example"
        );
        assert_eq!(redact_addresses("no address @ all"), "no address @ all");
        assert_eq!(redact_addresses("größe@exämple.de"), "redacted@exämple.de");
        assert_eq!(redact_addresses("x@"), "x@");
    }
}
