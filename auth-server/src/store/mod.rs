//! All durable state of the auth server behind one trait. Each method is one atomic step, so
//! two replicas (or two concurrent requests) can never both redeem one code, take one state or
//! rotate one refresh token. Opaque secrets are keyed only by their hash ([`TokenHash`]).

#[cfg(test)]
pub mod contract;
pub mod sled;
pub mod sweep;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shared::UnixTime;
use shared::secret::TokenHash;

/// A failure of the storage backend itself (never "not found": that is `None`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<::sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: ::sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            ::sled::transaction::TransactionError::Abort(e) => e,
            ::sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A registered MCP client (RFC 7591 metadata as we accepted it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    /// SHA-256 of the client secret; `None` for public clients (`token_endpoint_auth_method: none`).
    pub secret_hash: Option<TokenHash>,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: String,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// Hash of the registration metadata: identical repeat registrations find their twin.
    pub fingerprint: String,
    pub created_at: UnixTime,
    /// Set the first time the client obtains a token; until then the registration expires.
    pub first_used_at: Option<UnixTime>,
    /// A never-used registration is swept after this time.
    pub unused_expires_at: UnixTime,
}

/// An authorization request that passed validation and waits for the user's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub client_id: String,
    pub redirect_uri: String,
    /// The client's `state`, echoed back verbatim.
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub scope: String,
    /// Random value stored in the browser session that started the flow.
    pub browser_binding: String,
    pub expires_at: UnixTime,
}

/// An approved request sent to TaskManager, keyed by the hash of our upstream `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStateRecord {
    pub pending: PendingRecord,
    /// Our own PKCE verifier for TaskManager (RFC 7636), encrypted with the vault key.
    pub upstream_verifier_enc: String,
    /// OpenID Connect nonce sent to TaskManager.
    pub nonce: String,
    pub expires_at: UnixTime,
}

/// Our authorization code, bound to everything the token request must repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scope: String,
    pub sub: String,
    /// The user's human-readable name, if TaskManager told one.
    #[serde(default)]
    pub username: Option<String>,
    pub grant_id: String,
    pub expires_at: UnixTime,
    /// Set atomically by the first redemption: the family its tokens belong to.
    pub redeemed_family: Option<String>,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First redemption: the code is now marked with the new family.
    Fresh(CodeRecord),
    /// Redeemed before: its family must be revoked (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
    AlreadyRedeemed { family_id: String },
    /// Unknown or expired.
    Unknown,
}

/// A login's refresh-token family: every token descended from one authorization code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub family_id: String,
    pub client_id: String,
    pub sub: String,
    /// The user's human-readable name, if TaskManager told one (RFC 7662 `username`).
    #[serde(default)]
    pub username: Option<String>,
    pub grant_id: String,
    pub resource: String,
    pub scope: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    pub expires_at: UnixTime,
}

/// One refresh token of a family, keyed by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub family_id: String,
    pub client_id: String,
    /// Scope of this token (may be narrower than the family's after a narrowing refresh).
    pub scope: String,
    pub expires_at: UnixTime,
    /// Set when rotated: the successor, kept encrypted for the grace window only.
    pub rotated: Option<RotatedTo>,
}

/// The successor of a rotated refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedTo {
    pub at: UnixTime,
    /// The successor's hash: a grace retry is allowed only while the successor is unrotated.
    pub successor_hash: TokenHash,
    /// The successor's scope. The successor itself is not stored: a retry recomputes it from
    /// the presented token (`Vault::successor_of`) and it must hash to `successor_hash`.
    pub successor_scope: String,
}

/// What rotating a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// `old` was active and is now rotated to the new token.
    Rotated {
        old: RefreshRecord,
        family: FamilyRecord,
    },
    /// `old` was rotated less than the grace window ago (and its successor is still unused):
    /// answer with the same successor. A window of 0 disables the grace.
    Grace {
        old: RefreshRecord,
        family: FamilyRecord,
        rotated: RotatedTo,
    },
    /// `old` was rotated before the grace window, or its family is revoked: revoke the family.
    Reused { family_id: String },
    /// Unknown or expired.
    Unknown,
}

/// State of an upstream grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    /// TaskManager refused to refresh: the user must log in again.
    NeedsReauthorization,
}

/// TaskManager's tokens for one login, encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant_id: String,
    pub sub: String,
    /// `UpstreamTokens` as JSON, AES-256-GCM encrypted (see `upstream::vault`).
    pub tokens_enc: String,
    pub access_expires_at: Option<UnixTime>,
    pub status: GrantStatus,
    /// Bumped by every update; updates are compare-and-swap on it.
    pub version: u64,
    /// Whether the last change was an upstream refresh (for `auth_status`).
    pub refreshed: bool,
    pub updated_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A signing key, private half encrypted with the vault key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    /// Private half: PKCS#8 DER (EdDSA, ES256) or PKCS#1 DER (RS256), sealed by the vault.
    pub private_enc: String,
    /// First public JWK member, base64url: `x` (OKP, EC) or `n` (RSA).
    pub public_x: String,
    /// Second public JWK member, base64url: `y` (EC) or `e` (RSA); none for OKP.
    #[serde(default)]
    pub public_y: Option<String>,
    pub created_at: UnixTime,
    /// Set when a newer key took over signing; the key stays published until `expires_at`.
    pub retired_at: Option<UnixTime>,
    pub expires_at: Option<UnixTime>,
}

