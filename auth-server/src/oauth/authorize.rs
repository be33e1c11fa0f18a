//! `GET /oauth/authorize` (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1, RFC 7636, RFC 8707, RFC 9207).
//!
//! Checks run in a fixed order. Until the client and its redirect URI are trusted, failures
//! are HTML pages and never redirects (RFC 6749 §4.1.2.1). After that, failures go back to the
//! client as `error=` with `state` and `iss`. A valid request is stored as pending and the
//! browser goes to the consent page, unless this browser session already approved this client
//! and redirect URI, in which case it goes straight on to TaskManager.

use super::client_metadata::{self, CimdError};
use super::consent;
use crate::extract::Params;
use crate::ops::Metrics;
use crate::pages::error_page;
use crate::state::AppState;
use crate::store::{ClientRecord, PendingRecord};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shared::secret::{TokenHash, opaque_token};
use shared::{ErrorCode, OAuthError, Scope, UnixTime, paths, pkce, redirect_uri, resource};
use tower_sessions::Session;
use url::Url;

/// Routes of this module (and the root alias).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::AUTHORIZE, get(authorize))
        .route(paths::AUTHORIZE_ALIAS, get(authorize))
}

/// Session key of the random value that binds a flow to this browser.
pub const SESSION_BINDING: &str = "browser_binding";

/// A 302 to the client's redirect URI with `params`, plus `iss` (RFC 9207 §2).
pub fn redirect_to_client(redirect_uri: &str, issuer: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI is not a valid URL.",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", issuer);
    }
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An OAuth error sent back to the client (RFC 6749 §4.1.2.1).
pub fn redirect_error(
    redirect_uri: &str,
    issuer: &str,
    state: Option<&str>,
    err: &OAuthError,
) -> Response {
    let mut params = vec![
        ("error", err.code.as_str()),
        ("error_description", err.description.as_ref()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    redirect_to_client(redirect_uri, issuer, &params)
}

/// The session's browser binding, created on first use.
pub async fn browser_binding(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(b) = session.get::<String>(SESSION_BINDING).await? {
        return Ok(b);
    }
    let b = opaque_token();
    session.insert(SESSION_BINDING, &b).await?;
    Ok(b)
}

/// Client and redirect URI are trusted from here on.
struct TrustedRequest {
    client: ClientRecord,
    redirect_uri: String,
    state: Option<String>,
}

/// Failures before the redirect URI is trusted: shown as a page.
fn check_client_and_redirect(
    params: &Params,
    client: Option<ClientRecord>,
) -> Result<TrustedRequest, Response> {
    let page = |title: &str, msg: &str| Err(error_page(StatusCode::BAD_REQUEST, title, msg));
    let Some(client) = client else {
        return page(
            "Unknown application",
            "The application that sent you here is not registered with this server (unknown client_id). It may need to register again.",
        );
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_uri::matches(r, uri)) =>
        {
            uri.to_owned()
        }
        Some(_) => {
            return page(
                "Redirect address not registered",
                "The address this application asked to return you to is not one it registered, so the request was stopped to protect you.",
            );
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return page(
                "Missing redirect address",
                "The request does not say where to return you (redirect_uri), and the application registered more than one address.",
            );
        }
    };
    Ok(TrustedRequest {
        state: params.get("state").map(str::to_owned),
        client,
        redirect_uri,
    })
}

/// Checks after the redirect URI is trusted, in order; each fails with one RFC error.
fn check_request(
    app: &AppState,
    params: &Params,
    client: &ClientRecord,
) -> Result<(String, String, Scope), OAuthError> {
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "missing parameter `response_type`",
            ));
        }
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OAuthError::unauthorized_client(
            "this client did not register the authorization_code grant",
        ));
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        OAuthError::invalid_request(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        )
    })?;
    match params.get("code_challenge_method") {
        Some(pkce::S256) => {}
        Some("plain") | None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256; plain is not allowed",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "unsupported code_challenge_method; use S256",
            ));
        }
    }
    if !pkce::is_well_formed(challenge) {
        return Err(OAuthError::invalid_request("code_challenge is malformed"));
    }
    let resource = check_resource(app, params)?;
    let allowed = Scope::parse(&client.scope)
        .unwrap_or_default()
        .intersect(&app.settings.mcp_scopes);
    let scope = super::check_scope(params.get("scope"), &allowed)?;
    Ok((challenge.to_owned(), resource, scope))
}

