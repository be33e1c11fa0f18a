//! The OAuth endpoints, one module per endpoint (DESIGN §2).

pub mod authorize;
pub mod callback;
pub mod client_metadata;
pub mod consent;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod register;
pub mod revoke;
pub mod token;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// A response that must not be cached (RFC 6749 §5.1: token, introspection, registration).
pub struct NoStore<T>(pub T);

impl<T: IntoResponse> IntoResponse for NoStore<T> {
    fn into_response(self) -> Response {
        let mut r = self.0.into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut()
            .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        r
    }
}
