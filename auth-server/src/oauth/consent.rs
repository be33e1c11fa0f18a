//! `GET/POST /oauth/consent`: the user approves or denies a client (MCP security best
//! practices, "confused deputy"). The page names the client, its full redirect URI with the
//! host prominent, the scopes and the resource; the form carries a CSRF token bound to the
//! browser session; the page cannot be framed. Approval is remembered per client and redirect
//! URI in this browser session. The upstream `state` is created only after approval, bound to
//! the same browser session.

use super::authorize::{browser_binding, internal_page, redirect_error};
use super::client_metadata;
use crate::extract::Params;
use crate::pages::{Consent, consent_page, error_page};
use crate::state::AppState;
use crate::store::{PendingRecord, UpstreamStateRecord};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shared::secret::{TokenHash, constant_time_eq, opaque_token};
use shared::{ErrorCode, OAuthError, UnixTime, paths, pkce};
use tower_sessions::Session;
use url::Url;

const SESSION_CSRF: &str = "csrf_token";
const SESSION_CONSENTS: &str = "consents";

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(paths::CONSENT, get(show).post(decide))
}

fn consent_key(p: &PendingRecord) -> String {
    format!("{} {}", p.client_id, p.redirect_uri)
}

/// Whether this browser session already approved this client and redirect URI.
pub async fn is_remembered(session: &Session, pending: &PendingRecord) -> bool {
    let consents: Vec<String> = session
        .get(SESSION_CONSENTS)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    consents.contains(&consent_key(pending))
}

async fn remember(
    session: &Session,
    pending: &PendingRecord,
) -> Result<(), tower_sessions::session::Error> {
    let mut consents: Vec<String> = session.get(SESSION_CONSENTS).await?.unwrap_or_default();
    let key = consent_key(pending);
    if !consents.contains(&key) {
        consents.push(key);
        // Bound the session's size.
        if consents.len() > 50 {
            consents.remove(0);
        }
    }
    session.insert(SESSION_CONSENTS, consents).await
}

async fn csrf_token(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(t) = session.get::<String>(SESSION_CSRF).await? {
        return Ok(t);
    }
    let t = opaque_token();
    session.insert(SESSION_CSRF, &t).await?;
    Ok(t)
}

fn expired_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired",
        "The sign-in request is unknown, expired, already answered, or was started in another browser. Start the sign-in again from your application.",
    )
}

/// Human descriptions of our scopes.
fn describe_scope(scope: &str) -> &'static str {
    match scope {
        "read" => "read your tasks",
        "write" => "create, change and delete your tasks",
        _ => "access granted by this scope",
    }
}

#[derive(Deserialize)]
struct ShowParams {
    request_id: Option<String>,
}

async fn show(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<ShowParams>,
) -> Response {
    let now = app.clock.now();
    let Some(request_id) = q.request_id.filter(|r| !r.is_empty()) else {
        return expired_page();
    };
    let pending = match app
        .store
        .get_pending(&TokenHash::of(&request_id), now)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return expired_page(),
        Err(e) => return internal_page(e),
    };
    match session
        .get::<String>(super::authorize::SESSION_BINDING)
        .await
    {
        Ok(Some(b)) if constant_time_eq(&b, &pending.browser_binding) => {}
        Ok(_) => return expired_page(),
        Err(e) => return internal_page(e),
    }
    let client = match app.store.get_client(&pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return expired_page(),
        Err(e) => return internal_page(e),
    };
    let csrf = match csrf_token(&session).await {
        Ok(t) => t,
        Err(e) => return internal_page(e),
    };
    let host = Url::parse(&pending.redirect_uri)
        .ok()
        .map(|u| match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => format!("{}: (application link)", u.scheme()),
        })
        .unwrap_or_default();
    let client_id_host = client_metadata::is_url_client_id(&client.client_id)
        .then(|| Url::parse(&client.client_id).ok())
        .flatten()
        .and_then(|u| u.host_str().map(str::to_owned));
    let scopes: Vec<(&str, &str)> = pending
        .scope
        .split(' ')
        .map(|s| (s, describe_scope(s)))
        .collect();
    let name = client
        .client_name
        .as_deref()
        .unwrap_or("An unnamed application");
    let form_targets = [
        app.upstream.settings().authorize_url.as_str(),
        pending.redirect_uri.as_str(),
    ]
    .iter()
    .filter_map(|u| Url::parse(u).ok())
    .map(|u| match u.origin() {
        origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", u.scheme()),
    })
    .collect();
    consent_page(&Consent {
        client_name: name,
        client_id: &client.client_id,
        client_id_host: client_id_host.as_deref(),
        redirect_uri: &pending.redirect_uri,
        redirect_host: &host,
        scopes,
        resource: &pending.resource,
        request_id: &request_id,
        csrf: &csrf,
        action: paths::CONSENT,
        upstream_name: "TaskManager",
        form_targets,
    })
}

