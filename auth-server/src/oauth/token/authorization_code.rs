//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 8707 §2.2).
//!
//! The code is redeemed atomically. A second redemption fails with `invalid_grant` and revokes
//! everything the first one issued (OAuth 2.1 §4.1.3); of concurrent redemptions exactly one
//! wins.

use super::{check_same_resource, new_refresh, respond};
use crate::extract::Params;
use crate::ops::Metrics;
use crate::state::AppState;
use crate::store::{ClientRecord, CodeRedemption, FamilyRecord, RefreshRecord};
use shared::secret::{TokenHash, random_token};
use shared::token::TokenResponse;
use shared::{OAuthError, Scope, UnixTime, pkce};

pub async fn redeem(
    app: &AppState,
    client: &ClientRecord,
    params: &Params,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let code = params.require("code")?;
    let verifier = params.require("code_verifier")?;
    let family_id = format!("f{}", random_token(16));
    let record = match app
        .store
        .redeem_code(&TokenHash::of(code), &family_id, now)
        .await?
    {
        CodeRedemption::Fresh(r) => r,
        CodeRedemption::Unknown => {
            return Err(OAuthError::invalid_grant(
                "authorization code is invalid or expired",
            ));
        }
        CodeRedemption::AlreadyRedeemed { family_id } => {
            Metrics::inc(&app.metrics.code_reuse_detected);
            tracing::warn!(target: "security", client_id = %client.client_id, "authorization code replayed; revoking its tokens");
            app.store.revoke_family(&family_id, now).await?;
            return Err(OAuthError::invalid_grant(
                "authorization code was already used",
            ));
        }
    };
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if let Some(uri) = params.get("redirect_uri")
        && uri != record.redirect_uri
    {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce::verify_s256(verifier, &record.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    check_same_resource(params, &record.resource)?;
    let scope = Scope::parse(&record.scope).unwrap_or_default();
    let issue_refresh = client.grant_types.iter().any(|g| g == "refresh_token");
    let lifetime = if issue_refresh {
        app.settings.refresh_token_ttl
    } else {
        app.settings.access_token_ttl
    };
    // Even without a refresh token there is a family, so the access token is revoked with it.
    let family = FamilyRecord {
        family_id: family_id.clone(),
        client_id: client.client_id.clone(),
        sub: record.sub.clone(),
        username: record.username.clone(),
        grant_id: record.grant_id.clone(),
        resource: record.resource.clone(),
        scope: record.scope.clone(),
        created_at: now,
        revoked_at: None,
        expires_at: now.plus(lifetime),
    };
    let refresh_token = if issue_refresh {
        let (token, hash) = new_refresh();
        let refresh = RefreshRecord {
            family_id: family_id.clone(),
            client_id: client.client_id.clone(),
            scope: record.scope.clone(),
            expires_at: family.expires_at,
            rotated: None,
        };
        app.store
            .insert_family(&family, Some((&hash, &refresh)))
            .await?;
        Some(token)
    } else {
        app.store.insert_family(&family, None).await?;
        None
    };
    app.store.mark_client_used(&client.client_id, now).await?;
    let response = respond(app, &family, &scope, refresh_token, now).await?;
    Ok(response)
}
