//! `POST /oauth/register` (RFC 7591 §3): dynamic client registration.
//!
//! Open by default and rate limited per IP; `--registration initial-access-token|closed`
//! restricts it (§3: "initial access token"). Unknown metadata is ignored (§2), unknown scopes
//! are narrowed to what we offer rather than refused, and an identical repeat registration of a
//! never-used client returns that client instead of piling up a new one.

use super::NoStore;
use crate::config::RegistrationPolicy;
use crate::ops::Metrics;
use crate::state::AppState;
use crate::store::ClientRecord;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::redirect_uri::{PrivateUseSchemes, RedirectUriError, check_registrable};
use shared::secret::{TokenHash, constant_time_eq, opaque_token, random_token};
use shared::{ErrorCode, OAuthError, Scope, UnixTime, paths};
use std::net::SocketAddr;

/// Routes of this module (and the root alias).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::REGISTER, post(register))
        .route(paths::REGISTER_ALIAS, post(register))
}

/// The registration response (RFC 7591 §3.2.1).
#[derive(Debug, Serialize)]
pub struct RegisterResponse {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

/// Metadata as accepted, before a client id is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scope: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
}

/// What a stored client holds besides its metadata: identity, secret and bookkeeping.
pub struct RecordKeeping {
    pub client_id: String,
    pub secret_hash: Option<TokenHash>,
    pub fingerprint: String,
    pub created_at: UnixTime,
    pub first_used_at: Option<UnixTime>,
    pub unused_expires_at: UnixTime,
}

impl AcceptedMetadata {
    /// The stored client these metadata describe (registration and metadata documents alike).
    pub fn into_record(self, k: RecordKeeping) -> ClientRecord {
        ClientRecord {
            client_id: k.client_id,
            secret_hash: k.secret_hash,
            client_name: self.client_name,
            redirect_uris: self.redirect_uris,
            grant_types: self.grant_types,
            response_types: self.response_types,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            scope: self.scope,
            client_uri: self.client_uri,
            logo_uri: self.logo_uri,
            software_id: self.software_id,
            software_version: self.software_version,
            fingerprint: k.fingerprint,
            created_at: k.created_at,
            first_used_at: k.first_used_at,
            unused_expires_at: k.unused_expires_at,
        }
    }
}

impl RegisterResponse {
    /// The answer for a registered `record`; `client_secret` is shown this once.
    fn new(record: &ClientRecord, client_secret: Option<String>) -> Self {
        Self {
            client_id: record.client_id.clone(),
            client_secret_expires_at: client_secret.is_some().then_some(0),
            client_secret,
            client_id_issued_at: record.created_at.0,
            client_name: record.client_name.clone(),
            redirect_uris: record.redirect_uris.clone(),
            grant_types: record.grant_types.clone(),
            response_types: record.response_types.clone(),
            token_endpoint_auth_method: record.token_endpoint_auth_method.clone(),
            scope: record.scope.clone(),
            client_uri: record.client_uri.clone(),
            logo_uri: record.logo_uri.clone(),
            software_id: record.software_id.clone(),
            software_version: record.software_version.clone(),
        }
    }
}

fn metadata_error(msg: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, msg)
}

fn optional_string(body: &Value, field: &'static str) -> Result<Option<String>, OAuthError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 2048 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(metadata_error(format!("`{field}` is too long"))),
        Some(_) => Err(metadata_error(format!("`{field}` must be a string"))),
    }
}

fn string_array(
    body: &Value,
    field: &'static str,
    code: ErrorCode,
) -> Result<Option<Vec<String>>, OAuthError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    OAuthError::new(code, format!("`{field}` must be an array of strings"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OAuthError::new(
            code,
            format!("`{field}` must be an array of strings"),
        )),
    }
}

/// Checks the metadata (pure: no I/O), in RFC 7591 §2 order.
pub fn check_metadata(
    body: &Value,
    offered: &Scope,
    private_use: PrivateUseSchemes,
) -> Result<AcceptedMetadata, OAuthError> {
    if !body.is_object() {
        return Err(metadata_error("registration request must be a JSON object"));
    }
    let method = optional_string(body, "token_endpoint_auth_method")?
        .unwrap_or_else(|| "client_secret_basic".into());
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(metadata_error(format!(
            "token_endpoint_auth_method `{method}` is not supported (use none, client_secret_basic or client_secret_post)"
        )));
    }
    let grant_types = string_array(body, "grant_types", ErrorCode::InvalidClientMetadata)?
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    for g in &grant_types {
        match g.as_str() {
            "authorization_code" | "refresh_token" => {}
            "client_credentials" if method != "none" => {}
            "client_credentials" => {
                return Err(metadata_error(
                    "client_credentials needs a confidential client",
                ));
            }
            other => {
                return Err(metadata_error(format!(
                    "grant type `{other}` is not supported"
                )));
            }
        }
    }
    let response_types = string_array(body, "response_types", ErrorCode::InvalidClientMetadata)?
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(metadata_error("only the `code` response type is supported"));
    }
    let redirect_uris =
        string_array(body, "redirect_uris", ErrorCode::InvalidRedirectUri)?.unwrap_or_default();
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "`redirect_uris` is required",
        ));
    }
    for uri in &redirect_uris {
        check_registrable(uri, private_use).map_err(|e: RedirectUriError| {
            OAuthError::new(ErrorCode::InvalidRedirectUri, format!("{uri}: {e}"))
        })?;
    }
    let scope = match optional_string(body, "scope")? {
        Some(s) => {
            let asked = Scope::parse(&s).map_err(|e| metadata_error(e.to_string()))?;
            let kept = asked.intersect(offered);
            if kept.is_empty() {
                offered.clone()
            } else {
                kept
            }
        }
        None => offered.clone(),
    };
    Ok(AcceptedMetadata {
        redirect_uris,
        token_endpoint_auth_method: method,
        grant_types,
        response_types,
        scope: scope.to_string(),
        client_name: optional_string(body, "client_name")?,
        client_uri: optional_string(body, "client_uri")?,
        logo_uri: optional_string(body, "logo_uri")?,
        software_id: optional_string(body, "software_id")?,
        software_version: optional_string(body, "software_version")?,
    })
}