async fn decide(
    State(app): State<AppState>,
    session: Session,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let now = app.clock.now();
    let Ok(body) = body else {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The consent form sent was too large to read. Go back to the application and start \
             the sign-in again.",
        );
    };
    let params = match std::str::from_utf8(&body)
        .map_err(|_| ())
        .and_then(|t| Params::parse(t).map_err(|_| ()))
    {
        Ok(p) => p,
        Err(()) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid form",
                "The consent form could not be read.",
            );
        }
    };
    let csrf_ok = match session.get::<String>(SESSION_CSRF).await {
        Ok(Some(t)) => params
            .get("csrf_token")
            .is_some_and(|given| constant_time_eq(&t, given)),
        Ok(None) => false,
        Err(e) => return internal_page(e),
    };
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request not accepted",
            "The consent form did not come from this browser session (CSRF check failed). Start the sign-in again from your application.",
        );
    }
    let Some(request_id) = params.get("request_id") else {
        return expired_page();
    };
    let pending = match app
        .store
        .take_pending(&TokenHash::of(request_id), now)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return expired_page(),
        Err(e) => return internal_page(e),
    };
    match browser_binding(&session).await {
        Ok(b) if constant_time_eq(&b, &pending.browser_binding) => {}
        Ok(_) => return expired_page(),
        Err(e) => return internal_page(e),
    }
    match params.get("decision") {
        Some("approve") => {
            if let Err(e) = remember(&session, &pending).await {
                return internal_page(e);
            }
            tracing::info!(target: "security", client_id = %pending.client_id, "consent approved");
            start_upstream(&app, pending, now)
                .await
                .unwrap_or_else(internal_page)
        }
        Some("deny") => {
            tracing::info!(target: "security", client_id = %pending.client_id, "consent denied");
            let err = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            redirect_error(
                &pending.redirect_uri,
                &app.settings.issuer,
                pending.state.as_deref(),
                &err,
            )
        }
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "Choose Approve or Deny.",
        ),
    }
}

/// After approval: create our upstream `state`, PKCE verifier and nonce, remember them bound
/// to the pending request (and so to this browser), and send the browser to TaskManager.
pub async fn start_upstream(
    app: &AppState,
    pending: PendingRecord,
    now: UnixTime,
) -> Result<Response, crate::error::Error> {
    let state = opaque_token();
    let (verifier, challenge) = pkce::new_pair();
    let nonce = opaque_token();
    let record = UpstreamStateRecord {
        upstream_verifier_enc: app.vault.seal_str(&verifier),
        nonce: nonce.clone(),
        expires_at: now.plus(app.settings.login_ttl),
        pending,
    };
    app.store
        .insert_upstream_state(&TokenHash::of(&state), &record)
        .await?;
    let callback = format!("{}{}", app.settings.issuer, paths::CALLBACK);
    let url = app
        .upstream
        .authorize_url(&callback, &state, &challenge, &nonce);
    let mut r = StatusCode::SEE_OTHER.into_response();
    let location =
        HeaderValue::from_str(url.as_str()).map_err(|e| session_error_from(e.to_string()))?;
    r.headers_mut().insert(header::LOCATION, location);
    Ok(r)
}

fn session_error_from(msg: String) -> crate::error::Error {
    crate::error::Error::Store(crate::store::StoreError::Backend(msg))
}
