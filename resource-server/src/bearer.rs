//! Bearer-token protection of `/mcp`: RFC 6750 (§2.1 header only, §3 challenges), RFC 9728
//! §5.1 (`resource_metadata` in the challenge), RFC 7662 introspection, and the MCP
//! authorization spec (audience check; 403 `insufficient_scope` step-up per tool).
//!
//! The checks run in this order, each failing with one answer:
//! 1. `check_origin` (DNS-rebinding protection) → 403;
//! 2. `check_no_query_token` (RFC 6750 §2.3 is not supported) → 400 `invalid_request`;
//! 3. `peek_body`: a POST body must be JSON (else a JSON-RPC parse error, 400) and tells
//!    which scope the request needs (`tools/call` of a write tool needs `write`);
//! 4. `bearer_token` → 401 without `error` when absent, `invalid_token` when malformed;
//! 5. introspection (cached) → 503 + `Retry-After` when the auth server cannot answer,
//!    never 401, which would send the client into a login loop;
//! 6. `check_token` (active, unexpired, audience is this resource) → 401 `invalid_token`;
//! 7. `check_scope` → 403 `insufficient_scope` naming the missing scope;
//! 8. the session, if any, belongs to the same user → 404 otherwise.
//!
//! The checked [`Identity`] goes into the request's extensions, where rmcp hands it to the
//! tools (inside `http::request::Parts`).

use crate::AppState;
use crate::sessions::SessionCheck;
use crate::tools;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::introspection::IntrospectionResponse;
use shared::{ErrorCode, Scope, Secret, UnixTime};
use std::fmt;

/// Largest JSON-RPC body accepted on `/mcp`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The MCP session header (streamable HTTP transport).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Who the request's access token speaks for, as the auth server described it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// TaskManager's user id.
    pub sub: String,
    pub username: Option<String>,
    /// The MCP client the token was issued to.
    pub client_id: Option<String>,
    pub scope: Scope,
    /// Expiry (Unix seconds).
    pub exp: Option<u64>,
    /// The MCP access token itself: the subject token of the token exchange, and nothing
    /// else (it is never sent to TaskManager).
    pub token: Secret<String>,
}

/// A `WWW-Authenticate: Bearer` challenge (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub error: Option<ErrorCode>,
    pub description: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub resource_metadata: &'a str,
}

impl fmt::Display for Challenge<'_> {
    /// Without an error: `Bearer resource_metadata="…", scope="…"`; with one:
    /// `Bearer error="…", error_description="…", scope="…", resource_metadata="…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut params: Vec<(&str, &str)> = Vec::new();
        match self.error {
            None => {
                params.push(("resource_metadata", self.resource_metadata));
                params.extend(self.scope.map(|s| ("scope", s)));
            }
            Some(code) => {
                params.push(("error", code.as_str()));
                params.extend(self.description.map(|d| ("error_description", d)));
                params.extend(self.scope.map(|s| ("scope", s)));
                params.push(("resource_metadata", self.resource_metadata));
            }
        }
        f.write_str("Bearer ")?;
        for (i, (name, value)) in params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}=\"{}\"", quote(value))?;
        }
        Ok(())
    }
}

/// The inside of an RFC 9110 quoted-string: `"` and `\` escaped, control characters dropped.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Why a request to `/mcp` is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A browser origin that is neither this resource, loopback, nor allowed.
    OriginRefused,
    /// `access_token` in the query string (RFC 6750 §2.3, which we do not support).
    QueryToken,
    /// More than one `Authorization` header.
    DuplicateAuthorization,
    /// No bearer token at all: a plain challenge (RFC 6750 §3.1, no error code).
    MissingToken,
    /// Present but unusable: malformed, inactive, expired, or for another audience.
    InvalidToken(&'static str),
    /// Valid, but lacking these scopes (space-delimited).
    InsufficientScope(String),
    /// The auth server could not be asked.
    Unavailable,
    /// Not JSON (JSON-RPC -32700).
    ParseError,
    /// JSON, but not a JSON-RPC message (JSON-RPC -32600).
    InvalidJsonRpc(Option<serde_json::Value>),
    /// Larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The `Mcp-Session-Id` belongs to another user.
    ForeignSession,
}

