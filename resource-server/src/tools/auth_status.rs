//! `auth_status`: who is signed in, what the token allows, and whether TaskManager access
//! works, with the next step for the user. It reports rather than fails: even "needs
//! re-authorization" is a successful answer to "what is my status".

use crate::bearer::Identity;
use crate::upstream::{ExchangeError, Upstream, UpstreamToken};
use rmcp::model::{CallToolResult, ContentBlock};
use shared::UnixTime;

/// The upstream grant as the user should understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantStatus {
    /// `fresh` or `refreshed`: TaskManager access works.
    Working(String),
    NeedsReauthorization,
    /// The auth server or TaskManager could not be asked.
    Unknown(&'static str),
}

impl GrantStatus {
    fn from_exchange(result: &Result<std::sync::Arc<UpstreamToken>, ExchangeError>) -> Self {
        match result {
            Ok(t) => Self::Working(t.grant_state.clone()),
            Err(ExchangeError::NeedsReauthorization | ExchangeError::SubjectRefused) => {
                Self::NeedsReauthorization
            }
            Err(ExchangeError::Unavailable(_)) => {
                Self::Unknown("TaskManager cannot be reached right now")
            }
            Err(_) => Self::Unknown(
                "the server could not obtain TaskManager access (configuration problem)",
            ),
        }
    }

    /// As shown to the user.
    fn label(&self) -> &str {
        match self {
            Self::Working(s) => s,
            Self::NeedsReauthorization => "needs re-authorization",
            Self::Unknown(_) => "unknown",
        }
    }

    fn wire(&self) -> &str {
        match self {
            Self::Working(s) => s,
            Self::NeedsReauthorization => "needs_reauthorization",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// The next step for the user, given the grant and the token's scopes.
pub fn next_step(grant: &GrantStatus, can_write: bool) -> String {
    match grant {
        GrantStatus::Working(_) if can_write => {
            "Nothing to do: TaskManager access works for reading and changing tasks.".into()
        }
        GrantStatus::Working(_) => "TaskManager access works for reading tasks. To create, change \
             or delete tasks, re-authorize this MCP server and approve the `write` scope."
            .into(),
        GrantStatus::NeedsReauthorization => "Sign in again: reconnect (re-authenticate) this \
             MCP server in your client and log in to TaskManager; then retry."
            .into(),
        GrantStatus::Unknown(why) => {
            format!("Could not check TaskManager access: {why}. Try again in a minute.")
        }
    }
}

fn describe_expiry(exp: Option<u64>, now: UnixTime) -> String {
    match exp {
        Some(exp) => {
            let left = now.until(UnixTime(exp));
            format!(
                "expires at {exp} (Unix time), in {} min {} s",
                left / 60,
                left % 60
            )
        }
        None => "no expiry given".into(),
    }
}

/// Builds the report; asks the auth server for the upstream token (cached) to learn the
/// grant's state.
pub async fn report(upstream: &Upstream, identity: &Identity, now: UnixTime) -> CallToolResult {
    let exchange = upstream.token(identity).await;
    let grant = GrantStatus::from_exchange(&exchange);
    let can_write = identity.scope.contains(super::WRITE);
    let step = next_step(&grant, can_write);
    let user = identity.username.as_deref().unwrap_or(&identity.sub);
    let client = identity.client_id.as_deref().unwrap_or("unknown");
    let upstream_expires = exchange
        .as_ref()
        .ok()
        .and_then(|t| t.expires_at)
        .map(|t| t.0);
    let text = format!(
        "Signed in as {user} (user id {sub}) through MCP client {client}.\n\
         Scopes: {scopes}.\n\
         MCP access token: {expiry}.\n\
         TaskManager access: {state}.\n\
         Next step: {step}",
        sub = identity.sub,
        scopes = if identity.scope.is_empty() {
            "none".to_owned()
        } else {
            identity.scope.to_string()
        },
        expiry = describe_expiry(identity.exp, now),
        state = grant.label(),
    );
    let structured = serde_json::json!({
        "user": { "sub": identity.sub, "username": identity.username },
        "client_id": identity.client_id,
        "scopes": identity.scope.iter().collect::<Vec<_>>(),
        "token_expires_at": identity.exp,
        "token_expires_in": identity.exp.map(|e| now.until(UnixTime(e))),
        "upstream": {
            "state": grant.wire(),
            "expires_at": upstream_expires,
        },
        "next_step": step,
    });
    let mut result = CallToolResult::structured(structured);
    result.content.insert(0, ContentBlock::text(text));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps() {
        let fresh = GrantStatus::Working("fresh".into());
        assert!(next_step(&fresh, true).starts_with("Nothing to do"));
        assert!(next_step(&fresh, false).contains("`write`"));
        assert!(next_step(&GrantStatus::NeedsReauthorization, true).contains("Sign in again"));
        assert!(next_step(&GrantStatus::Unknown("x"), true).contains("Try again"));
        assert_eq!(
            GrantStatus::NeedsReauthorization.wire(),
            "needs_reauthorization"
        );
    }

    #[test]
    fn expiry_text() {
        assert_eq!(
            describe_expiry(Some(1_125), UnixTime(1_000)),
            "expires at 1125 (Unix time), in 2 min 5 s"
        );
    }
}
