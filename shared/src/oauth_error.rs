//! One error type for every OAuth endpoint, rendered as RFC 6749 §5.2 JSON
//! (`{"error": ..., "error_description": ...}`) with `Cache-Control: no-store`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The `error` codes of RFC 6749 §4.1.2.1 / §5.2, RFC 7591 §3.2.2, RFC 8707 §2, RFC 6750 §3.1
/// and RFC 7009 §2.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidTarget,
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidToken,
    InsufficientScope,
    UnsupportedTokenType,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The HTTP status RFC 6749 §5.2 (and its extensions) give this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered on an OAuth endpoint, rendered as RFC 6749 §5.2 JSON.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// The client authenticated with HTTP Basic: §5.2 then requires 401 and a Basic challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    /// An error with a description safe to show the client.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }
    /// Adds `WWW-Authenticate: Basic` (RFC 6749 §5.2, `invalid_client` via Basic).
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    /// An internal failure; the description is generic, details go to the log only.
    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }
    pub fn temporarily_unavailable(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, d)
    }
    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code.as_str().to_owned(),
            error_description: Some(self.description.to_string()),
        }
    }
}

/// RFC 6749 §5.2 error body, also used by clients to parse errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = if self.basic_challenge {
            StatusCode::UNAUTHORIZED
        } else {
            self.code.status()
        };
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="oauth", charset="UTF-8""#),
            );
        }
        if self.code == ErrorCode::TemporarilyUnavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_rfc6749() {
        assert_eq!(ErrorCode::InvalidGrant.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::InvalidClient.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ErrorCode::TemporarilyUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn codes_serialize_as_wire_names() {
        for code in [ErrorCode::InvalidTarget, ErrorCode::UnsupportedGrantType] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn basic_challenge_sets_header() {
        let r = OAuthError::invalid_client("bad")
            .with_basic_challenge()
            .into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