impl Rejection {
    /// The HTTP answer, with the challenge pointing at `resource_metadata`.
    pub fn into_response(self, resource_metadata: &str) -> Response {
        let challenge = |error, description, scope| Challenge {
            error,
            description,
            scope,
            resource_metadata,
        };
        match self {
            Self::OriginRefused => plain(StatusCode::FORBIDDEN, "Forbidden: Origin not allowed"),
            Self::QueryToken => oauth(
                StatusCode::BAD_REQUEST,
                challenge(
                    Some(ErrorCode::InvalidRequest),
                    Some(
                        "access tokens are not accepted in the query string; send an Authorization: Bearer header",
                    ),
                    None,
                ),
            ),
            Self::DuplicateAuthorization => oauth(
                StatusCode::BAD_REQUEST,
                challenge(
                    Some(ErrorCode::InvalidRequest),
                    Some("send exactly one Authorization header"),
                    None,
                ),
            ),
            Self::MissingToken => oauth(
                StatusCode::UNAUTHORIZED,
                challenge(None, None, Some(tools::READ)),
            ),
            Self::InvalidToken(description) => oauth(
                StatusCode::UNAUTHORIZED,
                challenge(Some(ErrorCode::InvalidToken), Some(description), None),
            ),
            Self::InsufficientScope(scope) => oauth(
                StatusCode::FORBIDDEN,
                challenge(Some(ErrorCode::InsufficientScope), None, Some(&scope)),
            ),
            Self::Unavailable => {
                let mut r = shared::OAuthError::temporarily_unavailable(
                    "the authorization server cannot be reached to check the access token; retry shortly",
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            Self::ParseError => jsonrpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32700,
                "Parse error: the request body is not valid JSON",
            ),
            Self::InvalidJsonRpc(id) => jsonrpc_error(
                StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Invalid Request: the body is not a JSON-RPC 2.0 message",
            ),
            Self::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
            Self::ForeignSession => plain(StatusCode::NOT_FOUND, "Not Found: Session not found"),
        }
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// An RFC 6750 error: the challenge, and the same code as RFC 6749 §5.2 JSON for humans.
fn oauth(status: StatusCode, challenge: Challenge<'_>) -> Response {
    let body = match challenge.error {
        Some(code) => serde_json::json!({
            "error": code.as_str(),
            "error_description": challenge.description.map(str::to_owned).unwrap_or_else(|| {
                format!(
                    "the access token lacks the scope `{}` this request needs",
                    challenge.scope.unwrap_or_default()
                )
            }),
        }),
        None => serde_json::json!({
            "error": "unauthorized",
            "error_description": "an access token is required; see the WWW-Authenticate header",
        }),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge.to_string()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn jsonrpc_error(
    status: StatusCode,
    id: Option<serde_json::Value>,
    code: i64,
    message: &'static str,
) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": { "code": code, "message": message },
    });
    (status, axum::Json(body)).into_response()
}

/// Step 1.
pub fn check_origin(headers: &HeaderMap, app: &AppState) -> Result<(), Rejection> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return Ok(());
    };
    let allowed = origins.next().is_none() && origin.to_str().is_ok_and(|o| app.origins.allows(o));
    if allowed {
        Ok(())
    } else {
        tracing::warn!(target: "security", origin = ?origin, "refused request from a foreign Origin");
        Err(Rejection::OriginRefused)
    }
}

/// Step 2: RFC 6750 §2.3 query tokens leak into logs and histories; refuse them.
pub fn check_no_query_token(query: Option<&str>) -> Result<(), Rejection> {
    let Some(query) = query else { return Ok(()) };
    if url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token") {
        return Err(Rejection::QueryToken);
    }
    Ok(())
}

