//! Operations endpoints: `/healthz` (liveness) and `/metrics` (Prometheus text format).
//! Metrics carry counts only: never tokens, user ids or URLs with queries.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    responses: Mutex<BTreeMap<u16, u64>>,
    introspection_cache_hits: AtomicU64,
    introspection_cache_misses: AtomicU64,
    introspection_requests: AtomicU64,
    token_exchanges: AtomicU64,
    upstream_requests: AtomicU64,
    upstream_errors: AtomicU64,
    tool_calls: AtomicU64,
    tool_errors: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn response(&self, status: u16) {
        let mut r = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *r.entry(status).or_default() += 1;
    }
    pub fn introspection_cache_hit(&self) {
        inc(&self.introspection_cache_hits);
    }
    pub fn introspection_cache_miss(&self) {
        inc(&self.introspection_cache_misses);
    }
    pub fn introspection_request(&self) {
        inc(&self.introspection_requests);
    }
    pub fn token_exchange(&self) {
        inc(&self.token_exchanges);
    }
    pub fn upstream_request(&self) {
        inc(&self.upstream_requests);
    }
    pub fn upstream_error(&self) {
        inc(&self.upstream_errors);
    }
    pub fn tool_call(&self, is_error: bool) {
        inc(&self.tool_calls);
        if is_error {
            inc(&self.tool_errors);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP rs_http_responses_total HTTP responses by status code.\n");
        out.push_str("# TYPE rs_http_responses_total counter\n");
        let responses = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (status, n) in responses {
            let _ = writeln!(out, "rs_http_responses_total{{status=\"{status}\"}} {n}");
        }
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "rs_introspection_cache_hits_total",
                "Bearer checks answered from the introspection cache.",
                &self.introspection_cache_hits,
            ),
            (
                "rs_introspection_cache_misses_total",
                "Bearer checks that needed (or waited for) an introspection request.",
                &self.introspection_cache_misses,
            ),
            (
                "rs_introspection_requests_total",
                "Introspection requests sent to the auth server.",
                &self.introspection_requests,
            ),
            (
                "rs_token_exchanges_total",
                "Token exchange requests sent to the auth server.",
                &self.token_exchanges,
            ),
            (
                "rs_upstream_requests_total",
                "Requests sent to TaskManager's tasks API.",
                &self.upstream_requests,
            ),
            (
                "rs_upstream_errors_total",
                "TaskManager calls that failed or were refused.",
                &self.upstream_errors,
            ),
            ("rs_tool_calls_total", "MCP tool calls.", &self.tool_calls),
            (
                "rs_tool_errors_total",
                "MCP tool calls that ended with isError.",
                &self.tool_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

/// `/healthz` and `/metrics`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(shared::paths::HEALTHZ, get(healthz))
        .route(shared::paths::METRICS, get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(app): State<AppState>) -> Response {
    let mut r = app.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Counts every response by status.
pub async fn count_responses(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    app.metrics.response(response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.response(200);
        m.response(401);
        m.response(401);
        m.introspection_cache_hit();
        let text = m.render();
        assert!(text.contains("rs_http_responses_total{status=\"401\"} 2\n"));
        assert!(text.contains("rs_introspection_cache_hits_total 1\n"));
        assert!(text.contains("rs_introspection_cache_misses_total 0\n"));
    }
}
