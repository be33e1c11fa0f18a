//! `POST /oauth/token` (RFC 6749 §3.2): authenticate the caller (§2.3), then hand the request
//! to its grant's module. Every answer carries `Cache-Control: no-store`.

mod authorization_code;
mod client_credentials;
mod refresh_token;
mod token_exchange;

use super::NoStore;
use crate::error::Error;
use crate::extract::{OAuthForm, authenticate_client, is_resource_server, presented_client};
use crate::ops::Metrics;
use crate::state::AppState;
use crate::store::FamilyRecord;
use crate::tokens::access;
use crate::upstream::grant::GrantError;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use shared::secret::{TokenHash, opaque_token};
use shared::token::{GRANT_TOKEN_EXCHANGE, TokenResponse};
use shared::{ErrorCode, OAuthError, Scope, UnixTime, paths};

/// Routes of this module (and the root alias).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::TOKEN, post(token))
        .route(paths::TOKEN_ALIAS, post(token))
}

#[tracing::instrument(skip_all, fields(grant_type))]
async fn token(
    State(app): State<AppState>,
    OAuthForm(params, headers): OAuthForm,
) -> Result<NoStore<Json<TokenResponse>>, OAuthError> {
    let now = app.clock.now();
    let grant_type = params.require("grant_type")?.to_owned();
    tracing::Span::current().record("grant_type", grant_type.as_str());
    let presented = presented_client(&headers, &params)?;
    let result = if grant_type == GRANT_TOKEN_EXCHANGE {
        token_exchange::exchange(&app, presented, &params).await
    } else {
        let is_known = matches!(
            grant_type.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        );
        if !is_known {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type `{grant_type}` is not supported"),
            ));
        }
        if presented
            .as_ref()
            .is_some_and(|p| is_resource_server(&app, p))
        {
            return Err(OAuthError::unauthorized_client(
                "the resource server may only use token exchange",
            ));
        }
        let client = authenticate_client(&app, presented).await?;
        if !client.grant_types.contains(&grant_type) {
            return Err(OAuthError::unauthorized_client(format!(
                "this client did not register the {grant_type} grant"
            )));
        }
        match grant_type.as_str() {
            "authorization_code" => authorization_code::redeem(&app, &client, &params, now).await,
            "refresh_token" => refresh_token::rotate(&app, &client, &params, now).await,
            _ => client_credentials::issue(&app, &client, &params, now).await,
        }
    };
    match result {
        Ok(issued) => {
            Metrics::inc(&app.metrics.tokens_issued);
            Ok(NoStore(Json(issued)))
        }
        Err(e) => {
            Metrics::inc(&app.metrics.oauth_errors);
            Err(e)
        }
    }
}

/// Issues an access token and, when the client may refresh, the given refresh token.
async fn respond(
    app: &AppState,
    family: &FamilyRecord,
    scope: &Scope,
    refresh_token: Option<String>,
    now: UnixTime,
) -> Result<TokenResponse, Error> {
    let f = family;
    let (access_token, expires_in) = access::mint(
        app,
        Some(&f.family_id),
        &f.sub,
        &f.client_id,
        &f.resource,
        scope,
        now,
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: Some(expires_in),
        refresh_token,
        scope: Some(scope.to_string()),
        id_token: None,
        issued_token_type: None,
        upstream_grant_state: None,
    })
}

/// A fresh refresh token and its hash.
fn new_refresh() -> (String, TokenHash) {
    let t = opaque_token();
    let h = TokenHash::of(&t);
    (t, h)
}

/// The OAuth error for a grant whose upstream tokens cannot be had.
fn grant_error(e: GrantError) -> OAuthError {
    match e {
        GrantError::NeedsReauthorization => {
            OAuthError::invalid_grant("upstream grant needs re-authorization; sign in again")
        }
        GrantError::Unknown => {
            OAuthError::invalid_grant("upstream grant is unknown; sign in again")
        }
        GrantError::Unavailable(_) => {
            OAuthError::temporarily_unavailable("TaskManager is unavailable; try again shortly")
        }
        GrantError::Internal(e) => e.into(),
    }
}

/// RFC 8707 §2.2: a `resource` on the token request must be the one the grant is for.
fn check_same_resource(params: &crate::extract::Params, granted: &str) -> Result<(), OAuthError> {
    match params.resource()? {
        None => Ok(()),
        Some(r) if shared::resource::same(r, granted) => Ok(()),
        Some(_) => Err(OAuthError::invalid_target(
            "resource does not match the grant",
        )),
    }
}
