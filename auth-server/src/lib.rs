//! The auth server as a library: `router(state)` builds the HTTP app, `serve` runs it on a
//! listener, `run` does both from configuration. `main.rs` only parses flags.

pub mod config;
pub mod error;
pub mod extract;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod session;
pub mod state;
pub mod store;
pub mod tokens;
pub mod upstream;

use crate::config::{ServeArgs, Settings};
use crate::state::{AppState, RateLimiter};
use crate::store::Store;
use crate::store::sled::SledStore;
use crate::tokens::keys::KeyRing;
use crate::upstream::client::UpstreamClient;
use crate::upstream::vault::Vault;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use shared::time::SystemClock;
use shared::{OAuthError, UnixTime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// A startup failure, with a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("vault: {0}")]
    Vault(#[from] upstream::vault::VaultError),
    #[error("signing keys: {0}")]
    Keys(#[from] tokens::keys::KeyError),
    #[error("upstream client: {0}")]
    Upstream(#[from] upstream::client::UpstreamError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// CORS for browser-based MCP clients on the endpoints they call from script: discovery,
/// registration, token and revocation. No credentials (cookies) are involved there.
fn public_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            "mcp-protocol-version".parse().unwrap_or(header::ACCEPT),
        ])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600))
}

/// The whole HTTP application.
pub fn router(app: AppState) -> Router {
    let secure_cookie = app.settings.issuer.starts_with("https://");
    let sessions = SessionManagerLayer::new(session::StoreSessions(app.store.clone()))
        .with_name(session::COOKIE)
        .with_http_only(true)
        // Lax: the cookie must come back on TaskManager's top-level redirect to our callback.
        .with_same_site(SameSite::Lax)
        .with_secure(secure_cookie)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::hours(12),
        ));
    let browser = Router::new()
        .merge(oauth::authorize::routes())
        .merge(oauth::consent::routes())
        .merge(oauth::callback::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(sessions);
    let public = Router::new()
        .merge(oauth::metadata::routes())
        .merge(oauth::jwks::routes())
        .merge(oauth::register::routes())
        .merge(oauth::token::routes())
        .merge(oauth::revoke::routes())
        // Before the CORS layer, so that layer answers preflights (OPTIONS) itself.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(public_cors());
    Router::new()
        .merge(browser)
        .merge(public)
        .merge(oauth::introspect::routes())
        .merge(ops::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(app)
}

async fn method_not_allowed() -> impl IntoResponse {
    let mut r =
        OAuthError::invalid_request("HTTP method not allowed on this endpoint").into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "not_found"})),
    )
}

/// Opens the store under the data dir.
pub fn open_store(args: &ServeArgs) -> Result<Arc<dyn Store>, StartError> {
    store::sled::check_data_dir(&args.data_dir)?;
    Ok(Arc::new(SledStore::open(&args.data_dir)?))
}

/// The vault key from flags/env, or from (generated into) the data dir.
pub fn open_vault(args: &ServeArgs) -> Result<Vault, StartError> {
    Ok(match &args.vault_key {
        Some(k) => Vault::from_key_text(k)?,
        None => Vault::from_data_dir(&args.data_dir)?,
    })
}

/// Builds the state from checked settings.
pub async fn build_state(
    settings: Settings,
    store: Arc<dyn Store>,
    vault: Vault,
) -> Result<AppState, StartError> {
    let keys = KeyRing::open(
        store.clone(),
        vault.clone(),
        UnixTime::now(),
        &settings.signing,
    )
    .await?;
    let upstream = UpstreamClient::new(settings.upstream.clone())?;
    Ok(AppState {
        registration_limiter: Arc::new(RateLimiter::new(settings.registration_rate_per_minute)),
        settings: Arc::new(settings),
        store,
        keys,
        vault,
        upstream,
        clock: Arc::new(SystemClock),
        metrics: Arc::default(),
        client_metadata: Arc::default(),
    })
}

/// Serves `app` on `listener` until Ctrl-C or SIGTERM.
pub async fn serve(listener: TcpListener, app: Router) -> Result<(), StartError> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(StartError::Serve)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Binds, prints `listening on http://ADDR` on stdout, and serves.
pub async fn run(args: ServeArgs) -> Result<(), StartError> {
    let addr = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    let settings = args.validate(local.port())?;
    let store = open_store(&args)?;
    let vault = open_vault(&args)?;
    let state = build_state(settings, store.clone(), vault).await?;
    store::sweep::spawn(
        store,
        Duration::from_secs(args.sweep_interval_secs.max(1)),
        state.metrics.clone(),
    );
    if state.settings.cimd_allow_loopback_http {
        tracing::warn!(target: "security", "INSECURE, FOR TESTS ONLY: --cimd-insecure-allow-loopback-http lets client metadata documents be fetched over plain http from 127.0.0.1; never use it in production");
    }
    tracing::info!(issuer = %state.settings.issuer, resource = %state.settings.resource, "auth server ready");
    println!("listening on http://{local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    serve(listener, router(state)).await
}
