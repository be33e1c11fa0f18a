//! In-memory state of the mock. One mutex guards all records, so every "use once" step
//! (taking a code, rotating a refresh token) is atomic; it is never held across an `.await`.

use super::config::{ClientSpec, Config};
use super::keys::SigningKey;
use super::knobs::{Knobs, Stats};
use shared::secret::TokenHash;
use shared::{Scope, Secret, UnixTime};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shared handle to the mock's state, cloned into every handler.
#[derive(Clone)]
pub struct MockState(Arc<Inner>);

/// What the handle points at.
pub struct Inner {
    /// Issuer and base URL, without a trailing slash.
    pub public_url: String,
    pub refresh_token_ttl: u64,
    pub key: SigningKey,
    pub stats: Stats,
    knobs: Mutex<Knobs>,
    db: Mutex<Db>,
}

impl Deref for MockState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl MockState {
    /// Builds the state: the configured clients, alice's two tasks, a fresh signing key.
    pub fn new(
        config: &Config,
        public_url: String,
        now: UnixTime,
    ) -> Result<Self, super::keys::KeyError> {
        let mut db = Db::default();
        for spec in &config.clients {
            db.clients.push(ClientRecord::from_spec(spec, now));
        }
        super::tasks::seed(&mut db, now);
        Ok(Self(Arc::new(Inner {
            public_url: public_url.trim_end_matches('/').to_owned(),
            refresh_token_ttl: config.refresh_token_ttl,
            key: SigningKey::generate()?,
            stats: Stats::default(),
            knobs: Mutex::new(Knobs::new(config.access_token_ttl)),
            db: Mutex::new(db),
        })))
    }

    /// The records, locked. A panic elsewhere never poisons the mock for later requests.
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.0.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The test knobs, locked.
    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.0.knobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every record of the mock.
#[derive(Default)]
pub struct Db {
    /// Registered clients, in registration order.
    pub clients: Vec<ClientRecord>,
    pub sessions: HashMap<TokenHash, SessionRecord>,
    /// Authorization requests waiting for the user's decision, by request id.
    pub pending: HashMap<String, PendingAuthorization>,
    pub codes: HashMap<TokenHash, CodeRecord>,
    pub access_tokens: HashMap<TokenHash, AccessRecord>,
    pub refresh_tokens: HashMap<TokenHash, RefreshRecord>,
    pub tasks: Vec<super::tasks::TaskRecord>,
    pub next_task_id: u64,
    pub next_grant_id: u64,
}

impl Db {
    /// The client with this id.
    pub fn client(&self, client_id: &str) -> Option<&ClientRecord> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    /// Drops expired records, so a long-running demo stack does not grow without bound.
    pub fn sweep(&mut self, now: UnixTime) {
        self.sessions.retain(|_, r| r.expires_at > now);
        self.pending.retain(|_, r| r.expires_at > now);
        self.codes.retain(|_, r| r.expires_at > now);
        self.access_tokens.retain(|_, r| r.expires_at > now);
        self.refresh_tokens.retain(|_, r| r.expires_at > now);
    }

    /// Revokes every token issued under one grant (a redeemed code's descendants).
    pub fn revoke_grant(&mut self, grant_id: u64) {
        self.access_tokens.retain(|_, r| r.grant_id != grant_id);
        self.refresh_tokens.retain(|_, r| r.grant_id != grant_id);
    }
}

/// A registered OAuth client (always confidential).
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scope: Scope,
    pub created_at: UnixTime,
}

impl ClientRecord {
    fn from_spec(spec: &ClientSpec, now: UnixTime) -> Self {
        Self {
            client_id: spec.client_id.clone(),
            client_secret: spec.client_secret.clone(),
            name: spec.client_id.clone(),
            redirect_uris: spec.redirect_uris.clone(),
            grant_types: super::clients::default_grant_types(),
            scope: super::oauth::supported_scope(),
            created_at: now,
        }
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub sub: String,
    /// Per-session CSRF token for the consent form.
    pub csrf: String,
    pub expires_at: UnixTime,
}

/// A validated authorization request shown on the consent page.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    pub session: TokenHash,
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether `redirect_uri` was in the request (then the token request must repeat it).
    pub redirect_uri_sent: bool,
    pub scope: Scope,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub expires_at: UnixTime,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scope: Scope,
    pub sub: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub expires_at: UnixTime,
    /// Set once redeemed; the grant whose tokens a second redemption revokes.
    pub redeemed: Option<u64>,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub sub: String,
    pub client_id: String,
    pub scope: Scope,
    pub expires_at: UnixTime,
    pub grant_id: u64,
}

/// An issued refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub sub: String,
    pub client_id: String,
    pub scope: Scope,
    pub expires_at: UnixTime,
    pub grant_id: u64,
}
