//! Time-based one-time passwords (RFC 6238, the six-digit codes of
//! authenticator apps) for the optional second sign-in step of local
//! accounts: HMAC-SHA1 over 30-second steps, as every app expects. A code
//! is accepted one step early or late (clock drift) and only once: the
//! caller stores the step a code was used at and passes it back.

use data_encoding::BASE32_NOPAD;
use ring::hmac;

/// Seconds per step, and digits per code: what authenticator apps assume
/// when the otpauth URI says nothing else.
pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: usize = 6;

/// A new secret: 20 random bytes (RFC 4226's recommended size), base32
/// as apps want it typed.
pub fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 20];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    BASE32_NOPAD.encode(&bytes)
}

/// The code of `secret` (base32) at time step `step`; None when the
/// secret is not base32.
pub fn code_at(secret: &str, step: i64) -> Option<String> {
    let key = BASE32_NOPAD
        .decode(secret.trim().to_ascii_uppercase().as_bytes())
        .ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let digest = hmac::sign(&key, &step.to_be_bytes());
    let digest = digest.as_ref();
    // RFC 4226 §5.3, dynamic truncation.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let number = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!(
        "{:0width$}",
        number % 10u32.pow(DIGITS as u32),
        width = DIGITS
    ))
}

/// The time step of Unix time `seconds`.
pub fn step_of(seconds: i64) -> i64 {
    seconds.div_euclid(STEP_SECONDS)
}

/// The step `code` belongs to, at Unix time `now`, if it is right (this
/// step, the one before or the one after) and later than `last_used`.
pub fn verify(secret: &str, code: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    [current - 1, current, current + 1]
        .into_iter()
        .filter(|step| last_used.is_none_or(|last| *step > last))
        .find(|step| {
            code_at(secret, *step).is_some_and(|expected| {
                use subtle::ConstantTimeEq;
                bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
            })
        })
}

/// The `otpauth://` URI an authenticator app reads (typed, or as a QR
/// code made from it).
pub fn uri(issuer: &str, account: &str, secret: &str) -> String {
    let label = format!("{issuer}:{account}");
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        encode(&label).replace('+', "%20"),
        encode(issuer).replace('+', "%20"),
    )
}

/// The QR code of `uri` as an SVG element, for an authenticator app's
/// camera. The SVG holds only the code's squares, never the text.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret, "12345678901234567890".
    fn rfc_secret() -> String {
        BASE32_NOPAD.encode(b"12345678901234567890")
    }

    #[test]
    fn codes_match_rfc_6238_test_vectors() {
        // The RFC gives eight digits; six are their last six.
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                code_at(&rfc_secret(), step_of(time)).unwrap(),
                eight[2..],
                "{time}"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_only_once() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = step_of(now);
        let code = code_at(&secret, step).unwrap();
        assert_eq!(verify(&secret, &code, now, None), Some(step));
        assert_eq!(verify(&secret, &code, now + 30, None), Some(step));
        assert_eq!(verify(&secret, &code, now - 30, None), Some(step));
        assert_eq!(verify(&secret, &code, now + 90, None), None, "too late");
        assert_eq!(verify(&secret, &code, now, Some(step)), None, "replayed");
        assert_eq!(verify(&secret, "12 34", now, None), None);
        assert_eq!(verify(&secret, "abcdef", now, None), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(&secret, &spaced, now, None), Some(step));
    }

    #[test]
    fn secrets_are_new_base32_and_the_uri_names_them() {
        let (one, two) = (new_secret(), new_secret());
        assert_ne!(one, two);
        assert_eq!(one.len(), 32);
        assert!(code_at(&one, 1).is_some());
        let uri = uri("dmarcd", "alice smith", &one);
        assert!(
            uri.starts_with("otpauth://totp/dmarcd%3Aalice%20smith?secret="),
            "{uri}"
        );
        assert!(
            uri.ends_with("&issuer=dmarcd&algorithm=SHA1&digits=6&period=30"),
            "{uri}"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(
            svg.contains("<svg") && !svg.contains(&one),
            "the key is not in the SVG as text"
        );
    }
}
