//! `POST /api/oauth/token` (RFC 6749 §3.2): `authorization_code` (§4.1.3, PKCE per RFC 7636
//! §4.6) and `refresh_token` (§6, rotated: the presented refresh token dies). Every answer
//! carries `Cache-Control: no-store` (§5.1).

use super::super::knobs::Stats;
use super::super::state::{AccessRecord, ClientRecord, Db, MockState, RefreshRecord};
use super::super::users;
use super::super::util::{param, parse_params};
use super::client_auth;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::secret::{TokenHash, opaque_token};
use shared::token::TokenResponse;
use shared::{OAuthError, Scope, UnixTime, pkce};
use std::collections::HashMap;
use std::time::Duration;

/// Codes live one minute (RFC 6749 §4.1.2 recommends at most ten).
pub(super) const CODE_TTL: Duration = Duration::from_secs(60);

/// What a grant hands to token issuance.
struct Grant<'a> {
    client: &'a ClientRecord,
    sub: String,
    scope: Scope,
    grant_id: u64,
    nonce: Option<String>,
}

/// Claims of the id_token (OIDC Core §2).
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    name: &'a str,
    email: &'a str,
    preferred_username: &'a str,
}

pub(super) async fn token(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let now = UnixTime::now();
    let body = std::str::from_utf8(&body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let params = parse_params(body).map_err(OAuthError::invalid_request)?;
    let grant_type = param(&params, "grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let client = client_auth::authenticate(&state, &headers, &params)?;
    let response = match grant_type {
        "authorization_code" => {
            Stats::bump(&state.stats.code_grants);
            check_grant_allowed(&client, grant_type)?;
            redeem_code(&state, &client, &params, now)?
        }
        "refresh_token" => {
            Stats::bump(&state.stats.refresh_grants);
            check_grant_allowed(&client, grant_type)?;
            refresh(&state, &client, &params, now)?
        }
        _ => {
            return Err(OAuthError::new(
                shared::ErrorCode::UnsupportedGrantType,
                "supported grant types: authorization_code, refresh_token",
            ));
        }
    };
    let mut response = Json(response).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn check_grant_allowed(client: &ClientRecord, grant_type: &str) -> Result<(), OAuthError> {
    if client.allows_grant(grant_type) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!(
            "this client is not registered for the {grant_type} grant"
        )))
    }
}

/// RFC 6749 §4.1.3: the code is single use, bound to client, redirect URI and PKCE challenge.
fn redeem_code(
    state: &MockState,
    client: &ClientRecord,
    params: &HashMap<String, String>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let code =
        param(params, "code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let access_ttl = state.knobs().access_token_ttl;
    let mut db = state.db();
    db.sweep(now);
    let grant_id = db.next_grant_id;
    let record = db
        .codes
        .get_mut(&TokenHash::of(code))
        .ok_or_else(|| OAuthError::invalid_grant("unknown or expired authorization code"))?;
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if let Some(previous) = record.redeemed {
        // §4.1.2: a second redemption should revoke what the first one issued.
        db.revoke_grant(previous);
        tracing::warn!(target: "security", client_id = %client.client_id, "authorization code reused; its grant is revoked");
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used",
        ));
    }
    // Consumed now, whatever the checks below decide: a code is presented once.
    record.redeemed = Some(grant_id);
    let record = record.clone();
    db.next_grant_id += 1;

    let sent_redirect = param(params, "redirect_uri");
    let redirect_ok = match sent_redirect {
        Some(uri) => uri == record.redirect_uri,
        None => !record.redirect_uri_sent,
    };
    if !redirect_ok {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (
        record.code_challenge.as_deref(),
        param(params, "code_verifier"),
    ) {
        (Some(challenge), Some(verifier)) => {
            if !pkce::verify_s256(verifier, challenge) {
                return Err(OAuthError::invalid_grant("PKCE verification failed"));
            }
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required: the authorization request had a code_challenge",
            ));
        }
        (None, Some(_)) => {
            // OAuth 2.1 §4.1.3: a verifier without a challenge means the request was altered.
            return Err(OAuthError::invalid_grant(
                "code_verifier sent but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    let grant = Grant {
        client,
        sub: record.sub,
        scope: record.scope,
        grant_id,
        nonce: record.nonce,
    };
    issue(state, &mut db, &grant, access_ttl, now)
}

/// RFC 6749 §6 with rotation: the presented refresh token is removed and a new one issued.
fn refresh(
    state: &MockState,
    client: &ClientRecord,
    params: &HashMap<String, String>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let token = param(params, "refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let knobs = state.knobs().clone();
    if knobs.refuse_refresh {
        return Err(OAuthError::invalid_grant(
            "the refresh token was refused (refuse_refresh knob)",
        ));
    }
    let mut db = state.db();
    db.sweep(now);
    let hash = TokenHash::of(token);
    let record = db.refresh_tokens.get(&hash).ok_or_else(|| {
        OAuthError::invalid_grant("unknown, expired or already used refresh token")
    })?;
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let scope = match param(params, "scope") {
        None => record.scope.clone(),
        Some(s) => {
            let requested =
                Scope::parse(s).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            if !requested.is_subset(&record.scope) {
                return Err(OAuthError::invalid_scope(
                    "the requested scope exceeds the scope originally granted",
                ));
            }
            requested
        }
    };
    let sub = record.sub.clone();
    let grant_id = record.grant_id;
    db.refresh_tokens.remove(&hash);
    let grant = Grant {
        client,
        sub,
        scope,
        grant_id,
        nonce: None,
    };
    issue(state, &mut db, &grant, knobs.access_token_ttl, now)
}

/// Mints an access token, a refresh token (if the client may refresh) and, for `openid`,
/// an id_token.
fn issue(
    state: &MockState,
    db: &mut Db,
    grant: &Grant<'_>,
    access_ttl: u64,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let access_token = opaque_token();
    db.access_tokens.insert(
        TokenHash::of(&access_token),
        AccessRecord {
            sub: grant.sub.clone(),
            client_id: grant.client.client_id.clone(),
            scope: grant.scope.clone(),
            expires_at: now.plus(Duration::from_secs(access_ttl)),
            grant_id: grant.grant_id,
        },
    );
    let refresh_token = grant.client.allows_grant("refresh_token").then(|| {
        let token = opaque_token();
        db.refresh_tokens.insert(
            TokenHash::of(&token),
            RefreshRecord {
                sub: grant.sub.clone(),
                client_id: grant.client.client_id.clone(),
                scope: grant.scope.clone(),
                expires_at: now.plus(Duration::from_secs(state.refresh_token_ttl)),
                grant_id: grant.grant_id,
            },
        );
        token
    });
    let id_token = if grant.scope.contains("openid") {
        let user = users::by_sub(&grant.sub).ok_or_else(OAuthError::server_error)?;
        let claims = IdTokenClaims {
            iss: &state.public_url,
            sub: user.sub,
            aud: &grant.client.client_id,
            iat: now.0,
            exp: now.0.saturating_add(access_ttl.max(60)),
            nonce: grant.nonce.as_deref().filter(|_| !state.knobs().omit_nonce),
            name: user.name,
            email: user.email,
            preferred_username: user.username,
        };
        let jwt = state.key.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "could not sign an id_token");
            OAuthError::server_error()
        })?;
        Some(jwt)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: Some(access_ttl),
        refresh_token,
        scope: Some(grant.scope.to_string()),
        id_token,
        issued_token_type: None,
        upstream_grant_state: None,
    })
}
