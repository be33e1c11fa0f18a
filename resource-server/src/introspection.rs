//! RFC 7662 token introspection at the auth server, with the resource server's credentials
//! (§2.1), behind a short-lived single-flight cache.
//!
//! The cache keeps an answer for at most the configured few seconds and never past the
//! token's `exp` (RFC 7662 §4: a cached answer delays revocation), so a revoked token stops
//! working here within that window.

use crate::cache::{Lookup, SingleFlightCache, TaskFailed};
use crate::ops::Metrics;
use reqwest::StatusCode;
use shared::UnixTime;
use shared::introspection::IntrospectionResponse;
use shared::secret::TokenHash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The auth server could not give an answer; the caller must not conclude the token is bad.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntrospectError {
    /// Unreachable, timed out, 5xx or 429.
    #[error("authorization server unavailable: {0}")]
    Unavailable(String),
    /// It refused our credentials or the request: an operator must fix the configuration.
    #[error("authorization server refused the introspection request: HTTP {0}")]
    Refused(u16),
    /// It answered something that is not an RFC 7662 response.
    #[error("authorization server sent a malformed introspection response")]
    Malformed,
    #[error("introspection task failed")]
    TaskFailed,
}

impl From<TaskFailed> for IntrospectError {
    fn from(_: TaskFailed) -> Self {
        Self::TaskFailed
    }
}

/// How long an introspection answer may be reused at `now`: at most `max`, and for an
/// active token never past its `exp` (`None`: do not cache it at all).
pub fn cache_lifetime(
    response: &IntrospectionResponse,
    now: UnixTime,
    max: Duration,
) -> Option<Duration> {
    if !response.active {
        // An inactive token never becomes active again; a short negative cache keeps floods
        // of bad tokens off the auth server.
        return Some(max);
    }
    match response.exp {
        Some(exp) if exp <= now.0 => None,
        Some(exp) => Some(max.min(Duration::from_secs(exp - now.0))),
        None => Some(max),
    }
}

/// The introspection client and its cache. Cheap to clone.
#[derive(Clone)]
pub struct Introspector {
    http: reqwest::Client,
    endpoint: Arc<str>,
    client_id: Arc<str>,
    client_secret: Arc<shared::Secret<String>>,
    ttl: Duration,
    cache: SingleFlightCache<Arc<IntrospectionResponse>, IntrospectError>,
    metrics: Arc<Metrics>,
}

