//! Signatures of webhooks from any system (the `webhook` receivers of #15): an HMAC of the
//! body in a header (GitHub's `X-Hub-Signature-256: sha256=<hex>`, any of SHA-1/256/512, hex
//! or base64) and Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of id.timestamp.body>`, several space-separated). Each checks every
//! configured secret (rotation) and compares in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// The hash an HMAC or a recipe's digest runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => Self::Md5,
            "sha1" => Self::Sha1,
            "sha256" => Self::Sha256,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }
}

/// The plain digest of `data` (what a signature recipe compares).
pub fn digest(alg: Algorithm, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match alg {
        Algorithm::Md5 => md5::Md5::digest(data).to_vec(),
        Algorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        Algorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        Algorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

/// Whether `given` is `expected` written in `encoding` (hex in either case), in constant
/// time over the bytes.
pub fn encoded_matches(expected: &[u8], encoding: Encoding, given: &str) -> bool {
    decode(encoding, given.trim()).is_some_and(|g| bool::from(expected.ct_eq(&g)))
}

/// Whether a static token (an API key in a header or the query) is one of `secrets`, in
/// constant time (a length mismatch is the only thing it can tell apart early).
pub fn token_matches(secrets: &[&[u8]], given: &str) -> bool {
    let given = given.trim().as_bytes();
    secrets
        .iter()
        .fold(false, |hit, s| hit | bool::from(s.ct_eq(given)))
}

fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => hex::decode(text.to_ascii_lowercase()).ok(),
        Encoding::Base64 => STANDARD.decode(text).ok(),
    }
}

/// How a signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// HMAC of the parts of a message, concatenated, under `key`.
pub fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Algorithm::Md5 => run::<hmac::Hmac<md5::Md5>>(key, parts),
        Algorithm::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Whether `given` (after `prefix`, such as `sha256=`) is the HMAC of `parts` under one of
/// `secrets`. A value that does not decode matches nothing.
pub fn hmac_matches(
    alg: Algorithm,
    encoding: Encoding,
    secrets: &[&[u8]],
    parts: &[&[u8]],
    given: &str,
    prefix: &str,
) -> bool {
    let Some(given) = given.trim().strip_prefix(prefix) else {
        return false;
    };
    let Some(given) = decode(encoding, given) else {
        return false;
    };
    secrets
        .iter()
        .any(|s| bool::from(hmac(alg, s, parts).ct_eq(&given)))
}

/// Why a Standard Webhooks request was refused (said to the log, never to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandardError {
    #[error("webhook-timestamp {0:?} is not a number of seconds")]
    BadTimestamp(String),
    #[error("webhook-timestamp is {0} s away from now, beyond the {1} s tolerance")]
    OutsideTolerance(i64, i64),
    #[error("no v1 signature in webhook-signature matches a configured secret")]
    NoMatch,
}

/// A Standard Webhooks secret as given out (`whsec_<base64>`; the prefix is optional): the
/// key bytes.
pub fn standard_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
    STANDARD
        .decode(b64)
        .map_err(|e| format!("not a whsec_<base64> secret: {e}"))
}

