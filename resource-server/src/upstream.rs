//! TaskManager access for the tools: the user's upstream token comes from the auth server by
//! RFC 8693 token exchange (the MCP token is the subject token and is never sent to
//! TaskManager: MCP authorization spec, "Access Token Privilege Restriction"), cached until
//! shortly before it expires; then TaskManager's tasks API is called with it.
//!
//! Every outbound call has a timeout. Failures become [`ToolFailure`]s whose messages tell
//! the user what to do; they never become transport errors.

use crate::bearer::Identity;
use crate::cache::{SingleFlightCache, TaskFailed};
use crate::introspection::{describe, form_encode};
use crate::ops::Metrics;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use shared::oauth_error::ErrorBody;
use shared::secret::TokenHash;
use shared::token::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN};
use shared::{Secret, UnixTime};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Stop reusing an upstream token this long before TaskManager says it expires.
const EXPIRY_MARGIN_SECS: u64 = 30;
/// Reuse an upstream token without `expires_in` this long.
const DEFAULT_REUSE_SECS: u64 = 60;

/// An upstream (TaskManager) access token obtained by token exchange.
#[derive(Debug, Clone)]
pub struct UpstreamToken {
    pub access_token: Secret<String>,
    /// When TaskManager's token expires, if the auth server said.
    pub expires_at: Option<UnixTime>,
    pub scope: Option<String>,
    /// `fresh` or `refreshed` (CONTRACTS.md: `upstream_grant_state`).
    pub grant_state: String,
    pub obtained_at: UnixTime,
}

/// RFC 8693 §2.2.1 response, plus the auth server's `upstream_grant_state`.
#[derive(Debug, Deserialize)]
struct ExchangeResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    upstream_grant_state: Option<String>,
}

/// Why no upstream token could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The user's TaskManager grant is gone: they must log in again.
    #[error("upstream grant needs re-authorization")]
    NeedsReauthorization,
    /// The auth server refused the MCP token as subject token.
    #[error("subject token refused")]
    SubjectRefused,
    /// The auth server or TaskManager behind it cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The auth server refused our client credentials or the request: configuration.
    #[error("token exchange refused: HTTP {0} {1}")]
    Refused(u16, String),
    #[error("malformed token exchange response")]
    Malformed,
    #[error("token exchange task failed")]
    TaskFailed,
}

impl From<TaskFailed> for ExchangeError {
    fn from(_: TaskFailed) -> Self {
        Self::TaskFailed
    }
}

/// How long an exchanged token may be reused: until [`EXPIRY_MARGIN_SECS`] before it expires.
pub fn reuse_lifetime(expires_in: Option<u64>) -> Option<Duration> {
    match expires_in {
        None => Some(Duration::from_secs(DEFAULT_REUSE_SECS)),
        Some(secs) => secs
            .checked_sub(EXPIRY_MARGIN_SECS)
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
    }
}

/// A tool could not do its job; `message` tells the user what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolFailure {
    pub message: String,
}

impl ToolFailure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The user-facing explanation of an exchange failure.
pub fn exchange_failure(e: &ExchangeError) -> ToolFailure {
    match e {
        ExchangeError::NeedsReauthorization | ExchangeError::SubjectRefused => ToolFailure::new(
            "Your TaskManager authorization has expired or was revoked. Sign in again: \
             reconnect (re-authenticate) this MCP server in your client, log in to TaskManager, \
             then retry.",
        ),
        ExchangeError::Unavailable(_) => ToolFailure::new(
            "TaskManager, or the sign-in service in front of it, cannot be reached right now. \
             Nothing was changed; try again in a minute.",
        ),
        ExchangeError::Refused(..) | ExchangeError::Malformed | ExchangeError::TaskFailed => {
            ToolFailure::new(
                "The MCP server could not obtain access to TaskManager because of a server \
                 configuration problem. Try again later; if it persists, contact the administrator.",
            )
        }
    }
}

