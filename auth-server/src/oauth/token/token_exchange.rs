//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693 §2) for the
//! resource server only: it presents a user's MCP access token (whose `aud` is the resource)
//! and gets that user's TaskManager access token, refreshed first when near expiry. The MCP
//! token itself never travels upstream.

use super::grant_error;
use crate::extract::{Params, PresentedClient, authenticate_client, is_resource_server};
use crate::ops::Metrics;
use crate::state::AppState;
use crate::tokens::access;
use crate::upstream::grant;
use shared::token::{TOKEN_TYPE_ACCESS_TOKEN, TokenResponse};
use shared::{ErrorCode, OAuthError, resource};

pub async fn exchange(
    app: &AppState,
    presented: Option<PresentedClient>,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let Some(caller) = presented else {
        return Err(OAuthError::invalid_client(
            "client authentication is required",
        ));
    };
    if !is_resource_server(app, &caller) {
        // RFC 6749 §5.2: credentials that fail to authenticate are `invalid_client`; only a
        // client that does authenticate but may not use this grant is `unauthorized_client`.
        authenticate_client(app, Some(caller)).await?;
        return Err(OAuthError::unauthorized_client(
            "token exchange is only for the resource server",
        ));
    }
    let subject = params.require("subject_token")?;
    if params.require("subject_token_type")? != TOKEN_TYPE_ACCESS_TOKEN {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be an access token",
        ));
    }
    if params
        .get("requested_token_type")
        .is_some_and(|t| t != TOKEN_TYPE_ACCESS_TOKEN)
    {
        return Err(OAuthError::invalid_request(
            "only access tokens can be requested",
        ));
    }
    let upstream_base = app.upstream.settings().base_url.as_str();
    if params
        .get("audience")
        .is_some_and(|a| !resource::same(a, upstream_base))
    {
        return Err(OAuthError::invalid_target(
            "audience must be the TaskManager URL",
        ));
    }
    let now = app.clock.now();
    let active = access::check(app, subject, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("subject_token is not active"))?;
    if active.claims.aud != app.settings.resource {
        return Err(OAuthError::invalid_grant(
            "subject_token is not for this resource",
        ));
    }
    let Some(family) = active.family else {
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "subject_token has no user grant behind it",
        ));
    };
    Metrics::inc(&app.metrics.token_exchanges);
    let (tokens, freshness) = grant::fresh_tokens(app, &family.grant_id)
        .await
        .map_err(grant_error)?;
    // Read the clock again: a refresh just now may have taken a while, and `expires_in`
    // must not promise more than TaskManager granted (RFC 8693 §2.2.1).
    let expires_in = tokens.expires_at.map(|exp| app.clock.now().until(exp));
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token: None,
        scope: tokens.scope,
        id_token: None,
        issued_token_type: Some(TOKEN_TYPE_ACCESS_TOKEN.into()),
        upstream_grant_state: Some(freshness.as_str().into()),
    })
}
