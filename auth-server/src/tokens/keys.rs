//! Signing keys. They live in the store (private half encrypted with the vault key) so every
//! replica signs and verifies with the same set; rotation keeps the previous key published in
//! the JWKS until the tokens it signed have expired.

use crate::store::{KeyRecord, Store, StoreError};
use crate::upstream::vault::Vault;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{Value, json};
use shared::UnixTime;
use std::sync::Arc;
use tokio::sync::RwLock;

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
}

/// A key ready for use.
#[derive(Clone)]
pub struct LoadedKey {
    pub record: KeyRecord,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
}

/// The key set, cached from the store.
#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    vault: Vault,
    keys: Arc<RwLock<Vec<LoadedKey>>>,
}

/// A fresh Ed25519 key as a record (private half sealed).
pub fn generate(vault: &Vault, now: UnixTime) -> Result<KeyRecord, KeyError> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let der = signing
        .to_pkcs8_der()
        .map_err(|_| KeyError::Malformed("new".into()))?;
    let public_x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    Ok(KeyRecord {
        kid: shared::secret::random_token(12),
        alg: "EdDSA".into(),
        private_enc: vault.seal(der.as_bytes()),
        public_x,
        created_at: now,
        retired_at: None,
        expires_at: None,
    })
}

fn load(vault: &Vault, record: KeyRecord) -> Result<LoadedKey, KeyError> {
    let decoding = DecodingKey::from_ed_components(&record.public_x)
        .map_err(|_| KeyError::Malformed(record.kid.clone()))?;
    let encoding = if record.retired_at.is_none() {
        let der = vault
            .open(&record.private_enc)
            .map_err(|_| KeyError::Decrypt(record.kid.clone()))?;
        Some(EncodingKey::from_ed_der(&der))
    } else {
        None
    };
    Ok(LoadedKey {
        record,
        encoding,
        decoding,
    })
}

/// Adds a new signing key; the current one is retired and stays published until `now +
/// keep_previous` (the access-token lifetime), so tokens it signed stay verifiable.
pub async fn rotate(
    store: &dyn Store,
    vault: &Vault,
    now: UnixTime,
    keep_previous: std::time::Duration,
) -> Result<KeyRecord, KeyError> {
    let new = generate(vault, now)?;
    let retired: Vec<KeyRecord> = store
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .map(|mut k| {
            k.retired_at = Some(now);
            k.expires_at = Some(now.plus(keep_previous));
            k
        })
        .collect();
    store.rotate_keys(&new, &retired).await?;
    Ok(new)
}

impl KeyRing {
    /// Loads the keys, creating the first one if the store has none.
    pub async fn open(
        store: Arc<dyn Store>,
        vault: Vault,
        now: UnixTime,
    ) -> Result<Self, KeyError> {
        if store.list_keys().await?.is_empty() {
            store.insert_first_key(&generate(&vault, now)?).await?;
        }
        let ring = Self {
            store,
            vault,
            keys: Arc::new(RwLock::new(Vec::new())),
        };
        ring.reload().await?;
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

    /// The newest unretired key, used for signing.
    pub async fn signing_key(&self) -> Result<(String, EncodingKey), KeyError> {
        let keys = self.keys.read().await;
        keys.iter()
            .rev()
            .find_map(|k| k.encoding.clone().map(|e| (k.record.kid.clone(), e)))
            .ok_or(KeyError::NoKey)
    }

    /// The verification key for `kid`, if it is published at `now`. Reloads once on a miss.
    pub async fn decoding_key(&self, kid: &str, now: UnixTime) -> Option<DecodingKey> {
        let find = |keys: &[LoadedKey]| {
            keys.iter()
                .find(|k| k.record.kid == kid && k.record.expires_at.is_none_or(|e| e > now))
                .map(|k| k.decoding.clone())
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
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": k.record.public_x,
                    "kid": k.record.kid,
                    "alg": k.record.alg,
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": jwks })
    }
}
