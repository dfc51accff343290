//! DKIM key records (`<selector>._domainkey.<domain>` TXT, RFC 6376
//! section 3.6.1; Ed25519 keys RFC 8463): key type, RSA key size, testing
//! flag, revocation.

use base64::Engine;
use serde::Serialize;

use super::finding::{Finding, RecordKind};
use super::tags::{parse_tags, shorten, tag};

const KIND: RecordKind = RecordKind::Dkim;

/// RSA keys shorter than this are ignored by major receivers (RFC 8301
/// section 3.2 makes 1024 the verifier's minimum).
pub const RSA_MIN_BITS: usize = 1024;
/// RSA keys shorter than this are weak by today's advice (RFC 8301 asks
/// signers for at least 2048).
pub const RSA_GOOD_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DkimKey {
    /// `rsa` or `ed25519` (or what the record names).
    pub key_type: String,
    /// RSA modulus length in bits; Ed25519 keys are 256.
    pub bits: Option<usize>,
    pub testing: bool,
    pub revoked: bool,
}

/// Reads a key record for `selector` and says what matters about it.
pub fn parse_dkim(selector: &str, text: &str) -> (Option<DkimKey>, Vec<Finding>) {
    let mut findings = Vec::new();
    let about = format!("The DKIM key of selector {selector}");
    let tags = match parse_tags(text) {
        Ok(tags) => tags,
        Err(problem) => {
            findings.push(Finding::error(
                KIND,
                "dkim.syntax",
                format!("{about} cannot be read ({problem}), so no signature with it verifies."),
            ));
            return (None, findings);
        }
    };
    if let Some(version) = tag(&tags, "v") {
        if version != "DKIM1" || tags.first().map(|t| t.name.as_str()) != Some("v") {
            findings.push(Finding::error(
                KIND,
                "dkim.version",
                format!(
                    "{about} has v={} where only a leading v=DKIM1 is valid.",
                    shorten(version)
                ),
            ));
            return (None, findings);
        }
    }
    let key_type = tag(&tags, "k").unwrap_or("rsa").to_ascii_lowercase();
    let testing =
        tag(&tags, "t").is_some_and(|flags| flags.split(':').any(|flag| flag.trim() == "y"));
    let Some(public_key) = tag(&tags, "p") else {
        findings.push(Finding::error(
            KIND,
            "dkim.no_key",
            format!("{about} has no p= tag, so no signature with it verifies."),
        ));
        return (None, findings);
    };
    let public_key: String = public_key.chars().filter(|c| !c.is_whitespace()).collect();
    if public_key.is_empty() {
        findings.push(Finding::warning(
            KIND,
            "dkim.revoked",
            format!("{about} is revoked (empty p=): signatures with it fail."),
        ));
        let key = DkimKey {
            key_type,
            bits: None,
            testing,
            revoked: true,
        };
        return (Some(key), findings);
    }
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&public_key) else {
        findings.push(Finding::error(
            KIND,
            "dkim.bad_key",
            format!("{about} has a p= that is not base64, so no signature with it verifies."),
        ));
        return (None, findings);
    };
    let bits = match key_type.as_str() {
        "rsa" => match rsa_modulus_bits(&der) {
            Some(bits) => Some(bits),
            None => {
                findings.push(Finding::error(
                    KIND,
                    "dkim.bad_key",
                    format!("{about} is not an RSA public key, so no signature with it verifies."),
                ));
                return (None, findings);
            }
        },
        "ed25519" if der.len() == 32 => Some(256),
        "ed25519" => {
            findings.push(Finding::error(
                KIND,
                "dkim.bad_key",
                format!("{about} is {} bytes where an Ed25519 key is 32.", der.len()),
            ));
            return (None, findings);
        }
        other => {
            findings.push(Finding::error(
                KIND,
                "dkim.key_type",
                format!(
                    "{about} has k={}, a key type receivers do not know.",
                    shorten(other)
                ),
            ));
            None
        }
    };
    match (key_type.as_str(), bits) {
        ("rsa", Some(bits)) if bits < RSA_MIN_BITS => findings.push(Finding::error(
            KIND,
            "dkim.rsa_too_short",
            format!(
                "{about} is a {bits}-bit RSA key; receivers ignore keys under {RSA_MIN_BITS} bits."
            ),
        )),
        ("rsa", Some(bits)) if bits < RSA_GOOD_BITS => findings.push(Finding::warning(
            KIND,
            "dkim.rsa_short",
            format!(
                "{about} is a {bits}-bit RSA key; {RSA_GOOD_BITS} bits is today's minimum advice."
            ),
        )),
        (key_type, Some(bits)) => findings.push(Finding::ok(
            KIND,
            "dkim.key",
            format!("{about} is a {bits}-bit {key_type} key."),
        )),
        _ => {}
    }
    if testing {
        findings.push(Finding::warning(
            KIND,
            "dkim.testing",
            format!("{about} has t=y: receivers may treat its signatures as unsigned mail."),
        ));
    }
    let key = DkimKey {
        key_type,
        bits,
        testing,
        revoked: false,
    };
    (Some(key), findings)
}

