//! Calls to TaskManager (DESIGN §5): authorization URL, code exchange with our own client
//! credentials and PKCE, refresh, and the user's identity from a verified id_token (JWKS) or
//! a userinfo endpoint. Every call has a timeout; idempotent GETs retry with backoff; a
//! circuit breaker fails fast while TaskManager is down.

use crate::config::{UpstreamAuthMethod, UpstreamSettings};
use crate::upstream::vault::UpstreamTokens;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use shared::UnixTime;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;
use url::Url;

/// What went wrong upstream, in terms the caller can map to an OAuth error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TaskManager cannot be reached, timed out, or answered 5xx: try again later.
    #[error("TaskManager is unavailable: {0}")]
    Unavailable(String),
    /// TaskManager refused the grant (`invalid_grant`): the user must log in again.
    #[error("TaskManager refused the grant: {0}")]
    Refused(String),
    /// TaskManager answered something we cannot use (bad JSON, bad id_token, wrong client).
    #[error("TaskManager answered unexpectedly: {0}")]
    Protocol(String),
}

/// The logged-in user as TaskManager names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    /// A human-readable name for the user (`preferred_username`, else `name`), if TaskManager
    /// tells one; shown as RFC 7662 `username` at introspection.
    pub username: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// Tokens from a code exchange, with the id_token kept aside for identification.
pub struct Exchanged {
    pub tokens: UpstreamTokens,
    pub id_token: Option<String>,
}

const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_OPEN_SECS: u64 = 10;

/// TaskManager's client.
#[derive(Clone)]
pub struct UpstreamClient {
    settings: Arc<UpstreamSettings>,
    http: reqwest::Client,
    jwks: Arc<RwLock<Option<JwkSet>>>,
    failures: Arc<AtomicU32>,
    open_until: Arc<AtomicU64>,
}