/// A browser session (tower-sessions record, serialised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub data: String,
    pub expires_at: UnixTime,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub removed: u64,
}

/// All durable state of the auth server. Each method is one atomic step.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    // Clients (RFC 7591).
    /// Inserts or replaces a client; durable before it returns.
    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    async fn get_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// A never-used client registered with the same metadata fingerprint, if any.
    async fn find_unused_client(
        &self,
        fingerprint: &str,
    ) -> Result<Option<ClientRecord>, StoreError>;
    /// Records first use (stops the unused-registration expiry). Idempotent.
    async fn mark_client_used(&self, client_id: &str, now: UnixTime) -> Result<(), StoreError>;

    // Pending authorizations (authorize → consent).
    async fn insert_pending(&self, id: &TokenHash, rec: &PendingRecord) -> Result<(), StoreError>;
    async fn get_pending(
        &self,
        id: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PendingRecord>, StoreError>;
    /// Removes and returns; of two concurrent calls exactly one sees `Some`.
    async fn take_pending(
        &self,
        id: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<PendingRecord>, StoreError>;

    // Upstream state (consent → TaskManager → callback).
    async fn insert_upstream_state(
        &self,
        state: &TokenHash,
        rec: &UpstreamStateRecord,
    ) -> Result<(), StoreError>;
    /// Removes and returns; single use, expired ones are `None`.
    async fn take_upstream_state(
        &self,
        state: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<UpstreamStateRecord>, StoreError>;

    // Authorization codes.
    /// Durable before it returns (the client is about to redeem it).
    async fn insert_code(&self, code: &TokenHash, rec: &CodeRecord) -> Result<(), StoreError>;
    /// Marks the code redeemed by `family_id`; exactly one concurrent caller sees `Fresh`.
    async fn redeem_code(
        &self,
        code: &TokenHash,
        family_id: &str,
        now: UnixTime,
    ) -> Result<CodeRedemption, StoreError>;

    // Refresh-token families.
    /// Creates a family with its first refresh token (if the client may refresh), atomically;
    /// durable before it returns. If the family was revoked before it existed (its code was
    /// replayed while the first redemption was still under way), it is created revoked.
    async fn insert_family(
        &self,
        family: &FamilyRecord,
        refresh: Option<(&TokenHash, &RefreshRecord)>,
    ) -> Result<(), StoreError>;
    async fn get_family(&self, family_id: &str) -> Result<Option<FamilyRecord>, StoreError>;
    /// Rotates `old` to `new` (see [`Rotation`]); exactly one concurrent caller sees `Rotated`.
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        new_rec: &RefreshRecord,
        rotated: &RotatedTo,
        grace_secs: u64,
        now: UnixTime,
    ) -> Result<Rotation, StoreError>;
    /// The record of a refresh token, if it exists and is unexpired.
    async fn get_refresh(
        &self,
        token: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<RefreshRecord>, StoreError>;
    /// Revokes every access and refresh token of the family. Idempotent. A family that does
    /// not exist yet is remembered as revoked (for at least an hour), so its later
    /// `insert_family` creates it revoked: checking and remembering are one atomic step.
    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<(), StoreError>;

    // Access-token revocation list (RFC 7009), keyed by `jti`, kept until the token's `exp`.
    async fn revoke_access(&self, jti: &str, exp: UnixTime) -> Result<(), StoreError>;
    async fn is_access_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    // Upstream grants (the vault).
    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError>;
    async fn get_grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// Replaces the grant if its stored version is still `expected_version`; `false` if another
    /// writer won (the caller re-reads).
    async fn update_grant(
        &self,
        grant: &GrantRecord,
        expected_version: u64,
    ) -> Result<bool, StoreError>;
    /// Takes the grant's refresh lease until `until` unless another holder's lease is live;
    /// one upstream refresh per grant at a time, across replicas.
    async fn try_lease_grant(
        &self,
        grant_id: &str,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    async fn release_grant_lease(&self, grant_id: &str, holder: &str) -> Result<(), StoreError>;

    // Signing keys.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Inserts `new` and, in the same transaction, replaces the retired versions of others.
    async fn rotate_keys(&self, new: &KeyRecord, retired: &[KeyRecord]) -> Result<(), StoreError>;
    /// Inserts the first key unless a key exists already (two replicas starting at once).
    async fn insert_first_key(&self, key: &KeyRecord) -> Result<bool, StoreError>;

    // Browser sessions (tower-sessions).
    async fn load_session(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SessionRecord>, StoreError>;
    async fn save_session(&self, id: &str, rec: &SessionRecord) -> Result<(), StoreError>;
    /// Inserts only if absent (tower-sessions' `create` must not overwrite another session).
    async fn create_session(&self, id: &str, rec: &SessionRecord) -> Result<bool, StoreError>;
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes every record whose `expires_at` is before `now`. Never deletes a live record.
    async fn sweep(&self, now: UnixTime) -> Result<SweepReport, StoreError>;
}