/// Verifies a Standard Webhooks request: the timestamp within `tolerance_s` of `now_s`, then
/// any `v1,<sig>` of the space-separated `signatures` made by any of `secrets` over
/// `{id}.{timestamp}.{body}`.
pub fn standard_verify(
    secrets: &[&[u8]],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), StandardError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| StandardError::BadTimestamp(timestamp.chars().take(40).collect()))?;
    let skew = now_s.saturating_sub(ts);
    if skew.abs() > tolerance_s {
        return Err(StandardError::OutsideTolerance(skew, tolerance_s));
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.trim().as_bytes(), b".", body];
    let matched = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            hmac_matches(
                Algorithm::Sha256,
                Encoding::Base64,
                secrets,
                &parts,
                sig,
                "",
            )
        });
    if matched {
        Ok(())
    } else {
        Err(StandardError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example ("Validating webhook deliveries").
    #[test]
    fn github_style_hmac_in_a_header() {
        let secret: &[u8] = b"It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let body: &[&[u8]] = &[b"Hello, World!"];
        let m = |secrets: &[&[u8]], given: &str, body: &[&[u8]]| {
            hmac_matches(
                Algorithm::Sha256,
                Encoding::Hex,
                secrets,
                body,
                given,
                "sha256=",
            )
        };
        assert!(m(&[secret], sig, body));
        assert!(m(
            &[b"old", secret],
            &sig.to_ascii_uppercase().replace("SHA256=", "sha256="),
            body
        ));
        assert!(!m(&[b"old"], sig, body));
        assert!(!m(&[secret], sig, &[b"Hello, World?"]));
        assert!(!m(&[secret], &sig[7..], body), "the prefix is required");
        assert!(!m(&[secret], "sha256=zz", body));
    }

    /// Digests and HMACs against Python's hashlib/hmac (independent implementations).
    #[test]
    fn digests_tokens_and_every_hmac_algorithm() {
        // python3 -c "import hashlib; print(hashlib.sha1(b'n1:{}:s3cret:1700000000').hexdigest())"
        let jdy = digest(Algorithm::Sha1, b"n1:{}:s3cret:1700000000");
        assert!(encoded_matches(
            &jdy,
            Encoding::Hex,
            "5d1584b73a513f3f0546fa51e5fc72e2cc68dc51"
        ));
        assert!(!encoded_matches(&jdy, Encoding::Hex, "00"));
        let md5 = digest(Algorithm::Md5, b"sys1pw20231115101010");
        assert!(encoded_matches(
            &md5,
            Encoding::Hex,
            "35A9D06D2BB4C2FB36F96AE5EEF42022"
        ));
        for (alg, want) in [
            (Algorithm::Md5, "ti/b0rsEYJPzFTsgk1KIRg=="),
            (Algorithm::Sha1, "oigudkjoyvfSJNZTHc2VwoCKXYk="),
            (
                Algorithm::Sha512,
                "TZSLiacRM+getZIrei7/ZJrcGgaM0pyN2WUJRvDnmXdRH1LgaTNhlBb3C+kbdWjCWKA3pdIs1ksAy8nKsfmBpg==",
            ),
        ] {
            let parts: &[&[u8]] = &[b"body"];
            assert!(
                hmac_matches(alg, Encoding::Base64, &[b"k"], parts, want, ""),
                "{alg:?}"
            );
        }
        assert!(token_matches(&[b"old", b"key-1"], " key-1 "));
        assert!(!token_matches(&[b"key-1"], "key-2"));
        assert!(!token_matches(&[], ""));
        assert_eq!(Algorithm::parse("SHA256"), Some(Algorithm::Sha256));
        assert_eq!(Encoding::parse("b64"), None);
    }

    /// The Standard Webhooks reference vector (standard-webhooks/standard-webhooks).
    #[test]
    fn standard_webhooks_vector_rotation_and_tolerance() {
        let key = standard_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let now = 1_614_265_330;
        let v = |secrets: &[&[u8]], sigs: &str, body: &[u8], now: i64| {
            standard_verify(secrets, id, ts, sigs, body, now, 300)
        };
        assert_eq!(v(&[&key], sig, body, now), Ok(()));
        // Rotation: an old secret first, a header with a stale signature and a v2 first.
        let header = format!("v2,abc v1,AAAA {sig}");
        assert_eq!(v(&[b"old", &key], &header, body, now + 299), Ok(()));
        assert_eq!(v(&[&key], sig, b"{}", now), Err(StandardError::NoMatch));
        assert_eq!(v(&[b"old"], sig, body, now), Err(StandardError::NoMatch));
        assert_eq!(
            v(&[&key], sig, body, now + 301),
            Err(StandardError::OutsideTolerance(301, 300))
        );
        assert!(matches!(
            standard_verify(&[&key], id, "soon", sig, body, now, 300),
            Err(StandardError::BadTimestamp(_))
        ));
        assert!(standard_secret("whsec_!!").is_err());
    }
}
