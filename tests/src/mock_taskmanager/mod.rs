//! A stand-in for a team's TaskManager deployment, for the tests and the local demo stack.
//!
//! It implements the contract in `docs/CONTRACTS.md` ("Mock TaskManager"): users and a login
//! page (`users`), an OAuth 2.0 / OIDC provider with consent, PKCE and an EdDSA id_token
//! (`oauth`), cookie-authenticated client registration (`clients`), a tasks API (`tasks`),
//! and test knobs and counters (`knobs`). State is in memory and lives as long as the process.

pub mod config;

mod clients;
mod error;
mod keys;
mod knobs;
mod oauth;
mod pages;
mod state;
mod tasks;
mod users;
mod util;

pub use config::{ClientSpec, Config};
pub use state::MockState;
pub use users::{USERS, User};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::UnixTime;
use tokio::net::TcpListener;

/// The whole application on `state`.
pub fn router(state: MockState) -> Router {
    Router::new()
        .merge(users::routes())
        .merge(oauth::routes())
        .merge(clients::routes())
        .merge(tasks::routes())
        .merge(knobs::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            knobs::apply,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the mock on a bound listener until Ctrl-C. The public URL defaults to the
/// listener's address.
pub async fn serve(listener: TcpListener, config: Config) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let public_url = match &config.public_url {
        Some(url) => url.as_str().to_owned(),
        None => format!("http://{addr}"),
    };
    let state = MockState::new(&config, public_url, UnixTime::now())?;
    tracing::info!(%addr, public_url = %state.public_url, clients = config.clients.len(), "mock TaskManager serving");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        error::ApiError::not_found("no such endpoint").into_response()
    } else {
        pages::error(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
    }
}