/// Token exchange and the TaskManager tasks API. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    auth_http: reqwest::Client,
    tm_http: reqwest::Client,
    token_endpoint: Arc<str>,
    taskmanager_url: Arc<str>,
    client_id: Arc<str>,
    client_secret: Arc<Secret<String>>,
    cache: SingleFlightCache<Arc<UpstreamToken>, ExchangeError>,
    metrics: Arc<Metrics>,
}

/// A call to the tasks API.
#[derive(Debug, Clone)]
pub struct TmRequest {
    pub method: Method,
    /// Path segments after `/api/tasks` (the task id, if any).
    pub task_id: Option<String>,
    pub body: Option<serde_json::Value>,
}

impl Upstream {
    /// `auth_http` and `tm_http` carry the timeouts of the two kinds of calls.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth_http: reqwest::Client,
        tm_http: reqwest::Client,
        auth_server: &str,
        taskmanager_url: &str,
        client_id: String,
        client_secret: Secret<String>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            auth_http,
            tm_http,
            token_endpoint: format!("{auth_server}{}", shared::paths::TOKEN).into(),
            taskmanager_url: taskmanager_url.into(),
            client_id: client_id.into(),
            client_secret: Arc::new(client_secret),
            cache: SingleFlightCache::new(capacity),
            metrics,
        }
    }

    /// The user's upstream token (cached per MCP token; one exchange at a time per token).
    pub async fn token(&self, identity: &Identity) -> Result<Arc<UpstreamToken>, ExchangeError> {
        let key = TokenHash::of(identity.token.expose());
        let this = self.clone();
        let subject = identity.token.clone();
        let (result, _) = self
            .cache
            .get_or_fetch(key, Instant::now(), move || async move {
                let now = UnixTime::now();
                let (token, expires_in) = this.exchange(subject.expose(), now).await?;
                Ok((Arc::new(token), reuse_lifetime(expires_in)))
            })
            .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "token exchange failed");
        }
        result
    }

    /// Forgets the cached upstream token of this MCP token (TaskManager refused it).
    pub fn forget(&self, identity: &Identity) {
        self.cache
            .invalidate(&TokenHash::of(identity.token.expose()));
    }

    #[tracing::instrument(skip_all)]
    async fn exchange(
        &self,
        subject_token: &str,
        now: UnixTime,
    ) -> Result<(UpstreamToken, Option<u64>), ExchangeError> {
        self.metrics.token_exchange();
        let response = self
            .auth_http
            .post(&*self.token_endpoint)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.client_secret.expose())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", subject_token),
                ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
                ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
                ("audience", &self.taskmanager_url),
            ])
            .send()
            .await
            .map_err(|e| ExchangeError::Unavailable(describe(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ExchangeError::Unavailable(describe(&e)))?;
        if status.is_success() {
            let r: ExchangeResponse =
                serde_json::from_slice(&bytes).map_err(|_| ExchangeError::Malformed)?;
            let token = UpstreamToken {
                access_token: Secret::new(r.access_token),
                expires_at: r.expires_in.map(|s| now.plus(Duration::from_secs(s))),
                scope: r.scope,
                grant_state: r.upstream_grant_state.unwrap_or_else(|| "fresh".into()),
                obtained_at: now,
            };
            return Ok((token, r.expires_in));
        }
        let error: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(classify_exchange_error(status, error))
    }

    /// Calls the tasks API as `identity`'s user. A 401 from TaskManager drops the cached
    /// upstream token and tries once more with a newly exchanged one.
    #[tracing::instrument(skip_all, fields(method = %request.method))]
    pub async fn call(
        &self,
        identity: &Identity,
        request: &TmRequest,
    ) -> Result<Option<serde_json::Value>, ToolFailure> {
        let url = self.tasks_url(request.task_id.as_deref())?;
        for attempt in 0..2 {
            let token = self
                .token(identity)
                .await
                .map_err(|e| exchange_failure(&e))?;
            self.metrics.upstream_request();
            let mut builder = self
                .tm_http
                .request(request.method.clone(), url.clone())
                .bearer_auth(token.access_token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &request.body {
                builder = builder.json(body);
            }
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.upstream_error();
                    tracing::warn!(error = %describe(&e), "TaskManager call failed");
                    return Err(unavailable(&describe(&e)));
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget(identity);
                continue;
            }
            let bytes = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    self.metrics.upstream_error();
                    return Err(unavailable(&describe(&e)));
                }
            };
            if !status.is_success() {
                self.metrics.upstream_error();
            }
            return interpret(status, &bytes, request);
        }
        Err(ToolFailure::new(
            "TaskManager refused the access token even after it was renewed. Sign in again: \
             reconnect (re-authenticate) this MCP server in your client, then retry.",
        ))
    }

    fn tasks_url(&self, task_id: Option<&str>) -> Result<Url, ToolFailure> {
        // `push` percent-encodes everything but drops the dot segments "." and "..", which
        // would turn `/api/tasks/{id}` into `/api/tasks` (the whole collection) or above it.
        if let Some(id @ ("." | "..")) = task_id {
            return Err(ToolFailure::new(format!(
                "\"{id}\" is not a task id. Use list_tasks to see your tasks and their ids."
            )));
        }
        let mut url = Url::parse(&self.taskmanager_url).map_err(|_| {
            ToolFailure::new("The TaskManager URL is misconfigured; contact the administrator.")
        })?;
        {
            let mut segments = url.path_segments_mut().map_err(|_| {
                ToolFailure::new("The TaskManager URL is misconfigured; contact the administrator.")
            })?;
            segments.pop_if_empty().extend(["api", "tasks"]);
            if let Some(id) = task_id {
                segments.push(id);
            }
        }
        Ok(url)
    }
}

