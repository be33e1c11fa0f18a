//! `POST /oauth/revoke` (RFC 7009 §2). Access and refresh tokens, with or without
//! `token_type_hint`. Revoking a refresh token revokes its family (every access and refresh
//! token of that login). Unknown (or already dead) tokens answer 200 (§2.2), so the endpoint
//! tells nothing about tokens the caller does not hold. A live token issued to another client
//! is refused (§2.1: the server "verifies whether the token was issued to the client making the
//! revocation request. If this validation fails, the request is refused"), with
//! `unauthorized_client`, and stays valid. Takes effect at introspection at once:
//! introspection reads the same store.

use super::NoStore;
use crate::extract::{OAuthForm, authenticate_client, presented_client};
use crate::ops::Metrics;
use crate::state::AppState;
use crate::tokens::access;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use shared::secret::TokenHash;
use shared::{OAuthError, UnixTime, paths};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(paths::REVOKE, post(revoke))
}

async fn revoke(
    State(app): State<AppState>,
    OAuthForm(params, headers): OAuthForm,
) -> Result<NoStore<StatusCode>, OAuthError> {
    let client = authenticate_client(&app, presented_client(&headers, &params)?).await?;
    let token = params.require("token")?;
    let now = app.clock.now();
    let refresh_first = params.get("token_type_hint") == Some("refresh_token");
    if refresh_first {
        if !revoke_refresh(&app, &client.client_id, token, now).await? {
            revoke_access(&app, &client.client_id, token, now).await?;
        }
    } else if !revoke_access(&app, &client.client_id, token, now).await? {
        revoke_refresh(&app, &client.client_id, token, now).await?;
    }
    Ok(NoStore(StatusCode::OK))
}

/// RFC 7009 §2.1: a client may revoke only its own tokens.
fn not_yours(client_id: &str) -> OAuthError {
    tracing::warn!(target: "security", %client_id, "refused to revoke another client's token");
    OAuthError::unauthorized_client("the token was issued to another client")
}

async fn revoke_access(
    app: &AppState,
    client_id: &str,
    token: &str,
    now: UnixTime,
) -> Result<bool, OAuthError> {
    let Some(active) = access::check(app, token, now).await? else {
        return Ok(false);
    };
    if active.claims.client_id != client_id {
        return Err(not_yours(client_id));
    }
    app.store
        .revoke_access(&active.claims.jti, UnixTime(active.claims.exp))
        .await?;
    Metrics::inc(&app.metrics.revocations);
    tracing::info!(target: "security", %client_id, "access token revoked");
    Ok(true)
}

async fn revoke_refresh(
    app: &AppState,
    client_id: &str,
    token: &str,
    now: UnixTime,
) -> Result<bool, OAuthError> {
    let Some(rec) = app.store.get_refresh(&TokenHash::of(token), now).await? else {
        return Ok(false);
    };
    if rec.client_id != client_id {
        return Err(not_yours(client_id));
    }
    app.store.revoke_family(&rec.family_id, now).await?;
    Metrics::inc(&app.metrics.revocations);
    tracing::info!(target: "security", %client_id, "refresh token family revoked");
    Ok(true)
}