/// RFC 8707: absent → the one configured resource; otherwise it must name that resource
/// (case of scheme/host and a trailing slash do not matter).
pub fn check_resource(app: &AppState, params: &Params) -> Result<String, OAuthError> {
    match params.resource()? {
        None => Ok(app.settings.resource.clone()),
        Some(r) => {
            let canonical =
                resource::canonicalize(r).map_err(|e| OAuthError::invalid_target(e.to_string()))?;
            if canonical == app.settings.resource {
                Ok(canonical)
            } else {
                Err(OAuthError::invalid_target(format!(
                    "unknown resource; this server protects {}",
                    app.settings.resource
                )))
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(client_id))]
async fn authorize(
    State(app): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let now = app.clock.now();
    Metrics::inc(&app.metrics.authorizations);
    let params = match Params::parse(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid sign-in request",
                &e.description,
            );
        }
    };
    let Some(client_id) = params.get("client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid sign-in request",
            "The request does not name an application (client_id is missing).",
        );
    };
    tracing::Span::current().record("client_id", client_id);
    let client = match client_metadata::find_client(&app, client_id, now).await {
        Ok(c) => c,
        Err(e) => return client_metadata_page(client_id, e),
    };
    let trusted = match check_client_and_redirect(&params, client) {
        Ok(t) => t,
        Err(page) => return page,
    };
    let issuer = &app.settings.issuer;
    let (challenge, resource, scope) = match check_request(&app, &params, &trusted.client) {
        Ok(v) => v,
        Err(e) => {
            return redirect_error(&trusted.redirect_uri, issuer, trusted.state.as_deref(), &e);
        }
    };
    match start(&app, &session, trusted, challenge, resource, scope, now).await {
        Ok(r) => r,
        Err(e) => internal_page(e),
    }
}

async fn start(
    app: &AppState,
    session: &Session,
    trusted: TrustedRequest,
    challenge: String,
    resource: String,
    scope: Scope,
    now: UnixTime,
) -> Result<Response, crate::error::Error> {
    let binding = browser_binding(session).await.map_err(session_error)?;
    let pending = PendingRecord {
        client_id: trusted.client.client_id.clone(),
        redirect_uri: trusted.redirect_uri,
        state: trusted.state,
        code_challenge: challenge,
        resource,
        scope: scope.to_string(),
        browser_binding: binding,
        expires_at: now.plus(app.settings.login_ttl),
    };
    if consent::is_remembered(session, &pending).await {
        return consent::start_upstream(app, pending, now).await;
    }
    let request_id = opaque_token();
    app.store
        .insert_pending(&TokenHash::of(&request_id), &pending)
        .await?;
    let location = format!("{}?request_id={request_id}", paths::CONSENT);
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// A URL `client_id` whose metadata document cannot be used: the client is not trusted, so a
/// page, never a redirect (draft-ietf-oauth-client-id-metadata-document §4).
fn client_metadata_page(client_id: &str, e: CimdError) -> Response {
    if let CimdError::Store(e) = e {
        return internal_page(e);
    }
    error_page(
        StatusCode::BAD_REQUEST,
        "Application could not be verified",
        &format!(
            "The application that sent you here identifies itself by the address {client_id}, but its description there could not be used ({}). The request was stopped to protect you.",
            e.public_message()
        ),
    )
}

/// A session-layer failure is a storage failure.
pub fn session_error(e: tower_sessions::session::Error) -> crate::error::Error {
    crate::error::Error::Store(crate::store::StoreError::Backend(e.to_string()))
}

/// A page for an internal failure; the detail goes to the log only.
pub fn internal_page(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "internal error during sign-in");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The sign-in could not be completed because of an internal error. Please try again.",
    )
}
