//! The MCP endpoint: rmcp's streamable HTTP service (POST, GET for SSE, DELETE; protocol
//! revisions 2025-03-26 through the newest rmcp speaks, 2026-07-28) behind the bearer
//! middleware, with CORS for browser clients.

use crate::tools::TaskTools;
use crate::{AppState, bearer};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// rmcp's service for our tools. Cancelling `config.cancellation_token` ends every session
/// (and with it every open SSE stream), so a graceful shutdown does not wait on them.
pub fn service(
    app: &AppState,
    config: StreamableHttpServerConfig,
) -> StreamableHttpService<TaskTools, LocalSessionManager> {
    let upstream = app.upstream.clone();
    let metrics = app.metrics.clone();
    StreamableHttpService::new(
        move || Ok(TaskTools::new(upstream.clone(), metrics.clone())),
        Default::default(),
        config,
    )
}

/// rmcp's transport settings: `Host` validation against the resource's host and loopback
/// (DNS-rebinding protection; `Origin` is checked by [`bearer`] with our own policy).
pub fn transport_config(app: &AppState) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_allowed_hosts(app.config.allowed_hosts.clone())
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
}

/// rmcp answers a successful session `DELETE` with 202 and no body; the official Python SDK
/// accepts only 200 or 204 there and logs the 202 as a failed termination. 204 says the same
/// thing ("done, nothing to show") in a way every SDK reads as success.
async fn session_end_is_no_content(request: Request, next: Next) -> Response {
    let is_delete = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if is_delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.body_mut() = Body::empty();
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    response
}

/// `/mcp`: CORS (outermost, so preflights and error answers carry it), then the bearer
/// checks, then rmcp.
pub fn routes(app: &AppState, config: StreamableHttpServerConfig) -> Router<AppState> {
    Router::new()
        .route_service(shared::paths::MCP, service(app, config))
        .layer(axum::middleware::from_fn(session_end_is_no_content))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            bearer::authenticate,
        ))
        .layer(cors(app))
}

fn cors(app: &AppState) -> CorsLayer {
    let policy = app.origins.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| policy.allows(o))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::WWW_AUTHENTICATE,
            HeaderName::from_static(bearer::SESSION_HEADER),
            HeaderName::from_static("mcp-protocol-version"),
        ])
        .max_age(Duration::from_secs(600))
}