/// Step 3: the scopes a JSON-RPC body needs: `read` for everything, plus the tool's scope
/// for `tools/call`. The body must be one JSON-RPC message as rmcp reads it (batches left
/// JSON-RPC in MCP 2025-06-18), so every malformed body gets a JSON-RPC error here.
pub fn peek_body(body: &[u8]) -> Result<Scope, Rejection> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Rejection::ParseError)?;
    let Some(object) = value.as_object() else {
        return Err(Rejection::InvalidJsonRpc(None));
    };
    let id = object.get("id").cloned();
    if serde_json::from_value::<rmcp::model::ClientJsonRpcMessage>(value.clone()).is_err() {
        return Err(Rejection::InvalidJsonRpc(id));
    }
    let mut needed = vec![tools::READ];
    if object.get("method").and_then(|m| m.as_str()) == Some("tools/call") {
        let name = object
            .get("params")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        needed.push(tools::required_scope(name));
    }
    Ok(Scope::from_tokens(needed))
}

/// Step 4: the token of the one `Authorization: Bearer` header (RFC 6750 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::MissingToken);
    };
    if values.next().is_some() {
        return Err(Rejection::DuplicateAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| Rejection::InvalidToken("the Authorization header is malformed"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme is not a bearer token at all: challenge as if none was sent.
        return Err(Rejection::MissingToken);
    }
    let token = token.trim_matches(' ');
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !well_formed {
        return Err(Rejection::InvalidToken("the access token is malformed"));
    }
    Ok(token)
}

/// Step 6: what the auth server said makes this token usable here at `now`.
pub fn check_token(
    answer: &IntrospectionResponse,
    resource: &str,
    now: UnixTime,
    token: &str,
) -> Result<Identity, Rejection> {
    if !answer.active {
        return Err(Rejection::InvalidToken(
            "the access token is invalid, expired or revoked",
        ));
    }
    if answer.exp.is_some_and(|exp| exp <= now.0) {
        return Err(Rejection::InvalidToken("the access token has expired"));
    }
    // RFC 8707 / MCP: a token for another resource must not be accepted (no passthrough).
    if !answer
        .aud
        .as_deref()
        .is_some_and(|aud| shared::resource::same(aud, resource))
    {
        return Err(Rejection::InvalidToken(
            "the access token was not issued for this resource",
        ));
    }
    if answer.token_type.as_deref().is_some_and(|t| {
        !t.eq_ignore_ascii_case("bearer") && !t.eq_ignore_ascii_case("access_token")
    }) {
        return Err(Rejection::InvalidToken("the token is not an access token"));
    }
    let Some(sub) = answer.sub.clone().filter(|s| !s.is_empty()) else {
        return Err(Rejection::InvalidToken("the access token names no user"));
    };
    let scope = answer
        .scope
        .as_deref()
        .map(Scope::parse)
        .transpose()
        .map_err(|_| Rejection::InvalidToken("the access token's scope is malformed"))?
        .unwrap_or_default();
    Ok(Identity {
        sub,
        username: answer.username.clone(),
        client_id: answer.client_id.clone(),
        scope,
        exp: answer.exp,
        token: Secret::new(token.to_owned()),
    })
}

/// Step 7: every `needed` scope is granted, or 403 naming the missing ones.
pub fn check_scope(granted: &Scope, needed: &Scope) -> Result<(), Rejection> {
    let missing: Vec<&str> = needed.iter().filter(|s| !granted.contains(s)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Rejection::InsufficientScope(missing.join(" ")))
    }
}

