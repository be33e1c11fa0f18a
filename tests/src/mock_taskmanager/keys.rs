//! The mock's id_token signing key: Ed25519, generated at startup, published as an
//! RFC 8037 OKP JWK (RFC 7517) and used with JWS `alg` `EdDSA`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not encode the Ed25519 key as PKCS#8: {0}")]
    Pkcs8(String),
    #[error("could not sign a JWT: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A signing key and its public JWK.
pub struct SigningKey {
    encoding: EncodingKey,
    /// The public half, as published in the JWKS.
    pub jwk: Jwk,
}

/// An OKP public key (RFC 8037 §2).
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl SigningKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        let public = key.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638-style stable id: derived from the public key, so it names this key only.
        let kid = URL_SAFE_NO_PAD
            .encode(Sha256::digest(public))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x,
                kid,
                alg: "EdDSA",
                use_: "sig",
            },
        })
    }

    /// Signs `claims` as a compact JWS with `alg: EdDSA`, `typ: JWT` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.jwk.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}
