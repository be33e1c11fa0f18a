//! `POST /introspect` (RFC 7662 §2). Only the resource server may ask (§2.1: the endpoint
//! requires authorization, so tokens cannot be scanned). Unknown, expired, revoked or foreign
//! tokens are `{"active": false}` and nothing else (§2.2).

use super::NoStore;
use crate::extract::{OAuthForm, is_resource_server, presented_client};
use crate::ops::Metrics;
use crate::state::AppState;
use crate::tokens::access;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use shared::introspection::IntrospectionResponse;
use shared::secret::TokenHash;
use shared::{OAuthError, paths};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(paths::INTROSPECT, post(introspect))
}

async fn introspect(
    State(app): State<AppState>,
    OAuthForm(params, headers): OAuthForm,
) -> Result<NoStore<Json<IntrospectionResponse>>, OAuthError> {
    let presented = presented_client(&headers, &params)?;
    let via_basic = presented.as_ref().is_some_and(|p| p.via_basic);
    if !presented
        .as_ref()
        .is_some_and(|p| is_resource_server(&app, p))
    {
        let e =
            OAuthError::invalid_client("introspection requires the resource server's credentials");
        return Err(if via_basic {
            e.with_basic_challenge()
        } else {
            e
        });
    }
    let token = params.require("token")?;
    let now = app.clock.now();
    Metrics::inc(&app.metrics.introspections);
    // RFC 7662 §2.1: the hint is only an optimisation; look at both kinds either way.
    if let Some(active) = access::check(&app, token, now).await? {
        let c = active.claims;
        let username = active.family.and_then(|f| f.username);
        return Ok(NoStore(Json(IntrospectionResponse {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            username,
            token_type: Some("Bearer".into()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            jti: Some(c.jti),
        })));
    }
    if let Some(rec) = app.store.get_refresh(&TokenHash::of(token), now).await? {
        let family = app.store.get_family(&rec.family_id).await?;
        if let Some(f) = family.filter(|f| f.revoked_at.is_none())
            && rec.rotated.is_none()
        {
            {
                return Ok(NoStore(Json(IntrospectionResponse {
                    active: true,
                    scope: Some(rec.scope),
                    client_id: Some(rec.client_id),
                    token_type: Some("refresh_token".into()),
                    exp: Some(rec.expires_at.0),
                    iat: Some(f.created_at.0),
                    username: f.username,
                    sub: Some(f.sub),
                    aud: Some(f.resource),
                    iss: Some(app.settings.issuer.clone()),
                    ..IntrospectionResponse::default()
                })));
            }
        }
    }
    Ok(NoStore(Json(IntrospectionResponse::inactive())))
}