/// The middleware in front of rmcp's `/mcp` service. See the module documentation.
pub async fn authenticate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    match check_request(&app, request).await {
        Ok((request, identity)) => {
            let session = request
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let is_delete = request.method() == Method::DELETE;
            let response = next.run(request).await;
            app.sessions
                .after_response(session.as_deref(), &identity.sub, is_delete, &response);
            response
        }
        Err(rejection) => {
            if matches!(
                rejection,
                Rejection::InvalidToken(_) | Rejection::InsufficientScope(_)
            ) {
                tracing::info!(target: "security", ?rejection, "refused bearer token");
            }
            rejection.into_response(&app.prm_url)
        }
    }
}

async fn check_request(app: &AppState, request: Request) -> Result<(Request, Identity), Rejection> {
    let (mut parts, body) = request.into_parts();
    check_origin(&parts.headers, app)?;
    check_no_query_token(parts.uri.query())?;
    let (body, mut needed) = if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| Rejection::TooLarge)?;
        let needed = peek_body(&bytes)?;
        (bytes, needed)
    } else {
        (Bytes::new(), Scope::from_tokens([tools::READ]))
    };
    let token = bearer_token(&parts.headers)?;
    let now = UnixTime::now();
    let answer = app
        .introspector
        .introspect(token, now)
        .await
        .map_err(|_| Rejection::Unavailable)?;
    let identity = check_token(&answer, &app.config.resource, now, token)?;
    if needed.is_empty() {
        needed = Scope::from_tokens([tools::READ]);
    }
    check_scope(&identity.scope, &needed)?;
    if let Some(session) = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        && app.sessions.check(session, &identity.sub) == SessionCheck::Foreign
    {
        tracing::warn!(target: "security", "refused a session id issued to another user");
        return Err(Rejection::ForeignSession);
    }
    parts.extensions.insert(identity.clone());
    Ok((Request::from_parts(parts, Body::from(body)), identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp";

    fn challenge_header(r: Rejection) -> (StatusCode, String) {
        let response = r.into_response(PRM);
        let header = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (response.status(), header)
    }

    #[test]
    fn missing_token_challenge() {
        assert_eq!(
            challenge_header(Rejection::MissingToken),
            (
                StatusCode::UNAUTHORIZED,
                format!(r#"Bearer resource_metadata="{PRM}", scope="read""#)
            )
        );
    }

    #[test]
    fn invalid_token_challenge() {
        assert_eq!(
            challenge_header(Rejection::InvalidToken("the access token has expired")),
            (
                StatusCode::UNAUTHORIZED,
                format!(
                    r#"Bearer error="invalid_token", error_description="the access token has expired", resource_metadata="{PRM}""#
                )
            )
        );
    }

    #[test]
    fn insufficient_scope_challenge() {
        assert_eq!(
            challenge_header(Rejection::InsufficientScope("write".into())),
            (
                StatusCode::FORBIDDEN,
                format!(
                    r#"Bearer error="insufficient_scope", scope="write", resource_metadata="{PRM}""#
                )
            )
        );
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_no_challenge() {
        let r = Rejection::Unavailable.into_response(PRM);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn quoted_strings_are_escaped() {
        let c = Challenge {
            error: Some(ErrorCode::InvalidToken),
            description: Some("a \"b\" \\ c\n"),
            scope: None,
            resource_metadata: "x",
        };
        assert_eq!(
            c.to_string(),
            r#"Bearer error="invalid_token", error_description="a \"b\" \\ c", resource_metadata="x""#
        );
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_extraction() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.DEF-_~+/=="])),
            Ok("abc.DEF-_~+/==")
        );
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&[])), Err(Rejection::MissingToken));
        assert_eq!(
            bearer_token(&headers(&["Basic abc"])),
            Err(Rejection::MissingToken)
        );
        assert!(matches!(
            bearer_token(&headers(&["Bearer "])),
            Err(Rejection::InvalidToken(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a b"])),
            Err(Rejection::InvalidToken(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a\"b"])),
            Err(Rejection::InvalidToken(_))
        ));
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Rejection::DuplicateAuthorization)
        );
    }

    #[test]
    fn query_tokens_are_refused() {
        assert_eq!(check_no_query_token(None), Ok(()));
        assert_eq!(check_no_query_token(Some("x=1")), Ok(()));
        assert_eq!(
            check_no_query_token(Some("x=1&access_token=abc")),
            Err(Rejection::QueryToken)
        );
    }

    #[test]
    fn body_peek_finds_the_tool_scope() {
        let read = Scope::parse("read").unwrap();
        let write = Scope::parse("read write").unwrap();
        let call = |name: &str| {
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{}}})
                .to_string()
        };
        assert_eq!(peek_body(call("list_tasks").as_bytes()), Ok(read.clone()));
        assert_eq!(peek_body(call("create_task").as_bytes()), Ok(write.clone()));
        assert_eq!(peek_body(call("delete_task").as_bytes()), Ok(write));
        assert_eq!(
            peek_body(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            Ok(read)
        );
        assert_eq!(peek_body(b"{not json"), Err(Rejection::ParseError));
        assert_eq!(
            peek_body(br#"{"id":3}"#),
            Err(Rejection::InvalidJsonRpc(Some(serde_json::json!(3))))
        );
        assert_eq!(peek_body(b"[]"), Err(Rejection::InvalidJsonRpc(None)));
        let batch = format!("[{}]", call("list_tasks"));
        assert_eq!(
            peek_body(batch.as_bytes()),
            Err(Rejection::InvalidJsonRpc(None))
        );
        assert_eq!(
            peek_body(br#"{"jsonrpc":"1.0","id":2,"method":"ping"}"#),
            Err(Rejection::InvalidJsonRpc(Some(serde_json::json!(2))))
        );
        // Unknown methods are rmcp's to answer (-32601), not a malformed message.
        assert!(peek_body(br#"{"jsonrpc":"2.0","id":2,"method":"x/y","params":{}}"#).is_ok());
    }

    fn answer() -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            scope: Some("read".into()),
            client_id: Some("c1".into()),
            sub: Some("user-alice".into()),
            aud: Some("http://127.0.0.1:8001/mcp".into()),
            exp: Some(2_000),
            token_type: Some("Bearer".into()),
            ..Default::default()
        }
    }

    #[test]
    fn token_checks() {
        let now = UnixTime(1_000);
        let res = "http://127.0.0.1:8001/mcp";
        let id = check_token(&answer(), res, now, "tok").unwrap();
        assert_eq!(id.sub, "user-alice");
        assert!(id.scope.contains("read"));
        // Canonical comparison: trailing slash and case do not matter.
        assert!(check_token(&answer(), "HTTP://127.0.0.1:8001/mcp/", now, "t").is_ok());
        let bad = |f: fn(&mut IntrospectionResponse)| {
            let mut a = answer();
            f(&mut a);
            matches!(
                check_token(&a, res, now, "t"),
                Err(Rejection::InvalidToken(_))
            )
        };
        assert!(bad(|a| a.active = false));
        assert!(bad(|a| a.exp = Some(1_000)));
        assert!(bad(|a| a.aud = Some("http://127.0.0.1:8002/mcp".into())));
        assert!(bad(|a| a.aud = None));
        assert!(bad(|a| a.sub = None));
        assert!(bad(|a| a.token_type = Some("refresh_token".into())));
    }

    #[test]
    fn scope_check_names_missing_scopes() {
        let granted = Scope::parse("read").unwrap();
        assert_eq!(
            check_scope(&granted, &Scope::parse("read").unwrap()),
            Ok(())
        );
        assert_eq!(
            check_scope(&granted, &Scope::parse("read write").unwrap()),
            Err(Rejection::InsufficientScope("write".into()))
        );
        assert_eq!(
            check_scope(&Scope::default(), &Scope::parse("read write").unwrap()),
            Err(Rejection::InsufficientScope("read write".into()))
        );
    }
}