fn unavailable(why: &str) -> ToolFailure {
    ToolFailure::new(format!(
        "TaskManager is unavailable ({why}). The request may not have been carried out; \
         check with list_tasks and try again in a moment."
    ))
}

/// Maps an unsuccessful token-exchange answer to its meaning (CONTRACTS.md).
fn classify_exchange_error(status: StatusCode, error: Option<ErrorBody>) -> ExchangeError {
    let code = error.as_ref().map(|e| e.error.as_str()).unwrap_or("");
    match (status, code) {
        (_, "invalid_grant") => {
            let description = error
                .as_ref()
                .and_then(|e| e.error_description.as_deref())
                .unwrap_or("");
            if description.contains("re-authoriz") {
                ExchangeError::NeedsReauthorization
            } else {
                ExchangeError::SubjectRefused
            }
        }
        (_, "temporarily_unavailable") => ExchangeError::Unavailable("upstream unavailable".into()),
        (s, _) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            ExchangeError::Unavailable(format!("HTTP {}", s.as_u16()))
        }
        (s, code) => ExchangeError::Refused(s.as_u16(), code.to_owned()),
    }
}

/// Turns TaskManager's answer into the tool's data or a failure that says what to do.
fn interpret(
    status: StatusCode,
    body: &[u8],
    request: &TmRequest,
) -> Result<Option<serde_json::Value>, ToolFailure> {
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    if status.is_success() {
        if body.is_empty() {
            return Ok(None);
        }
        return serde_json::from_slice(body).map(Some).map_err(|_| {
            ToolFailure::new(
                "TaskManager sent an answer that is not valid JSON. Try again later; if it \
                 persists, contact the administrator.",
            )
        });
    }
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error_description"))
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str())
                .map(|m| m.chars().take(200).collect::<String>())
        });
    let with_detail = |text: String| match &detail {
        Some(d) => format!("{text} (TaskManager said: {d})"),
        None => text,
    };
    Err(ToolFailure::new(match status {
        StatusCode::UNAUTHORIZED => with_detail(
            "TaskManager refused the access token. Sign in again: reconnect (re-authenticate) \
             this MCP server in your client, then retry."
                .into(),
        ),
        StatusCode::FORBIDDEN => with_detail(
            "TaskManager refused: your TaskManager authorization does not include the \
             permission this needs. Reconnect this MCP server and approve the `write` access, \
             then retry."
                .into(),
        ),
        StatusCode::NOT_FOUND => match &request.task_id {
            Some(id) => format!(
                "Task `{id}` was not found (it does not exist or is not yours). Use list_tasks \
                 to see your tasks and their ids."
            ),
            None => "TaskManager's tasks API was not found; contact the administrator.".into(),
        },
        s if s.is_client_error() => with_detail(format!(
            "TaskManager rejected the request (HTTP {}). Check the arguments and try again.",
            s.as_u16()
        )),
        s => with_detail(format!(
            "TaskManager is unavailable (HTTP {}). The request may not have been carried out; \
             check with list_tasks and try again in a moment.",
            s.as_u16()
        )),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: Option<&str>) -> TmRequest {
        TmRequest {
            method: Method::GET,
            task_id: id.map(str::to_owned),
            body: None,
        }
    }

    #[test]
    fn reuse_until_near_expiry() {
        assert_eq!(reuse_lifetime(Some(3600)), Some(Duration::from_secs(3570)));
        assert_eq!(reuse_lifetime(Some(31)), Some(Duration::from_secs(1)));
        assert_eq!(reuse_lifetime(Some(30)), None);
        assert_eq!(reuse_lifetime(Some(5)), None);
        assert_eq!(reuse_lifetime(None), Some(Duration::from_secs(60)));
    }

    #[test]
    fn exchange_errors_follow_the_contract() {
        let body = |e: &str, d: &str| {
            Some(ErrorBody {
                error: e.into(),
                error_description: Some(d.into()),
            })
        };
        assert_eq!(
            classify_exchange_error(
                StatusCode::BAD_REQUEST,
                body("invalid_grant", "upstream grant needs re-authorization")
            ),
            ExchangeError::NeedsReauthorization
        );
        assert_eq!(
            classify_exchange_error(StatusCode::BAD_REQUEST, body("invalid_grant", "expired")),
            ExchangeError::SubjectRefused
        );
        assert!(matches!(
            classify_exchange_error(
                StatusCode::SERVICE_UNAVAILABLE,
                body("temporarily_unavailable", "x")
            ),
            ExchangeError::Unavailable(_)
        ));
        assert!(matches!(
            classify_exchange_error(StatusCode::BAD_GATEWAY, None),
            ExchangeError::Unavailable(_)
        ));
        assert_eq!(
            classify_exchange_error(StatusCode::UNAUTHORIZED, body("invalid_client", "x")),
            ExchangeError::Refused(401, "invalid_client".into())
        );
    }

    #[test]
    fn taskmanager_answers_become_actionable_messages() {
        assert_eq!(
            interpret(StatusCode::OK, br#"[{"id":1}]"#, &req(None)),
            Ok(Some(serde_json::json!([{"id":1}])))
        );
        assert_eq!(
            interpret(StatusCode::NO_CONTENT, b"", &req(Some("1"))),
            Ok(None)
        );
        let msg = |s, b: &[u8], id| interpret(s, b, &req(id)).unwrap_err().message;
        assert!(msg(StatusCode::NOT_FOUND, b"", Some("7")).contains("Task `7` was not found"));
        assert!(msg(StatusCode::FORBIDDEN, b"", Some("7")).contains("write"));
        assert!(msg(StatusCode::SERVICE_UNAVAILABLE, b"", None).contains("try again"));
        assert!(msg(StatusCode::OK, b"<html>", None).contains("not valid JSON"));
        assert!(
            msg(
                StatusCode::BAD_REQUEST,
                br#"{"message":"title is required"}"#,
                None
            )
            .contains("title is required")
        );
    }

    #[test]
    fn task_urls_are_encoded() {
        let up = Upstream::new(
            reqwest::Client::new(),
            reqwest::Client::new(),
            "http://as",
            "http://tm:4321/base",
            "id".into(),
            Secret::new("s".into()),
            1,
            Arc::new(Metrics::default()),
        );
        assert_eq!(
            up.tasks_url(Some("a/b c")).unwrap().as_str(),
            "http://tm:4321/base/api/tasks/a%2Fb%20c"
        );
        assert_eq!(
            up.tasks_url(None).unwrap().as_str(),
            "http://tm:4321/base/api/tasks"
        );
    }
}