impl Introspector {
    /// A client of `{auth_server}/introspect`.
    pub fn new(
        http: reqwest::Client,
        auth_server: &str,
        client_id: String,
        client_secret: shared::Secret<String>,
        ttl: Duration,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            endpoint: format!("{auth_server}{}", shared::paths::INTROSPECT).into(),
            client_id: client_id.into(),
            client_secret: Arc::new(client_secret),
            ttl,
            cache: SingleFlightCache::new(capacity),
            metrics,
        }
    }

    /// The auth server's answer about `token` (cached; concurrent callers with the same
    /// uncached token share one request).
    #[tracing::instrument(skip_all)]
    pub async fn introspect(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<Arc<IntrospectionResponse>, IntrospectError> {
        let key = TokenHash::of(token);
        let this = self.clone();
        let token = token.to_owned();
        let ttl = self.ttl;
        let (result, lookup) = self
            .cache
            .get_or_fetch(key, Instant::now(), move || async move {
                let response = this.request(&token).await?;
                let lifetime = cache_lifetime(&response, now, ttl);
                Ok((Arc::new(response), lifetime))
            })
            .await;
        match lookup {
            Lookup::Hit => self.metrics.introspection_cache_hit(),
            Lookup::Miss | Lookup::Joined => self.metrics.introspection_cache_miss(),
        }
        if let Err(e) = &result {
            tracing::warn!(target: "security", error = %e, "token introspection failed");
        }
        result
    }

    async fn request(&self, token: &str) -> Result<IntrospectionResponse, IntrospectError> {
        self.metrics.introspection_request();
        let response = self
            .http
            .post(&*self.endpoint)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.client_secret.expose())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| IntrospectError::Unavailable(describe(&e)))?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(IntrospectError::Unavailable(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(IntrospectError::Refused(status.as_u16()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| IntrospectError::Unavailable(describe(&e)))?;
        serde_json::from_slice(&bytes).map_err(|_| IntrospectError::Malformed)
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic.
pub fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A reqwest error without its URL (which could carry a query) for logs.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() || e.is_body() {
        "bad response body".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(exp: Option<u64>) -> IntrospectionResponse {
        IntrospectionResponse {
            active: true,
            exp,
            ..Default::default()
        }
    }

    #[test]
    fn lifetime_is_capped_by_ttl_and_exp() {
        let max = Duration::from_secs(3);
        let now = UnixTime(1_000);
        assert_eq!(cache_lifetime(&active(Some(2_000)), now, max), Some(max));
        assert_eq!(
            cache_lifetime(&active(Some(1_001)), now, max),
            Some(Duration::from_secs(1))
        );
        assert_eq!(cache_lifetime(&active(Some(1_000)), now, max), None);
        assert_eq!(cache_lifetime(&active(Some(10)), now, max), None);
        assert_eq!(cache_lifetime(&active(None), now, max), Some(max));
        assert_eq!(
            cache_lifetime(&IntrospectionResponse::inactive(), now, max),
            Some(max)
        );
    }

    /// A local HTTP endpoint answering `status` and `body` to every introspection, recording
    /// the requests' Authorization header and form; its base URL.
    async fn endpoint(
        status: u16,
        body: &'static str,
    ) -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            shared::paths::INTROSPECT,
            axum::routing::post(move |headers: axum::http::HeaderMap, form: String| {
                let record = record.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    record.lock().unwrap().push((auth, form));
                    (axum::http::StatusCode::from_u16(status).unwrap(), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn client(url: &str) -> Introspector {
        Introspector::new(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            url,
            "rs id".into(),
            shared::Secret::new("s3cret".into()),
            Duration::from_secs(3),
            10,
            Arc::new(Metrics::default()),
        )
    }

    #[tokio::test]
    async fn answers_are_classified() {
        let now = UnixTime::now();
        let (url, seen) = endpoint(200, r#"{"active":true,"sub":"u","exp":99999999999}"#).await;
        let r = client(&url).introspect("tok", now).await.unwrap();
        assert!(r.active);
        let (auth, form) = seen.lock().unwrap()[0].clone();
        // Basic over the form-encoded id and secret (RFC 6749 §2.3.1): "rs+id:s3cret".
        assert_eq!(auth, "Basic cnMraWQ6czNjcmV0");
        assert_eq!(form, "token=tok&token_type_hint=access_token");

        let (url, _) = endpoint(500, "oops").await;
        assert!(matches!(
            client(&url).introspect("tok", now).await,
            Err(IntrospectError::Unavailable(_))
        ));
        let (url, _) = endpoint(401, r#"{"error":"invalid_client"}"#).await;
        assert!(matches!(
            client(&url).introspect("tok", now).await,
            Err(IntrospectError::Refused(401))
        ));
        let (url, _) = endpoint(200, "<html>").await;
        assert!(matches!(
            client(&url).introspect("tok", now).await,
            Err(IntrospectError::Malformed)
        ));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        assert!(matches!(
            client(&closed).introspect("tok", now).await,
            Err(IntrospectError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn errors_are_not_cached_but_answers_are() {
        let now = UnixTime::now();
        let (url, seen) = endpoint(200, r#"{"active":false}"#).await;
        let c = client(&url);
        for _ in 0..3 {
            assert!(!c.introspect("tok", now).await.unwrap().active);
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "the answer was cached");
        let (url, seen) = endpoint(503, "").await;
        let c = client(&url);
        for _ in 0..3 {
            assert!(c.introspect("tok", now).await.is_err());
        }
        assert_eq!(seen.lock().unwrap().len(), 3, "failures are retried");
    }

    #[test]
    fn credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(form_encode("RS_ID"), "RS_ID");
    }
}
