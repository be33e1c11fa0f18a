//! Errors of the mock's JSON APIs (clients, tasks, knobs): `{"error": ..., "message": ...}`.
//! The token endpoint uses `shared::OAuthError` instead (RFC 6749 §5.2).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::borrow::Cow;

/// A JSON API error with its status and, for bearer-protected routes, its challenge.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: Cow<'static, str>,
    /// `WWW-Authenticate` value (RFC 6750 §3) for 401/403 on bearer-protected routes.
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            challenge: None,
        }
    }
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 401 `invalid_token` (RFC 6750 §3.1) with its Bearer challenge.
    pub fn invalid_token(message: &'static str) -> Self {
        Self {
            challenge: Some(format!(
                r#"Bearer realm="taskmanager", error="invalid_token", error_description="{message}""#
            )),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", message)
        }
    }
    /// 403 `insufficient_scope` (RFC 6750 §3.1) naming the scope needed.
    pub fn insufficient_scope(scope: &'static str) -> Self {
        Self {
            challenge: Some(format!(
                r#"Bearer realm="taskmanager", error="insufficient_scope", scope="{scope}""#
            )),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this request needs the `{scope}` scope"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(value) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
