//! TaskManager's OAuth 2.0 / OpenID Connect provider: authorization (RFC 6749 §4.1 with
//! RFC 7636 PKCE), token endpoint, JWKS (RFC 7517), userinfo and discovery (OIDC Core §5.3,
//! OIDC Discovery §3).

mod authorize;
mod client_auth;
mod token;

use super::error::ApiError;
use super::state::{AccessRecord, MockState};
use super::users;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use shared::secret::TokenHash;
use shared::{Scope, UnixTime};

/// Authorization endpoint.
pub const AUTHORIZE: &str = "/api/oauth/authorize";
/// Where the consent form posts the user's decision.
pub const DECISION: &str = "/api/oauth/authorize/decision";
/// Token endpoint.
pub const TOKEN: &str = "/api/oauth/token";
/// Public signing keys.
pub const JWKS: &str = "/api/oauth/jwks";
/// OIDC userinfo.
pub const USERINFO: &str = "/api/oauth/userinfo";
/// Client registration (see `clients`).
pub const CLIENTS: &str = "/api/oauth/clients";
/// OIDC discovery.
pub const DISCOVERY: &str = "/.well-known/openid-configuration";

/// Every scope TaskManager knows.
pub fn supported_scope() -> Scope {
    Scope::from_tokens(["openid", "read", "write"])
}

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route(AUTHORIZE, get(authorize::authorize))
        .route(DECISION, axum::routing::post(authorize::decision))
        .route(TOKEN, axum::routing::post(token::token))
        .route(JWKS, get(jwks))
        .route(USERINFO, get(userinfo).post(userinfo))
        .route(DISCOVERY, get(discovery))
}

async fn jwks(State(state): State<MockState>) -> Response {
    Json(json!({ "keys": [state.key.jwk] })).into_response()
}

async fn discovery(State(state): State<MockState>) -> Response {
    let base = &state.public_url;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}{AUTHORIZE}"),
        "token_endpoint": format!("{base}{TOKEN}"),
        "jwks_uri": format!("{base}{JWKS}"),
        "userinfo_endpoint": format!("{base}{USERINFO}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": ["openid", "read", "write"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "iat", "exp", "nonce", "name", "email", "preferred_username"],
    }))
    .into_response()
}

/// `GET|POST /api/oauth/userinfo` (OIDC Core §5.3): the token's user.
async fn userinfo(
    State(state): State<MockState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(&state, &headers, UnixTime::now())?;
    let user = users::by_sub(&token.sub).ok_or_else(|| ApiError::invalid_token("unknown user"))?;
    Ok(Json(json!({
        "sub": user.sub,
        "name": user.name,
        "email": user.email,
        "preferred_username": user.username,
    }))
    .into_response())
}

/// The access token of an `Authorization: Bearer` header (RFC 6750 §2.1), if live.
pub(crate) fn bearer(
    state: &MockState,
    headers: &HeaderMap,
    now: UnixTime,
) -> Result<AccessRecord, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid_token("missing bearer token"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid_token("the Authorization header is not a bearer token"))?;
    let record = state
        .db()
        .access_tokens
        .get(&TokenHash::of(token))
        .cloned()
        .ok_or_else(|| ApiError::invalid_token("unknown or revoked access token"))?;
    if now >= record.expires_at {
        return Err(ApiError::invalid_token("the access token has expired"));
    }
    Ok(record)
}
