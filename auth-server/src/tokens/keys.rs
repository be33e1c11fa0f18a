//! Signing keys. They live in the store (private half encrypted with the vault key) so every
//! replica signs and verifies with the same set; rotation keeps the previous key published in
//! the JWKS until the tokens it signed have expired.
//!
//! Keys we generate are Ed25519 (`EdDSA`, the default) or P-256 (`ES256`). An operator may
//! instead pin the signing key with `--jwt-private-key` / `JWT_PRIVATE_KEY` (the integration
//! document's name): an Ed25519, P-256 or RSA (`RS256`, 2048 bits or more) private key in PEM.
//! A pinned key's `kid` is its RFC 7638 thumbprint, so every replica and every restart agrees
//! on it without coordination.

use crate::store::{KeyRecord, Store, StoreError};
use crate::upstream::vault::Vault;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::{Secret, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// Smallest RSA modulus we sign with (RFC 7518 §3.3 requires 2048 bits).
const MIN_RSA_BITS: usize = 2048;

/// Why keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {0} cannot be decrypted with the configured vault key")]
    Decrypt(String),
    #[error("signing key {0} is malformed")]
    Malformed(String),
    #[error("no signing key is available")]
    NoKey,
    #[error(
        "--jwt-private-key / JWT_PRIVATE_KEY: {0} (expected a PEM private key: Ed25519 or P-256 \
         in PKCS#8, P-256 in SEC1, or RSA of at least 2048 bits in PKCS#1 or PKCS#8)"
    )]
    Pem(String),
    #[error(
        "the signing key is pinned by --jwt-private-key / JWT_PRIVATE_KEY; to rotate, put the \
         new key there and restart (the previous one stays published until its tokens expire)"
    )]
    Pinned,
}

/// Algorithm of the keys the server generates (first start and `keys rotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037).
    #[default]
    #[value(name = "EdDSA", alias = "eddsa")]
    EdDsa,
    /// ECDSA with P-256 and SHA-256 (RFC 7518 §3.4).
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

/// How the key ring gets its signing key.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// Algorithm of generated keys.
    pub alg: SigningAlg,
    /// A PEM private key that must be the signing key, if the operator pinned one.
    pub pinned: Option<Secret<String>>,
    /// How long a replaced key stays published (the access-token lifetime).
    pub keep_previous: Duration,
}

/// A private key and its public JWK members, before sealing.
struct Material {
    alg: Algorithm,
    /// PKCS#8 DER (EdDSA, ES256) or PKCS#1 DER (RS256): what jsonwebtoken signs with.
    private_der: Vec<u8>,
    public_x: String,
    public_y: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        _ => "EdDSA",
    }
}

impl Material {
    fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let bad = |_| KeyError::Malformed("new".into());
        match alg {
            SigningAlg::EdDsa => {
                Self::ed25519(&ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
                    .map_err(bad)
            }
            SigningAlg::Es256 => {
                Self::p256(&p256::SecretKey::random(&mut rand::rngs::OsRng)).map_err(bad)
            }
        }
    }

