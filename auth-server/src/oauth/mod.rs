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
use shared::{OAuthError, Scope};

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

/// The scope granted for a request (RFC 6749 §3.3): absent means everything `allowed`;
/// present must be a non-empty subset of `allowed`, else `invalid_scope`.
pub fn check_scope(requested: Option<&str>, allowed: &Scope) -> Result<Scope, OAuthError> {
    let Some(requested) = requested else {
        return if allowed.is_empty() {
            Err(OAuthError::invalid_scope("no scope left to grant"))
        } else {
            Ok(allowed.clone())
        };
    };
    let asked = Scope::parse(requested).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    if asked.is_empty() || !asked.is_subset(allowed) {
        return Err(OAuthError::invalid_scope(format!(
            "scope must be within `{allowed}`"
        )));
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_narrows_and_refuses() {
        let allowed = Scope::parse("read write").unwrap();
        assert_eq!(check_scope(None, &allowed).unwrap(), allowed);
        assert_eq!(
            check_scope(Some("read"), &allowed).unwrap().to_string(),
            "read"
        );
        assert!(check_scope(Some("read admin"), &allowed).is_err());
        assert!(check_scope(Some(" "), &allowed).is_err());
        assert!(check_scope(None, &Scope::default()).is_err());
    }
}