fn fingerprint(meta: &AcceptedMetadata) -> String {
    let json = serde_json::to_vec(meta).unwrap_or_default();
    TokenHash::of(&String::from_utf8_lossy(&Sha256::digest(json)))
        .as_str()
        .to_owned()
}

fn check_policy(app: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    match app.settings.registration {
        RegistrationPolicy::Open => Ok(()),
        RegistrationPolicy::Closed => Err((
            StatusCode::FORBIDDEN,
            NoStore(Json(
                OAuthError::new(
                    ErrorCode::AccessDenied,
                    "dynamic client registration is closed",
                )
                .body(),
            )),
        )
            .into_response()),
        RegistrationPolicy::InitialAccessToken => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let ok = app
                .settings
                .initial_access_token
                .as_ref()
                .is_some_and(|t| constant_time_eq(t.expose(), given));
            if ok {
                Ok(())
            } else {
                let mut r = OAuthError::new(
                    ErrorCode::InvalidToken,
                    "a valid initial access token is required",
                )
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                Err(r)
            }
        }
    }
}

async fn register(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Err(r) = check_policy(&app, &headers) {
        return r;
    }
    // Over the server-wide body limit, or unreadable: RFC 7591 JSON, not axum's plain text.
    let Ok(body) = body else {
        return metadata_error("registration body is too large or unreadable").into_response();
    };
    let now = app.clock.now();
    if !app.registration_limiter.allow(peer.ip(), now.0) {
        let mut r =
            OAuthError::temporarily_unavailable("too many registrations; try again in a minute")
                .into_response();
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return r;
    }
    match register_client(&app, &headers, &body, now).await {
        Ok(resp) => (StatusCode::CREATED, NoStore(Json(resp))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn register_client(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now: UnixTime,
) -> Result<RegisterResponse, OAuthError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request(
            "registration body must be application/json",
        ));
    }
    if body.len() > crate::extract::MAX_FORM_BYTES {
        return Err(metadata_error("registration body is too large"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| metadata_error("registration body is not valid JSON"))?;
    let meta = check_metadata(
        &value,
        &app.settings.mcp_scopes,
        app.settings.private_use_redirects,
    )?;
    let fp = fingerprint(&meta);
    let confidential = meta.token_endpoint_auth_method != "none";
    let secret = confidential.then(opaque_token);

    // An identical registration of a public client that was never used is that client again
    // (clients that register on every start do not pile up). Never for confidential clients:
    // a new secret would silently replace the one the first registrant holds.
    let existing = if confidential {
        None
    } else {
        app.store.find_unused_client(&fp).await?
    };
    let record = meta.into_record(RecordKeeping {
        client_id: existing
            .as_ref()
            .map_or_else(|| random_token(16), |c| c.client_id.clone()),
        secret_hash: secret.as_deref().map(TokenHash::of),
        fingerprint: fp,
        created_at: existing.as_ref().map_or(now, |c| c.created_at),
        first_used_at: None,
        unused_expires_at: now.plus(app.settings.unused_client_ttl),
    });
    app.store.put_client(&record).await?;
    Metrics::inc(&app.metrics.registrations);
    tracing::info!(target: "security", client_id = %record.client_id, reused = existing.is_some(), "client registered");
    Ok(RegisterResponse::new(&record, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offered() -> Scope {
        Scope::parse("read write").unwrap()
    }

    #[test]
    fn defaults_and_narrowing() {
        let m = check_metadata(&json!({"redirect_uris": ["http://127.0.0.1:3000/cb"], "scope": "read admin", "extra": 1}), &offered(), PrivateUseSchemes::Refused).unwrap();
        assert_eq!(m.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(m.scope, "read");
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
    }

    #[test]
    fn wrong_types_and_bad_uris() {
        let e = check_metadata(
            &json!({"redirect_uris": "http://127.0.0.1/cb"}),
            &offered(),
            PrivateUseSchemes::Refused,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
        let e = check_metadata(
            &json!({"redirect_uris": ["http://evil.test/cb"]}),
            &offered(),
            PrivateUseSchemes::Refused,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
        let e = check_metadata(
            &json!({"redirect_uris": ["https://a.test/cb"], "client_name": 5}),
            &offered(),
            PrivateUseSchemes::Refused,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        let e = check_metadata(
            &json!({"redirect_uris": ["https://a.test/cb"], "grant_types": ["implicit"]}),
            &offered(),
            PrivateUseSchemes::Refused,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        let e = check_metadata(&json!([1]), &offered(), PrivateUseSchemes::Refused).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        let e = check_metadata(&json!({}), &offered(), PrivateUseSchemes::Refused).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
    }
}
