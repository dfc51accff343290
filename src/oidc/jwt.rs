//! ID tokens (JWS compact serialization, RFC 7515) checked against the
//! provider's published keys (a JWKS, RFC 7517): RS256 and ES256 only, the
//! two algorithms OpenID providers use; `none` and the HMAC algorithms are
//! refused (a public client secret must not sign identities). The claims
//! are checked by the caller (`mod.rs`), which knows issuer, client and nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// A provider's published keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One published key; only what RS256 and ES256 need.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default, rename = "use")]
    pub usage: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    // RSA
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    // EC
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the ID token is not a signed JWT: {0}")]
    Malformed(String),
    #[error("the ID token is signed with {0}, not RS256 or ES256")]
    Algorithm(String),
    #[error("no published key matches the ID token's key id {0:?}")]
    UnknownKey(Option<String>),
    #[error("the ID token's signature is wrong")]
    Signature,
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("its {what} is not base64url")))
}

/// The key id the token names (to refetch the keys when it is unknown).
pub fn key_id(token: &str) -> Result<Option<String>, JwtError> {
    let header = token
        .split('.')
        .next()
        .ok_or_else(|| JwtError::Malformed("no header".into()))?;
    let header: Header = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|error| JwtError::Malformed(format!("its header: {error}")))?;
    Ok(header.kid)
}

/// The token's claims, once its signature is checked with one of `keys`.
pub fn verify(token: &str, keys: &Jwks) -> Result<Value, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let header: Header = serde_json::from_slice(&decode(header_b64, "header")?)
        .map_err(|error| JwtError::Malformed(format!("its header: {error}")))?;
    let kty = match header.alg.as_str() {
        "RS256" => "RSA",
        "ES256" => "EC",
        other => return Err(JwtError::Algorithm(other.to_string())),
    };
    let candidates: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|key| key.kty == kty)
        .filter(|key| key.usage.as_deref().is_none_or(|usage| usage == "sig"))
        .filter(|key| key.alg.as_deref().is_none_or(|alg| alg == header.alg))
        .filter(|key| header.kid.is_none() || key.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey(header.kid));
    }
    let signed = format!("{header_b64}.{claims_b64}");
    let signature = decode(signature_b64, "signature")?;
    let verified = candidates
        .iter()
        .any(|key| check_signature(key, &header.alg, signed.as_bytes(), &signature));
    if !verified {
        return Err(JwtError::Signature);
    }
    serde_json::from_slice(&decode(claims_b64, "claims")?)
        .map_err(|error| JwtError::Malformed(format!("its claims: {error}")))
}

fn check_signature(key: &Jwk, alg: &str, message: &[u8], signature: &[u8]) -> bool {
    let part = |value: &Option<String>| {
        value
            .as_deref()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
    };
    match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (part(&key.n), part(&key.e)) else {
                return false;
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok()
        }
        "ES256" => {
            if key.crv.as_deref() != Some("P-256") {
                return false;
            }
            let (Some(x), Some(y)) = (part(&key.x), part(&key.y)) else {
                return false;
            };
            if x.len() != 32 || y.len() != 32 {
                return false;
            }
            // An uncompressed point: 0x04, then X and Y.
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn key_pair() -> EcdsaKeyPair {
        let random = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random).unwrap()
    }

    fn jwks(pair: &EcdsaKeyPair, kid: &str) -> Jwks {
        let point = pair.public_key().as_ref();
        serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]}))
        .unwrap()
    }

    fn sign(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_an_allowed_algorithm() {
        let (pair, other) = (key_pair(), key_pair());
        let header = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let claims = serde_json::json!({"sub": "alice"});
        let token = sign(&pair, &header, &claims);
        assert_eq!(verify(&token, &jwks(&pair, "k1")).unwrap()["sub"], "alice");
        assert_eq!(key_id(&token).unwrap().as_deref(), Some("k1"));
        assert_eq!(
            verify(&token, &jwks(&other, "k1")),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify(&token, &jwks(&pair, "k2")),
            Err(JwtError::UnknownKey(Some("k1".into())))
        );
        // A changed claim breaks the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"sub":"mallory"}"#),
            parts[2]
        );
        assert_eq!(
            verify(&forged, &jwks(&pair, "k1")),
            Err(JwtError::Signature)
        );
        // alg none and HS256 are refused whatever follows.
        for alg in ["none", "HS256"] {
            let header = serde_json::json!({"alg": alg, "kid": "k1"});
            let token = sign(&pair, &header, &claims);
            assert_eq!(
                verify(&token, &jwks(&pair, "k1")),
                Err(JwtError::Algorithm(alg.into()))
            );
        }
        assert!(matches!(
            verify("a.b", &jwks(&pair, "k1")),
            Err(JwtError::Malformed(_))
        ));
    }
}
