//! PURE. The validity period of an X.509 certificate (RFC 5280 section
//! 4.1.2.5), read from its DER with a few lines of TLV walking rather
//! than a whole X.509 parser: renewal only needs notBefore and notAfter.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A DER element: its tag and contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// notBefore and notAfter of the certificate `der`.
pub fn validity(der: &[u8]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, then validity.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (before_tag, before, rest) = element(validity)?;
    let (after_tag, after, _) = element(rest)?;
    Some((time(before_tag, before)?, time(after_tag, after)?))
}

fn time(tag: u8, text: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let full = match tag {
        // Section 4.1.2.5.1: YY of 50 or more is 19YY.
        UTC_TIME => {
            let year: u32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if year >= 50 { "19" } else { "20" })
        }
        GENERALIZED_TIME => text.to_string(),
        _ => return None,
    };
    NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S")
        .ok()
        .map(|time| time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["mta-sts.example.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let der = certificate((2026, 12, 1), (2027, 3, 1));
        let (before, after) = validity(&der).unwrap();
        assert_eq!(before.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(after.to_rfc3339(), "2027-03-01T00:00:00+00:00");
        // Past 2049, RFC 5280 asks for GeneralizedTime.
        let (_, far) = validity(&certificate((2026, 1, 1), (2051, 1, 1))).unwrap();
        assert_eq!(far.to_rfc3339(), "2051-01-01T00:00:00+00:00");
    }

    #[test]
    fn broken_der_reads_as_nothing() {
        let der = certificate((2026, 12, 1), (2027, 3, 1));
        for cut in [0, 1, 10, 100, der.len() / 2] {
            assert_eq!(validity(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(validity(b"\x30\x84\xff\xff\xff\xff"), None);
    }
}