impl UpstreamClient {
    /// Builds the client with the configured timeout.
    pub fn new(settings: UpstreamSettings) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3).min(settings.timeout))
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        Ok(Self {
            settings: Arc::new(settings),
            http,
            jwks: Arc::new(RwLock::new(None)),
            failures: Arc::new(AtomicU32::new(0)),
            open_until: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The upstream settings.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Where to send the browser: TaskManager's authorization endpoint with our own client id,
    /// state, PKCE challenge and nonce.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        nonce: &str,
    ) -> Url {
        let mut url = self.settings.authorize_url.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.settings.scope)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", shared::pkce::S256)
            .append_pair("nonce", nonce);
        url
    }

    fn breaker_check(&self) -> Result<(), UpstreamError> {
        if self.open_until.load(Ordering::Relaxed) > UnixTime::now().0 {
            return Err(UpstreamError::Unavailable(
                "TaskManager failed repeatedly; waiting before trying again".into(),
            ));
        }
        Ok(())
    }

    fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
        } else if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= BREAKER_THRESHOLD {
            self.open_until
                .store(UnixTime::now().0 + BREAKER_OPEN_SECS, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(target: "upstream", "circuit breaker open for {BREAKER_OPEN_SECS}s");
        }
    }

    /// Posts to the token endpoint (never retried: a code is single use).
    async fn token_request(
        &self,
        form: &mut Vec<(&str, String)>,
    ) -> Result<TokenAnswer, UpstreamError> {
        self.breaker_check()?;
        let s = &self.settings;
        let mut req = self
            .http
            .post(s.token_url.clone())
            .header("Accept", "application/json");
        match s.auth_method {
            UpstreamAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
                let enc = |v: &str| {
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&s.client_id), Some(enc(s.client_secret.expose())));
            }
            UpstreamAuthMethod::ClientSecretPost => {
                form.push(("client_id", s.client_id.clone()));
                form.push(("client_secret", s.client_secret.expose().clone()));
            }
        }
        let response = match req.form(&form).send().await {
            Ok(r) => r,
            Err(e) => {
                self.record(false);
                return Err(UpstreamError::Unavailable(describe(&e)));
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.record(false);
                return Err(UpstreamError::Unavailable(describe(&e)));
            }
        };
        if status.is_server_error() {
            self.record(false);
            return Err(UpstreamError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        self.record(true);
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                UpstreamError::Protocol("token endpoint answered malformed JSON".into())
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) if e.error == "invalid_grant" => Err(UpstreamError::Refused(
                e.error_description.unwrap_or(e.error),
            )),
            Ok(e) => Err(UpstreamError::Protocol(format!(
                "token endpoint answered {status} {}{}",
                e.error,
                e.error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ))),
            Err(_) => Err(UpstreamError::Protocol(format!(
                "token endpoint answered {status}"
            ))),
        }
    }

    fn tokens_from(
        answer: TokenAnswer,
        previous_refresh: Option<String>,
        now: UnixTime,
    ) -> Exchanged {
        Exchanged {
            tokens: UpstreamTokens {
                access_token: answer.access_token,
                // A provider that does not rotate refresh tokens omits it: keep the old one.
                refresh_token: answer.refresh_token.or(previous_refresh),
                expires_at: answer.expires_in.map(|s| now.plus(Duration::from_secs(s))),
                scope: answer.scope,
            },
            id_token: answer.id_token,
        }
    }

    /// Exchanges TaskManager's code with our client credentials and PKCE verifier.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        now: UnixTime,
    ) -> Result<Exchanged, UpstreamError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ];
        let answer = self.token_request(&mut form).await?;
        Ok(Self::tokens_from(answer, None, now))
    }

    /// Refreshes TaskManager's tokens.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        now: UnixTime,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        let answer = self.token_request(&mut form).await?;
        Ok(Self::tokens_from(answer, Some(refresh_token.to_owned()), now).tokens)
    }

    /// GET with bounded retries and backoff (idempotent calls only).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<T, UpstreamError> {
        self.breaker_check()?;
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * 3u64.pow(attempt - 1))).await;
            }
            let mut req = self
                .http
                .get(url.clone())
                .header("Accept", "application/json");
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            match req.send().await {
                Ok(r) if r.status().is_server_error() => {
                    last = format!("{url} answered {}", r.status())
                }
                Ok(r) if !r.status().is_success() => {
                    self.record(true);
                    return Err(UpstreamError::Protocol(format!(
                        "{url} answered {}",
                        r.status()
                    )));
                }
                Ok(r) => {
                    self.record(true);
                    return r.json::<T>().await.map_err(|_| {
                        UpstreamError::Protocol(format!("{url} answered malformed JSON"))
                    });
                }
                Err(e) => last = describe(&e),
            }
        }
        self.record(false);
        Err(UpstreamError::Unavailable(last))
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, UpstreamError> {
        for refetch in [false, true] {
            if refetch || self.jwks.read().await.is_none() {
                let set: JwkSet = self.get_json(&self.settings.jwks_url, None).await?;
                *self.jwks.write().await = Some(set);
            }
            let guard = self.jwks.read().await;
            let Some(set) = guard.as_ref() else { continue };
            let jwk = match kid {
                Some(kid) => set.find(kid),
                None if set.keys.len() == 1 => set.keys.first(),
                None => None,
            };
            if let Some(jwk) = jwk {
                return DecodingKey::from_jwk(jwk).map_err(|_| {
                    UpstreamError::Protocol("TaskManager's JWKS key is unusable".into())
                });
            }
        }
        Err(UpstreamError::Protocol(
            "id_token signed with a key not in TaskManager's JWKS".into(),
        ))
    }

    /// Verifies TaskManager's id_token: signature (JWKS), `iss`, `aud` = our client id, expiry,
    /// and our `nonce`.
    async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<Identity, UpstreamError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| UpstreamError::Protocol("id_token is not a JWT".into()))?;
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|e| UpstreamError::Protocol(format!("id_token rejected: {e}")))?;
        // OIDC Core §3.1.3.7 (11): we always send a nonce, so the id_token must carry it.
        if data.claims.nonce.as_deref() != Some(nonce) {
            return Err(UpstreamError::Protocol(
                "id_token nonce is missing or does not match".into(),
            ));
        }
        Ok(Identity {
            sub: data.claims.sub,
            username: data.claims.preferred_username.or(data.claims.name),
        })
    }

    /// The user behind a fresh login: from the id_token if there is one, else from userinfo.
    pub async fn identify(
        &self,
        exchanged: &Exchanged,
        nonce: &str,
    ) -> Result<Identity, UpstreamError> {
        if let Some(id_token) = &exchanged.id_token {
            return self.verify_id_token(id_token, nonce).await;
        }
        if let Some(url) = &self.settings.userinfo_url {
            let info: UserInfo = self
                .get_json(url, Some(&exchanged.tokens.access_token))
                .await?;
            if let Some(sub) = info.sub.filter(|s| !s.is_empty()) {
                return Ok(Identity {
                    sub,
                    username: info.preferred_username.or(info.name),
                });
            }
        }
        Err(UpstreamError::Protocol(
            "TaskManager returned no id_token and no userinfo subject: add `openid` to \
             --upstream-scope (TASKMANAGER_UPSTREAM_SCOPE) or set --upstream-userinfo-path"
                .into(),
        ))
    }

    /// Whether TaskManager answers at all (for `/readyz`).
    pub async fn reachable(&self) -> bool {
        self.http
            .get(self.settings.jwks_url.clone())
            .send()
            .await
            .is_ok_and(|r| !r.status().is_server_error())
    }
}

/// A transport error without the URL's query (which could carry a code).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        "transport error".into()
    }
}
