//! PKCE (RFC 7636) with the S256 method only: OAuth 2.1 §4.1.1 and the MCP authorization spec
//! require S256 and forbid `plain`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The only method we accept or use.
pub const S256: &str = "S256";

/// The S256 challenge of a verifier: BASE64URL(SHA256(ASCII(verifier))) (RFC 7636 §4.2).
pub fn challenge_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A verifier or challenge is 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub fn is_well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` matches the stored S256 `challenge` (compared in constant time).
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    is_well_formed(verifier)
        && crate::secret::constant_time_eq(&challenge_s256(verifier), challenge)
}

/// A fresh verifier (256 bits) and its challenge, for our own requests to TaskManager.
pub fn new_pair() -> (String, String) {
    let verifier = crate::secret::random_token(32);
    let challenge = challenge_s256(&verifier);
    (verifier, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge_s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verify_s256(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn rejects_wrong_or_malformed_verifiers() {
        let (v, c) = new_pair();
        assert!(verify_s256(&v, &c));
        assert!(!verify_s256(&format!("{v}x"), &c));
        assert!(!verify_s256("short", &challenge_s256("short")));
        assert!(!is_well_formed(&"a".repeat(129)));
        assert!(!is_well_formed(&format!("{}!", "a".repeat(43))));
    }
}
