//! `GET /oauth/callback`: TaskManager sends the browser back here (RFC 6749 §4.1.2).
//!
//! Our `state` is single use, expires, and must come back in the browser session that
//! started the flow. TaskManager's code is exchanged with our own client credentials and PKCE
//! verifier; the user is identified from a verified id_token or userinfo; TaskManager's tokens
//! go into the vault; and the client gets our own short-lived, single-use code.

use super::authorize::{SESSION_BINDING, internal_page, redirect_error, redirect_to_client};
use crate::ops::Metrics;
use crate::pages::error_page;
use crate::state::AppState;
use crate::store::{CodeRecord, GrantRecord, GrantStatus, UpstreamStateRecord};
use crate::upstream::client::UpstreamError;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use shared::secret::{TokenHash, constant_time_eq, opaque_token, random_token};
use shared::{ErrorCode, OAuthError, UnixTime, paths};
use std::sync::atomic::{AtomicBool, Ordering};
use tower_sessions::Session;

/// Tells the operator, once per process, that TaskManager's tokens live shorter than the
/// refresh margin: they are then due for refresh from the moment they arrive, so each token
/// exchange refreshes upstream (concurrent ones share one refresh, sequential ones do not).
fn warn_if_shorter_than_margin(app: &AppState, expires_at: Option<UnixTime>, now: UnixTime) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let margin = app.settings.upstream_refresh_margin;
    if let Some(exp) = expires_at
        && exp <= now.plus(margin)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            lifetime_secs = exp.0.saturating_sub(now.0),
            margin_secs = margin.as_secs(),
            "TaskManager's access tokens live shorter than --upstream-refresh-margin-secs; \
             every use will refresh them upstream. Lower the margin below their lifetime."
        );
    }
}

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(paths::CALLBACK, get(callback))
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn stale_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in cannot be completed",
        "The sign-in is unknown, expired, already completed, or was started in another browser. Start the sign-in again from your application.",
    )
}

#[tracing::instrument(skip_all)]
async fn callback(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<CallbackParams>,
) -> Response {
    let now = app.clock.now();
    let Some(state) = q.state.filter(|s| !s.is_empty()) else {
        return stale_page();
    };
    let record = match app
        .store
        .take_upstream_state(&TokenHash::of(&state), now)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return stale_page(),
        Err(e) => return internal_page(e),
    };
    match session.get::<String>(SESSION_BINDING).await {
        Ok(Some(b)) if constant_time_eq(&b, &record.pending.browser_binding) => {}
        Ok(_) => {
            tracing::warn!(target: "security", "callback arrived in a different browser session");
            return stale_page();
        }
        Err(e) => return internal_page(e),
    }
    let p = &record.pending;
    let back = |err: OAuthError| {
        redirect_error(
            &p.redirect_uri,
            &app.settings.issuer,
            p.state.as_deref(),
            &err,
        )
    };
    if let Some(error) = q.error {
        let code = if error == "access_denied" {
            ErrorCode::AccessDenied
        } else {
            ErrorCode::ServerError
        };
        let detail = q.error_description.unwrap_or_else(|| error.clone());
        return back(OAuthError::new(code, format!("TaskManager: {detail}")));
    }
    let Some(upstream_code) = q.code.filter(|c| !c.is_empty()) else {
        return back(OAuthError::new(
            ErrorCode::ServerError,
            "TaskManager returned neither a code nor an error",
        ));
    };
    match complete(&app, &record, &upstream_code, now).await {
        Ok(code) => {
            Metrics::inc(&app.metrics.logins_completed);
            let mut params = vec![("code", code.as_str())];
            if let Some(s) = p.state.as_deref() {
                params.push(("state", s));
            }
            redirect_to_client(&p.redirect_uri, &app.settings.issuer, &params)
        }
        Err(CallbackError::Upstream(e)) => {
            Metrics::inc(&app.metrics.upstream_failures);
            tracing::warn!(target: "upstream", error = %e, "login at TaskManager could not be completed");
            back(match e {
                UpstreamError::Unavailable(_) => OAuthError::temporarily_unavailable(
                    "TaskManager is unavailable; try again shortly",
                ),
                UpstreamError::Refused(_) => {
                    OAuthError::new(ErrorCode::AccessDenied, "TaskManager refused the login")
                }
                UpstreamError::Protocol(d) => OAuthError::new(
                    ErrorCode::ServerError,
                    format!("TaskManager login failed: {d}"),
                ),
            })
        }
        Err(CallbackError::Internal(e)) => internal_page(e),
    }
}

enum CallbackError {
    Upstream(UpstreamError),
    Internal(crate::error::Error),
}

impl<E: Into<crate::error::Error>> From<E> for CallbackError {
    fn from(e: E) -> Self {
        CallbackError::Internal(e.into())
    }
}

/// Exchanges TaskManager's code, stores the grant, and issues our code.
async fn complete(
    app: &AppState,
    record: &UpstreamStateRecord,
    upstream_code: &str,
    now: UnixTime,
) -> Result<String, CallbackError> {
    let verifier = app.vault.open_str(&record.upstream_verifier_enc)?;
    let callback = format!("{}{}", app.settings.issuer, paths::CALLBACK);
    let exchanged = app
        .upstream
        .exchange_code(upstream_code, &verifier, &callback, now)
        .await
        .map_err(CallbackError::Upstream)?;
    let identity = app
        .upstream
        .identify(&exchanged, &record.nonce)
        .await
        .map_err(CallbackError::Upstream)?;
    warn_if_shorter_than_margin(app, exchanged.tokens.expires_at, now);
    let grant = GrantRecord {
        grant_id: random_token(16),
        sub: identity.sub.clone(),
        tokens_enc: app.vault.seal_tokens(&exchanged.tokens),
        access_expires_at: exchanged.tokens.expires_at,
        status: GrantStatus::Active,
        version: 0,
        refreshed: false,
        updated_at: now,
        expires_at: now.plus(app.settings.refresh_token_ttl),
    };
    app.store.insert_grant(&grant).await?;
    let code = opaque_token();
    let p = &record.pending;
    let code_record = CodeRecord {
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.code_challenge.clone(),
        resource: p.resource.clone(),
        scope: p.scope.clone(),
        sub: identity.sub,
        username: identity.username,
        grant_id: grant.grant_id,
        expires_at: now.plus(app.settings.code_ttl),
        redeemed_family: None,
    };
    app.store
        .insert_code(&TokenHash::of(&code), &code_record)
        .await?;
    tracing::info!(target: "security", client_id = %p.client_id, "login completed; code issued");
    Ok(code)
}
