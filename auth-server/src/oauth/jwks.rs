//! `GET /.well-known/jwks.json` (RFC 7517 §5): current and previous signing keys, by `kid`.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use shared::paths;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(paths::JWKS, get(jwks))
}

async fn jwks(State(app): State<AppState>) -> impl IntoResponse {
    let now = app.clock.now();
    // Pick up keys another replica or the operator added.
    if let Err(e) = app.keys.reload().await {
        tracing::warn!(error = %e, "could not reload signing keys; serving the cached set");
    }
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(app.keys.jwks(now).await),
    )
}
