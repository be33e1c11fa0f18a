//! `grant_type=refresh_token` (RFC 6749 §6, OAuth 2.1 §4.3, RFC 9700 §4.14).
//!
//! Refresh tokens rotate on every use. A retry of the immediate predecessor within the grace
//! window gets the same successor back (lost responses and parallel refreshes do not log the
//! user out; the successor is derived from the presented token with a vault-held key, so it is
//! never stored); any other reuse is `invalid_grant` and revokes the whole family. Scope may
//! narrow, never widen; `resource` must match the grant. If TaskManager's tokens are near
//! expiry they are refreshed too, and a refusal there ends the MCP grant as well.

use super::{check_same_resource, grant_error, respond};
use crate::extract::Params;
use crate::ops::Metrics;
use crate::state::AppState;
use crate::store::{ClientRecord, RefreshRecord, RotatedTo, Rotation};
use crate::upstream::grant;
use shared::secret::TokenHash;
use shared::token::TokenResponse;
use shared::{OAuthError, Scope, UnixTime};

pub async fn rotate(
    app: &AppState,
    client: &ClientRecord,
    params: &Params,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let presented = params.require("refresh_token")?;
    let old_hash = TokenHash::of(presented);
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let old = app
        .store
        .get_refresh(&old_hash, now)
        .await?
        .ok_or_else(invalid)?;
    if old.client_id != client.client_id {
        return Err(invalid());
    }
    let family = app
        .store
        .get_family(&old.family_id)
        .await?
        .ok_or_else(invalid)?;
    if family.revoked_at.is_some() {
        return Err(invalid());
    }
    check_same_resource(params, &family.resource)?;
    let current_scope = Scope::parse(&old.scope).unwrap_or_default();
    // Narrowing only (RFC 6749 §6): the refreshed scope must be within the current one.
    let scope = crate::oauth::check_scope(params.get("scope"), &current_scope)?;

    // TaskManager first: a refused upstream refresh must end the MCP grant too. Not for a
    // token that has already rotated: that is a grace retry or a reuse, which the rotation
    // below answers by itself, and a reuse must revoke the family even while TaskManager is
    // down (nor may a replayed token cost an upstream refresh).
    if old.rotated.is_none() {
        grant::fresh_tokens(app, &family.grant_id)
            .await
            .map_err(grant_error)?;
    }

    // Derived, not random: a retry of `presented` within the grace window recomputes it.
    let new_token = app.vault.successor_of(presented);
    let new_hash = TokenHash::of(&new_token);
    let new_rec = RefreshRecord {
        family_id: family.family_id.clone(),
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        expires_at: family.expires_at,
        rotated: None,
    };
    let rotated = RotatedTo {
        at: now,
        successor_hash: new_hash.clone(),
        successor_scope: scope.to_string(),
    };
    let grace = app.settings.refresh_grace.as_secs();
    let (refresh_token, scope) = match app
        .store
        .rotate_refresh(&old_hash, &new_hash, &new_rec, &rotated, grace, now)
        .await?
    {
        Rotation::Rotated { .. } => (new_token, scope),
        Rotation::Grace { rotated, .. } => {
            tracing::info!(target: "security", client_id = %client.client_id, "refresh retried within grace window; same successor returned");
            if TokenHash::of(&new_token) != rotated.successor_hash {
                // Rotated under another vault key: the successor cannot be recomputed.
                return Err(invalid());
            }
            let successor = new_token;
            (
                successor,
                Scope::parse(&rotated.successor_scope).unwrap_or_default(),
            )
        }
        Rotation::Reused { family_id } => {
            Metrics::inc(&app.metrics.refresh_reuse_detected);
            tracing::warn!(target: "security", client_id = %client.client_id, "refresh token reused; revoking its family");
            app.store.revoke_family(&family_id, now).await?;
            return Err(OAuthError::invalid_grant(
                "refresh token was already used; the session is revoked",
            ));
        }
        Rotation::Unknown => return Err(invalid()),
    };
    Metrics::inc(&app.metrics.refreshes);
    let response = respond(app, &family, &scope, Some(refresh_token), now).await?;
    Ok(response)
}