    fn ed25519(key: &ed25519_dalek::SigningKey) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        Ok(Self {
            alg: Algorithm::EdDSA,
            private_der: der.as_bytes().to_vec(),
            public_x: b64(&key.verifying_key().to_bytes()),
            public_y: None,
        })
    }

    fn p256(key: &p256::SecretKey) -> Result<Self, String> {
        use p256::pkcs8::EncodePrivateKey;
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let point = key.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("the P-256 public key has no affine coordinates".into());
        };
        Ok(Self {
            alg: Algorithm::ES256,
            private_der: der.as_bytes().to_vec(),
            public_x: b64(x),
            public_y: Some(b64(y)),
        })
    }

    fn rsa(key: &rsa::RsaPrivateKey) -> Result<Self, String> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            ));
        }
        let der = key.to_pkcs1_der().map_err(|e| e.to_string())?;
        Ok(Self {
            alg: Algorithm::RS256,
            private_der: der.as_bytes().to_vec(),
            public_x: b64(&key.n().to_bytes_be()),
            public_y: Some(b64(&key.e().to_bytes_be())),
        })
    }

    /// Reads a PEM private key of any supported kind.
    fn from_pem(pem: &str) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePrivateKey;
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let pem = pem.trim();
        let label = pem
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-----BEGIN "))
            .and_then(|l| l.strip_suffix("-----"))
            .ok_or_else(|| KeyError::Pem("not a PEM document".into()))?;
        let made = match label {
            "PRIVATE KEY" => {
                if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                    Self::ed25519(&k)
                } else if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
                    Self::p256(&k)
                } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                    Self::rsa(&k)
                } else {
                    Err("a PKCS#8 key of an unsupported type, or a damaged one".into())
                }
            }
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(pem)
                .map_err(|_| "an EC key that is not on P-256, or a damaged one".to_owned())
                .and_then(|k| Self::p256(&k)),
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|_| "a damaged RSA key".to_owned())
                .and_then(|k| Self::rsa(&k)),
            "ENCRYPTED PRIVATE KEY" => Err("an encrypted key; decrypt it first".into()),
            other => Err(format!("a PEM `{other}`, not a private key")),
        };
        made.map_err(KeyError::Pem)
    }

    /// The RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let y = self.public_y.as_deref().unwrap_or_default();
        let canonical = match self.alg {
            Algorithm::ES256 => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{y}"}}"#,
                self.public_x
            ),
            Algorithm::RS256 => format!(r#"{{"e":"{y}","kty":"RSA","n":"{}"}}"#, self.public_x),
            _ => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.public_x),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    fn into_record(self, kid: String, vault: &Vault, now: UnixTime) -> KeyRecord {
        KeyRecord {
            kid,
            alg: alg_name(self.alg).into(),
            private_enc: vault.seal(&self.private_der),
            public_x: self.public_x,
            public_y: self.public_y,
            created_at: now,
            retired_at: None,
            expires_at: None,
        }
    }
}

/// A fresh key of `alg` as a record (private half sealed).
pub fn generate(vault: &Vault, now: UnixTime, alg: SigningAlg) -> Result<KeyRecord, KeyError> {
    Ok(Material::generate(alg)?.into_record(shared::secret::random_token(12), vault, now))
}

/// The record of a pinned PEM key; its `kid` is the RFC 7638 thumbprint.
pub fn import_pem(vault: &Vault, now: UnixTime, pem: &str) -> Result<KeyRecord, KeyError> {
    let material = Material::from_pem(pem)?;
    let kid = material.thumbprint();
    Ok(material.into_record(kid, vault, now))
}

/// Checks that `pem` is a usable private key, without keeping it.
pub fn check_pem(pem: &str) -> Result<(), KeyError> {
    Material::from_pem(pem).map(drop)
}

/// A key ready for use.
#[derive(Clone)]
pub struct LoadedKey {
    pub record: KeyRecord,
    pub alg: Algorithm,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
}

fn load(vault: &Vault, record: KeyRecord) -> Result<LoadedKey, KeyError> {
    let malformed = || KeyError::Malformed(record.kid.clone());
    let y = || record.public_y.as_deref().ok_or_else(malformed);
    let (alg, decoding) = match record.alg.as_str() {
        "EdDSA" => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_components(&record.public_x),
        ),
        "ES256" => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(&record.public_x, y()?),
        ),
        "RS256" => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(&record.public_x, y()?),
        ),
        _ => return Err(malformed()),
    };
    let decoding = decoding.map_err(|_| malformed())?;
    let encoding = if record.retired_at.is_none() {
        let der = vault
            .open(&record.private_enc)
            .map_err(|_| KeyError::Decrypt(record.kid.clone()))?;
        Some(match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der),
            Algorithm::RS256 => EncodingKey::from_rsa_der(&der),
            _ => EncodingKey::from_ed_der(&der),
        })
    } else {
        None
    };
    Ok(LoadedKey {
        record,
        alg,
        encoding,
        decoding,
    })
}

