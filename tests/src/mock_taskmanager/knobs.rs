//! Test knobs and counters (not part of TaskManager): `GET/POST /__knobs`, `GET /__stats`,
//! and the middleware that makes every `/api/*` route slow, failing or garbled on demand.

use super::error::ApiError;
use super::state::MockState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The current knob settings.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// Answer `invalid_grant` to every refresh_token grant.
    pub refuse_refresh: bool,
    /// Delay every `/api/*` response by this many milliseconds.
    pub delay_ms: u64,
    /// Answer every `/api/*` request with this status instead.
    pub fail_status: Option<u16>,
    /// Lifetime of newly issued access tokens, seconds.
    pub access_token_ttl: u64,
    /// Answer every `/api/*` request with 200 and a body that is not JSON.
    pub garbage: bool,
    /// Leave `nonce` out of id_tokens, as a non-conforming OpenID provider would.
    pub omit_nonce: bool,
}

impl Knobs {
    pub fn new(access_token_ttl: u64) -> Self {
        Self {
            refuse_refresh: false,
            delay_ms: 0,
            fail_status: None,
            access_token_ttl,
            garbage: false,
            omit_nonce: false,
        }
    }
}

/// A `POST /__knobs` body: any subset of the knobs. `fail_status: null` clears that knob.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobsUpdate {
    refuse_refresh: Option<bool>,
    delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    fail_status: Option<Option<u16>>,
    access_token_ttl: Option<u64>,
    garbage: Option<bool>,
    omit_nonce: Option<bool>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u16>>, D::Error> {
    Option::<u16>::deserialize(d).map(Some)
}

/// Request counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub token_requests: AtomicU64,
    pub refresh_grants: AtomicU64,
    pub code_grants: AtomicU64,
    pub tasks_requests: AtomicU64,
}

/// `GET /__stats` body.
#[derive(Debug, Serialize)]
struct StatsResponse {
    token_requests: u64,
    refresh_grants: u64,
    code_grants: u64,
    tasks_requests: u64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/__knobs", get(get_knobs).post(set_knobs))
        .route("/__stats", get(stats))
}

async fn get_knobs(State(state): State<MockState>) -> Json<Knobs> {
    Json(state.knobs().clone())
}

async fn set_knobs(State(state): State<MockState>, body: Bytes) -> Result<Json<Knobs>, ApiError> {
    let update: KnobsUpdate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("bad knobs: {e}")))?;
    if let Some(Some(status)) = update.fail_status
        && StatusCode::from_u16(status).is_err()
    {
        return Err(ApiError::invalid_request(format!(
            "fail_status {status} is not an HTTP status"
        )));
    }
    let mut knobs = state.knobs();
    if let Some(v) = update.refuse_refresh {
        knobs.refuse_refresh = v;
    }
    if let Some(v) = update.delay_ms {
        knobs.delay_ms = v;
    }
    if let Some(v) = update.fail_status {
        knobs.fail_status = v;
    }
    if let Some(v) = update.access_token_ttl {
        knobs.access_token_ttl = v;
    }
    if let Some(v) = update.garbage {
        knobs.garbage = v;
    }
    if let Some(v) = update.omit_nonce {
        knobs.omit_nonce = v;
    }
    tracing::info!(knobs = ?*knobs, "knobs changed");
    Ok(Json(knobs.clone()))
}

async fn stats(State(state): State<MockState>) -> Json<StatsResponse> {
    let s = &state.stats;
    Json(StatsResponse {
        token_requests: s.token_requests.load(Ordering::Relaxed),
        refresh_grants: s.refresh_grants.load(Ordering::Relaxed),
        code_grants: s.code_grants.load(Ordering::Relaxed),
        tasks_requests: s.tasks_requests.load(Ordering::Relaxed),
    })
}

/// Counts requests, then applies `delay_ms`, `fail_status` and `garbage` to `/api/*` routes.
/// Counting comes first so a test can see how often a client tried while the mock was failing.
pub(crate) async fn apply(
    State(state): State<MockState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/api/") {
        return next.run(request).await;
    }
    if path == "/api/oauth/token" && request.method() == Method::POST {
        Stats::bump(&state.stats.token_requests);
    }
    if path == "/api/tasks" || path.starts_with("/api/tasks/") {
        Stats::bump(&state.stats.tasks_requests);
    }
    let knobs = state.knobs().clone();
    if knobs.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.delay_ms)).await;
    }
    if let Some(status) = knobs.fail_status.and_then(|s| StatusCode::from_u16(s).ok()) {
        let body = serde_json::json!({
            "error": match status {
                StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
                s if s.is_server_error() => "server_error",
                _ => "invalid_request",
            },
            "error_description": format!("injected failure: fail_status knob is {}", status.as_u16()),
        });
        return (status, Json(body)).into_response();
    }
    if knobs.garbage {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body>502 Bad Gateway (not JSON: garbage knob)</body></html>",
        )
            .into_response();
    }
    next.run(request).await
}
