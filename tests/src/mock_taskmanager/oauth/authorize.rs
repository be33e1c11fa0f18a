//! `GET /api/oauth/authorize` (RFC 6749 §4.1.1, RFC 7636 §4.3) and the consent decision.
//!
//! Checks run in this order: the client and its redirect URI (failures are an HTML page and
//! never a redirect, §4.1.2.1), then the request itself (failures go back to the client),
//! then the user's session (absent: the login page), then consent. The consent form carries
//! `request_id` (the pending request) and `csrf` (bound to the browser session); its buttons
//! are `decision=approve` and `decision=deny`.

use super::super::pages::{self, ConsentView};
use super::super::state::{ClientRecord, CodeRecord, MockState, PendingAuthorization};
use super::super::users::current_session;
use super::super::util::{param, parse_params};
use super::token::CODE_TTL;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use shared::secret::{TokenHash, constant_time_eq, opaque_token};
use shared::{ErrorCode, Scope, UnixTime, pkce};
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// How long the consent page stays answerable.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// The validated parts of an authorization request.
struct AuthRequest {
    scope: Scope,
    code_challenge: Option<String>,
    nonce: Option<String>,
}

/// Where to send the browser back: the trusted redirect URI and the client's `state`.
struct ReplyTo {
    redirect_uri: String,
    state: Option<String>,
}

impl ReplyTo {
    /// `302` to the redirect URI with `params` and `state` added to its query.
    fn redirect(&self, params: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Invalid redirect URI",
                "The registered redirect URI is not a URL.",
            );
        };
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in params {
                query.append_pair(k, v);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
        }
        found(url.as_str())
    }

    fn error(&self, code: ErrorCode, description: &str) -> Response {
        self.redirect(&[("error", code.as_str()), ("error_description", description)])
    }
}

/// A `302 Found` to `location`.
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => pages::error(
            StatusCode::BAD_REQUEST,
            "Bad redirect",
            "The redirect target is not a valid header value.",
        ),
    }
}

fn bad_request(message: &str) -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid authorization request",
        message,
    )
}

pub(super) async fn authorize(
    State(state): State<MockState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let now = UnixTime::now();
    let params = match parse_params(uri.query().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let (client, redirect_uri, redirect_uri_sent) = match check_client(&state, &params) {
        Ok(v) => v,
        Err(message) => return bad_request(&message),
    };
    let reply = ReplyTo {
        redirect_uri: redirect_uri.clone(),
        state: param(&params, "state").map(str::to_owned),
    };
    let request = match check_request(&params, &client) {
        Ok(r) => r,
        Err((code, description)) => return reply.error(code, &description),
    };
    let Some((user, session, record)) = current_session(&state, &headers, now) else {
        let next = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or(super::AUTHORIZE);
        let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        return found(&format!("/login?next={next}"));
    };
    let request_id = opaque_token();
    state.db().pending.insert(
        request_id.clone(),
        PendingAuthorization {
            session,
            client_id: client.client_id.clone(),
            redirect_uri,
            redirect_uri_sent,
            scope: request.scope.clone(),
            state: reply.state,
            code_challenge: request.code_challenge,
            nonce: request.nonce,
            expires_at: now.plus(PENDING_TTL),
        },
    );
    pages::consent(&ConsentView {
        username: user.username,
        client_name: &client.name,
        client_id: &client.client_id,
        redirect_uri: &reply.redirect_uri,
        scopes: request.scope.iter().collect(),
        request_id: &request_id,
        csrf: &record.csrf,
    })
}

/// The client and the redirect URI to answer at (RFC 6749 §3.1.2.3: exact match; when
/// omitted, the client's only registered one).
fn check_client(
    state: &MockState,
    params: &HashMap<String, String>,
) -> Result<(ClientRecord, String, bool), String> {
    let client_id = param(params, "client_id").ok_or("client_id is required")?;
    let client = state
        .db()
        .client(client_id)
        .cloned()
        .ok_or_else(|| format!("Unknown client `{client_id}`."))?;
    match param(params, "redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => {
            let uri = uri.to_owned();
            Ok((client, uri, true))
        }
        Some(uri) => Err(format!(
            "The redirect URI `{uri}` is not registered for client `{client_id}`."
        )),
        None => match client.redirect_uris.as_slice() {
            [only] => {
                let only = only.clone();
                Ok((client, only, false))
            }
            _ => Err("redirect_uri is required: this client registered several.".into()),
        },
    }
}