/// Makes `new` the signing key; the current one is retired and stays published until `now +
/// keep_previous` (the access-token lifetime), so tokens it signed stay verifiable.
pub async fn rotate_to(
    store: &dyn Store,
    new: &KeyRecord,
    now: UnixTime,
    keep_previous: Duration,
) -> Result<(), KeyError> {
    let retired: Vec<KeyRecord> = store
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| k.retired_at.is_none() && k.kid != new.kid)
        .map(|mut k| {
            k.retired_at = Some(now);
            k.expires_at = Some(now.plus(keep_previous));
            k
        })
        .collect();
    store.rotate_keys(new, &retired).await?;
    Ok(())
}

/// The operator's `keys rotate`: a new generated key takes over signing. Refused while the
/// signing key is pinned, since the next start would put the pinned key back.
pub async fn rotate(
    store: &dyn Store,
    vault: &Vault,
    now: UnixTime,
    policy: &KeyPolicy,
) -> Result<KeyRecord, KeyError> {
    if policy.pinned.is_some() {
        return Err(KeyError::Pinned);
    }
    let new = generate(vault, now, policy.alg)?;
    rotate_to(store, &new, now, policy.keep_previous).await?;
    Ok(new)
}

/// The key ring, cached from the store.
#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    vault: Vault,
    keys: Arc<RwLock<Vec<LoadedKey>>>,
}

impl KeyRing {
    /// Loads the keys. With a pinned key, makes it the signing key unless it already is;
    /// otherwise creates the first key if the store has none.
    pub async fn open(
        store: Arc<dyn Store>,
        vault: Vault,
        now: UnixTime,
        policy: &KeyPolicy,
    ) -> Result<Self, KeyError> {
        let existing = store.list_keys().await?;
        if let Some(pem) = &policy.pinned {
            let pinned = import_pem(&vault, now, pem.expose())?;
            let current = existing
                .iter()
                .any(|k| k.kid == pinned.kid && k.retired_at.is_none());
            if !current && !store.insert_first_key(&pinned).await? {
                rotate_to(store.as_ref(), &pinned, now, policy.keep_previous).await?;
                tracing::info!(kid = %pinned.kid, alg = %pinned.alg, "the pinned key now signs; the previous key stays published until its tokens expire");
            }
        } else if existing.is_empty() {
            store
                .insert_first_key(&generate(&vault, now, policy.alg)?)
                .await?;
        }
        let ring = Self {
            store,
            vault,
            keys: Arc::new(RwLock::new(Vec::new())),
        };
        ring.reload().await?;
        if policy.pinned.is_none()
            && let Some(current) = ring.keys.read().await.iter().find(|k| k.encoding.is_some())
            && current.record.alg != alg_name(algorithm(policy.alg))
        {
            tracing::warn!(
                kid = %current.record.kid,
                signing = %current.record.alg,
                configured = alg_name(algorithm(policy.alg)),
                "the signing key's algorithm differs from --signing-alg; `auth-server keys rotate` switches"
            );
        }
        Ok(ring)
    }

    /// Re-reads the key set from the store (another replica or the operator may have rotated).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let records = self.store.list_keys().await?;
        let loaded = records
            .into_iter()
            .map(|r| load(&self.vault, r))
            .collect::<Result<Vec<_>, _>>()?;
        *self.keys.write().await = loaded;
        Ok(())
    }

    /// The newest unretired key, used for signing: its `kid`, algorithm and key.
    pub async fn signing_key(&self) -> Result<(String, Algorithm, EncodingKey), KeyError> {
        let keys = self.keys.read().await;
        keys.iter()
            .rev()
            .find_map(|k| k.encoding.clone().map(|e| (k.record.kid.clone(), k.alg, e)))
            .ok_or(KeyError::NoKey)
    }

    /// The algorithm and verification key for `kid`, if it is published at `now`. Reloads
    /// once on a miss.
    pub async fn decoding_key(&self, kid: &str, now: UnixTime) -> Option<(Algorithm, DecodingKey)> {
        let find = |keys: &[LoadedKey]| {
            keys.iter()
                .find(|k| k.record.kid == kid && k.record.expires_at.is_none_or(|e| e > now))
                .map(|k| (k.alg, k.decoding.clone()))
        };
        if let Some(k) = find(&self.keys.read().await) {
            return Some(k);
        }
        if self.reload().await.is_err() {
            return None;
        }
        find(&self.keys.read().await)
    }

    /// The JWKS document (RFC 7517): every key still published at `now`.
    pub async fn jwks(&self, now: UnixTime) -> Value {
        let keys = self.keys.read().await;
        let jwks: Vec<Value> = keys
            .iter()
            .filter(|k| k.record.expires_at.is_none_or(|e| e > now))
            .map(|k| public_jwk(&k.record))
            .collect();
        json!({ "keys": jwks })
    }
}

