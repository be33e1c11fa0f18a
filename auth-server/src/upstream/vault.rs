//! The vault: AES-256-GCM encryption of TaskManager's tokens (and of our signing keys and
//! grace-window successors) at rest. The key comes from configuration or is generated once
//! into the data directory with mode 0600.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use shared::UnixTime;
use std::io::Write;
use std::path::Path;

/// Why the vault could not be opened or a value not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault key must be 32 bytes, given as 64 hex characters or base64")]
    BadKey,
    #[error("vault key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("ciphertext is malformed or was encrypted with another key")]
    Decrypt,
}

/// AES-256-GCM with a random 96-bit nonce per value; stored as base64url(nonce ‖ ciphertext).
/// Also the keyed derivation of refresh-token successors (see [`Vault::successor_of`]).
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    /// HMAC key for successors, derived from the vault key (never the vault key itself).
    successor_key: [u8; 32],
}

/// Label of the successor key's derivation; a new label would change every successor.
const SUCCESSOR_LABEL: &[u8] = b"mcp-auth-server refresh-token successor v1";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault([redacted])")
    }
}

/// TaskManager's tokens for one login, as kept (encrypted) in a grant.
#[derive(Clone, Serialize, Deserialize)]
pub struct UpstreamTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<UnixTime>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn parse_key(text: &str) -> Result<[u8; 32], VaultError> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| VaultError::BadKey)?
    } else {
        STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| VaultError::BadKey)?
    };
    bytes.try_into().map_err(|_| VaultError::BadKey)
}

impl Vault {
    /// A vault from a configured key (hex or base64 of 32 bytes).
    pub fn from_key_text(text: &str) -> Result<Self, VaultError> {
        let key = parse_key(text)?;
        Ok(Self {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(key)),
            successor_key: hmac_sha256(&key, SUCCESSOR_LABEL),
        })
    }

    /// The key in `dir/vault.key`, generated (mode 0600) on first start.
    pub fn from_data_dir(dir: &Path) -> Result<Self, VaultError> {
        let path = dir.join("vault.key");
        let err = |source| VaultError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_key_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng);
                let text = URL_SAFE_NO_PAD.encode(key);
                let mut file = open_private(&path).map_err(err)?;
                file.write_all(text.as_bytes()).map_err(err)?;
                file.sync_all().map_err(err)?;
                Self::from_key_text(&text)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Encrypts `plain`.
    /// The refresh token that succeeds `token` when it rotates: HMAC-SHA256 under a key
    /// derived from the vault key. A retry within the grace window recomputes the same
    /// successor from the token it presents, so no usable refresh token is ever stored (only
    /// hashes), yet the retry gets the same answer as the first request.
    pub fn successor_of(&self, token: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac_sha256(&self.successor_key, token.as_bytes()))
    }

    pub fn seal(&self, plain: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and fresh nonce cannot fail for inputs under 64 GiB.
        let ct = self.cipher.encrypt(&nonce, plain).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts what `seal` produced.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, VaultError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| VaultError::Decrypt)?;
        if bytes.len() < 12 + 16 {
            return Err(VaultError::Decrypt);
        }
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| VaultError::Decrypt)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ct)
            .map_err(|_| VaultError::Decrypt)
    }

    /// Encrypts a string.
    pub fn seal_str(&self, plain: &str) -> String {
        self.seal(plain.as_bytes())
    }

    /// Decrypts a string.
    pub fn open_str(&self, sealed: &str) -> Result<String, VaultError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| VaultError::Decrypt)
    }

    /// Encrypts upstream tokens.
    pub fn seal_tokens(&self, tokens: &UpstreamTokens) -> String {
        self.seal(&serde_json::to_vec(tokens).unwrap_or_default())
    }

    /// Decrypts upstream tokens.
    pub fn open_tokens(&self, sealed: &str) -> Result<UpstreamTokens, VaultError> {
        serde_json::from_slice(&self.open(sealed)?).map_err(|_| VaultError::Decrypt)
    }
}

/// Creates a new file readable only by its owner.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_are_deterministic_per_token_and_key() {
        let v = Vault::from_key_text(&"ab".repeat(32)).unwrap();
        let again = Vault::from_key_text(&"ab".repeat(32)).unwrap();
        let other = Vault::from_key_text(&"cd".repeat(32)).unwrap();
        let s = v.successor_of("r0");
        assert_eq!(
            s,
            again.successor_of("r0"),
            "a retry recomputes the same successor"
        );
        assert_ne!(s, v.successor_of("r1"));
        assert_ne!(s, other.successor_of("r0"), "unknowable without the key");
        assert_eq!(s.len(), 43, "256 bits, base64url");
        // RFC 4231 test case 2 checks the HMAC itself.
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ]
        );
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let v = Vault::from_key_text(&"ab".repeat(32)).unwrap();
        let sealed = v.seal_str("upstream-secret");
        assert!(!sealed.contains("upstream-secret"));
        assert_eq!(v.open_str(&sealed).unwrap(), "upstream-secret");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        bytes[20] ^= 1;
        assert!(v.open(&URL_SAFE_NO_PAD.encode(bytes)).is_err());
        let other = Vault::from_key_text(&"cd".repeat(32)).unwrap();
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn key_file_is_generated_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Vault::from_data_dir(dir.path()).unwrap();
        let sealed = a.seal_str("x");
        let b = Vault::from_data_dir(dir.path()).unwrap();
        assert_eq!(b.open_str(&sealed).unwrap(), "x");
        let mode = std::fs::metadata(dir.path().join("vault.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Vault::from_key_text("short").is_err());
        assert!(Vault::from_key_text(&"zz".repeat(32)).is_err());
    }
}
