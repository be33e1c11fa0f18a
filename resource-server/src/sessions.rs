//! Binds MCP sessions to the user who opened them (MCP security best practices, "Session
//! Hijacking": session ids are not credentials, and a session is bound to user-specific
//! information). Every request is still authenticated by its own bearer token; this only
//! stops one user's token from driving another user's session.

use axum::http::StatusCode;
use axum::response::Response;
use shared::secret::TokenHash;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Outcome of [`SessionOwners::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    /// Opened by this user, or not known here (rmcp answers unknown sessions itself).
    Ok,
    /// Opened by another user.
    Foreign,
}

/// Session id (hashed) → owner's `sub`, bounded.
#[derive(Debug)]
pub struct SessionOwners {
    owners: Mutex<HashMap<TokenHash, String>>,
    capacity: usize,
}

impl SessionOwners {
    /// Remembers at most `capacity` sessions (the oldest are forgotten arbitrarily; a
    /// forgotten session is then unbound, never refused).
    pub fn new(capacity: usize) -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether `session` may be used by `sub`.
    pub fn check(&self, session: &str, sub: &str) -> SessionCheck {
        let owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get(&TokenHash::of(session)) {
            Some(owner) if owner != sub => SessionCheck::Foreign,
            _ => SessionCheck::Ok,
        }
    }

    /// Records the owner of a session rmcp just created (the response carries a session id
    /// the request did not), and forgets a session a successful DELETE ended.
    pub fn after_response(
        &self,
        request_session: Option<&str>,
        sub: &str,
        is_delete: bool,
        response: &Response,
    ) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if is_delete && response.status().is_success() {
            if let Some(s) = request_session {
                owners.remove(&TokenHash::of(s));
            }
            return;
        }
        if request_session.is_some() || response.status() != StatusCode::OK {
            return;
        }
        let Some(created) = response
            .headers()
            .get(crate::bearer::SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if owners.len() >= self.capacity
            && let Some(victim) = owners.keys().next().cloned()
        {
            owners.remove(&victim);
        }
        owners.insert(TokenHash::of(created), sub.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str) -> Response {
        let mut r = Response::new(axum::body::Body::empty());
        r.headers_mut()
            .insert(crate::bearer::SESSION_HEADER, id.parse().unwrap());
        r
    }

    #[test]
    fn sessions_are_bound_to_their_creator() {
        let s = SessionOwners::new(10);
        s.after_response(None, "alice", false, &created("s1"));
        assert_eq!(s.check("s1", "alice"), SessionCheck::Ok);
        assert_eq!(s.check("s1", "bob"), SessionCheck::Foreign);
        assert_eq!(s.check("unknown", "bob"), SessionCheck::Ok);
        s.after_response(
            Some("s1"),
            "alice",
            true,
            &Response::new(axum::body::Body::empty()),
        );
        assert_eq!(s.check("s1", "bob"), SessionCheck::Ok);
    }

    #[test]
    fn bounded() {
        let s = SessionOwners::new(2);
        for i in 0..5 {
            s.after_response(None, "alice", false, &created(&format!("s{i}")));
        }
        assert!(s.owners.lock().unwrap().len() <= 2);
    }
}