fn algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::EdDsa => Algorithm::EdDSA,
        SigningAlg::Es256 => Algorithm::ES256,
    }
}

/// The public JWK of a key (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
fn public_jwk(r: &KeyRecord) -> Value {
    let common = |mut v: Value| {
        v["kid"] = json!(r.kid);
        v["alg"] = json!(r.alg);
        v["use"] = json!("sig");
        v
    };
    let y = r.public_y.as_deref().unwrap_or_default();
    common(match r.alg.as_str() {
        "ES256" => json!({ "kty": "EC", "crv": "P-256", "x": r.public_x, "y": y }),
        "RS256" => json!({ "kty": "RSA", "n": r.public_x, "e": y }),
        _ => json!({ "kty": "OKP", "crv": "Ed25519", "x": r.public_x }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::from_key_text(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Es256] {
            let record = generate(&vault(), UnixTime(1), alg).unwrap();
            let key = load(&vault(), record).unwrap();
            let claims = json!({"sub": "s", "exp": 4_000_000_000u64});
            let jwt = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(key.alg),
                &claims,
                key.encoding.as_ref().unwrap(),
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(key.alg);
            v.required_spec_claims.clear();
            jsonwebtoken::decode::<Value>(&jwt, &key.decoding, &v).unwrap();
        }
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1: the example RSA key's thumbprint.
        let material = Material {
            alg: Algorithm::RS256,
            private_der: Vec::new(),
            public_x: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            public_y: Some("AQAB".into()),
        };
        assert_eq!(
            material.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn pem_errors_say_what_is_wrong() {
        for (pem, says) in [
            ("hello", "not a PEM document"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "not a private key",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
                "decrypt it first",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                "unsupported type",
            ),
        ] {
            let e = import_pem(&vault(), UnixTime(1), pem).err().unwrap();
            assert!(e.to_string().contains(says), "{pem}: {e}");
        }
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let e = import_pem(&vault(), UnixTime(1), &pem).err().unwrap();
        assert!(e.to_string().contains("1024 bits"), "{e}");
    }

    #[test]
    fn each_pem_form_imports_with_a_stable_kid() {
        use p256::pkcs8::EncodePrivateKey as _;
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        let lf = p256::pkcs8::LineEnding::LF;
        let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let ed = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (
                ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&ed, lf)
                    .unwrap()
                    .to_string(),
                "EdDSA",
            ),
            (ec.to_pkcs8_pem(lf).unwrap().to_string(), "ES256"),
            (ec.to_sec1_pem(lf).unwrap().to_string(), "ES256"),
            (
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&rsa_key, lf)
                    .unwrap()
                    .to_string(),
                "RS256",
            ),
            (rsa_key.to_pkcs1_pem(lf).unwrap().to_string(), "RS256"),
        ];
        for (pem, alg) in cases {
            let a = import_pem(&vault(), UnixTime(1), &pem).unwrap();
            let b = import_pem(&vault(), UnixTime(2), &pem).unwrap();
            assert_eq!(a.alg, alg);
            assert_eq!(a.kid, b.kid, "the kid is the key's thumbprint");
            assert_eq!(a.kid.len(), 43);
            let loaded = load(&vault(), a).unwrap();
            let jwt = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(loaded.alg),
                &json!({"sub": "s"}),
                loaded.encoding.as_ref().unwrap(),
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(loaded.alg);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<Value>(&jwt, &loaded.decoding, &v).unwrap();
        }
    }
}