/// The modulus length of an RSA public key given as DER: a
/// SubjectPublicKeyInfo (what RFC 6376 asks for) or a bare PKCS#1
/// RSAPublicKey (which some signers publish and receivers accept).
pub fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, body, _) = read_der(der)?;
    if tag != 0x30 {
        return None;
    }
    let (first_tag, first, rest) = read_der(body)?;
    let rsa_public_key = match first_tag {
        // SubjectPublicKeyInfo: SEQUENCE { algorithm SEQUENCE, BIT STRING }
        0x30 => {
            // rsaEncryption, 1.2.840.113549.1.1.1
            const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
            let (oid_tag, oid, _) = read_der(first)?;
            if oid_tag != 0x06 || oid != RSA_OID {
                return None;
            }
            let (bits_tag, bit_string, _) = read_der(rest)?;
            if bits_tag != 0x03 || bit_string.first() != Some(&0) {
                return None;
            }
            let (tag, inner, _) = read_der(&bit_string[1..])?;
            if tag != 0x30 {
                return None;
            }
            let (modulus_tag, modulus, _) = read_der(inner)?;
            (modulus_tag == 0x02).then_some(modulus)?
        }
        // RSAPublicKey: SEQUENCE { modulus INTEGER, exponent INTEGER }
        0x02 => first,
        _ => return None,
    };
    let significant: &[u8] = {
        let start = rsa_public_key.iter().position(|&byte| byte != 0)?;
        &rsa_public_key[start..]
    };
    Some(significant.len() * 8 - significant[0].leading_zeros() as usize)
}

/// One DER element: (tag, contents, what follows).
fn read_der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first_length = *input.get(1)?;
    let (length, header) = if first_length < 0x80 {
        (usize::from(first_length), 2)
    } else {
        let count = usize::from(first_length & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, 2 + count)
    };
    let contents = input.get(header..header.checked_add(length)?)?;
    Some((tag, contents, &input[header + length..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rsa_spki;

    #[test]
    fn rsa_key_sizes_are_graded() {
        for (bits, code) in [
            (512, "dkim.rsa_too_short"),
            (1024, "dkim.rsa_short"),
            (2048, "dkim.key"),
            (4096, "dkim.key"),
        ] {
            let (key, findings) =
                parse_dkim("s1", &format!("v=DKIM1; k=rsa; p={}", rsa_spki(bits)));
            assert_eq!(key.unwrap().bits, Some(bits));
            assert_eq!(findings[0].code, code, "{bits}");
        }
    }

    #[test]
    fn revoked_testing_and_ed25519_keys() {
        let (key, findings) = parse_dkim("old", "v=DKIM1; p=");
        assert!(key.unwrap().revoked);
        assert_eq!(findings[0].code, "dkim.revoked");
        let ed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let (key, findings) = parse_dkim("ed", &format!("v=DKIM1; k=ed25519; t=y; p={ed}"));
        let key = key.unwrap();
        assert_eq!(
            (key.key_type.as_str(), key.bits, key.testing),
            ("ed25519", Some(256), true)
        );
        let codes: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["dkim.key", "dkim.testing"]);
        let (key, findings) = parse_dkim("bad", "v=DKIM1; p=!!!");
        assert!(key.is_none());
        assert_eq!(findings[0].code, "dkim.bad_key");
    }
}
