//! Whether a pulled message holds a report, to choose its archive folder.
//! PURE: the decoder walks the message's parts and containers without
//! parsing the reports (the worker does that later, from the inbox).

use std::io::Cursor;

use crate::decode::{self, DecodeError, Limits};

/// False only when the message surely holds no report (a person's mail, a
/// bounce): one that fails to decode for another reason (a corrupt zip)
/// counts as a report, and is kept as failed in the inbox to be looked at.
pub fn holds_report(raw: &[u8], limits: &Limits) -> bool {
    let mut sink = |_payload: decode::Payload<'_>| Ok::<(), DecodeError>(());
    match decode::visit_payloads(&mut Cursor::new(raw), "message", limits, &mut sink) {
        Ok(found) => found > 0,
        Err(
            DecodeError::Empty { .. }
            | DecodeError::Unrecognised { .. }
            | DecodeError::NoReport { .. }
            | DecodeError::NoReportInEmail { .. }
            | DecodeError::NoReportInArchive { .. },
        ) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_s_mail_is_no_report_and_a_report_mail_is() {
        let letter = b"From: alice@example.com\r\nTo: dmarc@example.com\r\nSubject: lunch?\r\n\r\nAre you free at noon?\r\n";
        assert!(!holds_report(letter, &Limits::default()));
        let report = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/corpus/parsedmarc/aggregate/twilight.eml"
        ))
        .unwrap();
        assert!(holds_report(&report, &Limits::default()));
    }
}