/// The request parameters other than client and redirect URI (RFC 6749 §4.1.1, RFC 7636 §4.3).
fn check_request(
    params: &HashMap<String, String>,
    client: &ClientRecord,
) -> Result<AuthRequest, (ErrorCode, String)> {
    match param(params, "response_type") {
        Some("code") => {}
        None => {
            return Err((
                ErrorCode::InvalidRequest,
                "response_type is required".into(),
            ));
        }
        Some(_) => {
            return Err((
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported".into(),
            ));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err((
            ErrorCode::UnauthorizedClient,
            "this client is not registered for the authorization_code grant".into(),
        ));
    }
    let scope = match param(params, "scope") {
        None => client.scope.clone(),
        Some(s) => Scope::parse(s).map_err(|e| (ErrorCode::InvalidScope, e.to_string()))?,
    };
    // `openid` is a protocol scope (OpenID Connect Core §3.1.2.1), not a permission: like real
    // OpenID providers, allow it for every client on top of the scopes it registered.
    let allowed = Scope::from_tokens(client.scope.iter().chain(["openid"]));
    if scope.is_empty() || !scope.is_subset(&allowed) {
        return Err((
            ErrorCode::InvalidScope,
            format!("scope must be a non-empty subset of `{allowed}`"),
        ));
    }
    let code_challenge = match (
        param(params, "code_challenge"),
        param(params, "code_challenge_method"),
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err((
                ErrorCode::InvalidRequest,
                "code_challenge_method without code_challenge".into(),
            ));
        }
        (Some(_), method) if method != Some(pkce::S256) => {
            // RFC 7636 §4.3: an absent method means `plain`, which OAuth 2.1 forbids.
            return Err((
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256".into(),
            ));
        }
        (Some(c), _) if !pkce::is_well_formed(c) => {
            return Err((
                ErrorCode::InvalidRequest,
                "code_challenge must be 43-128 characters of [A-Za-z0-9-._~]".into(),
            ));
        }
        (Some(c), _) => Some(c.to_owned()),
    };
    let nonce = param(params, "nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err((ErrorCode::InvalidRequest, "nonce is too long".into()));
    }
    Ok(AuthRequest {
        scope,
        code_challenge,
        nonce,
    })
}

/// `POST /api/oauth/authorize/decision`: the consent form's answer.
pub(super) async fn decision(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let now = UnixTime::now();
    let params = match parse_params(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let Some((_, session, record)) = current_session(&state, &headers, now) else {
        return pages::error(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended. Sign in and start the authorization again.",
        );
    };
    let csrf = param(&params, "csrf").unwrap_or_default();
    if !constant_time_eq(csrf, &record.csrf) {
        tracing::warn!(target: "security", "consent form with a wrong CSRF token");
        return pages::error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is stale or was not sent by TaskManager (CSRF check failed).",
        );
    }
    let approve = match param(&params, "decision") {
        Some("approve") => true,
        Some("deny") => false,
        Some(_) => return bad_request("decision must be approve or deny."),
        None if params.contains_key("approve") => true,
        None if params.contains_key("deny") => false,
        None => return bad_request("decision is required (approve or deny)."),
    };
    let request_id = param(&params, "request_id").unwrap_or_default();
    let pending = {
        let mut db = state.db();
        match db.pending.get(request_id) {
            Some(p) if p.session == session => db.pending.remove(request_id),
            _ => None,
        }
    };
    let Some(pending) = pending.filter(|p| now < p.expires_at) else {
        return bad_request("This authorization request is unknown or has expired; start again.");
    };
    let reply = ReplyTo {
        redirect_uri: pending.redirect_uri.clone(),
        state: pending.state.clone(),
    };
    if !approve {
        return reply.error(ErrorCode::AccessDenied, "the user denied the request");
    }
    let code = opaque_token();
    state.db().codes.insert(
        TokenHash::of(&code),
        CodeRecord {
            client_id: pending.client_id,
            redirect_uri: pending.redirect_uri,
            redirect_uri_sent: pending.redirect_uri_sent,
            scope: pending.scope,
            sub: record.sub,
            code_challenge: pending.code_challenge,
            nonce: pending.nonce,
            expires_at: now.plus(CODE_TTL),
            redeemed: None,
        },
    );
    reply.redirect(&[("code", &code)])
}
