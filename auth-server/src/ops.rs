//! Operations endpoints: `/healthz` (liveness), `/readyz` (store and TaskManager reachable),
//! `/metrics` (Prometheus text; counts only, never a token or secret).

use crate::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use shared::paths;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub registrations: AtomicU64,
    pub authorizations: AtomicU64,
    pub logins_completed: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_reuse_detected: AtomicU64,
    pub code_reuse_detected: AtomicU64,
    pub introspections: AtomicU64,
    pub revocations: AtomicU64,
    pub token_exchanges: AtomicU64,
    pub upstream_refreshes: AtomicU64,
    pub upstream_failures: AtomicU64,
    pub oauth_errors: AtomicU64,
    /// Expired records the sweeper deleted.
    pub swept_records: AtomicU64,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let rows: [(&str, &AtomicU64); 14] = [
            ("registrations_total", &self.registrations),
            ("authorization_requests_total", &self.authorizations),
            ("logins_completed_total", &self.logins_completed),
            ("tokens_issued_total", &self.tokens_issued),
            ("refreshes_total", &self.refreshes),
            ("refresh_reuse_detected_total", &self.refresh_reuse_detected),
            ("code_reuse_detected_total", &self.code_reuse_detected),
            ("introspections_total", &self.introspections),
            ("revocations_total", &self.revocations),
            ("token_exchanges_total", &self.token_exchanges),
            ("upstream_refreshes_total", &self.upstream_refreshes),
            ("upstream_failures_total", &self.upstream_failures),
            ("oauth_errors_total", &self.oauth_errors),
            ("swept_records_total", &self.swept_records),
        ];
        rows.iter()
            .map(|(name, v)| {
                format!(
                    "# TYPE mcp_auth_{name} counter\nmcp_auth_{name} {}\n",
                    v.load(Ordering::Relaxed)
                )
            })
            .collect()
    }
}

/// The operations routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            paths::HEALTHZ,
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let store_ok = app.store.ping().await.is_ok();
    let upstream_ok = app.upstream.reachable().await;
    let status = if store_ok && upstream_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"store": store_ok, "taskmanager": upstream_ok})),
    )
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
