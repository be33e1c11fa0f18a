//! The protected MCP server: RFC 9728 discovery, bearer checks by RFC 7662 introspection at
//! the auth server, and TaskManager tools that reach TaskManager with an upstream token
//! obtained by RFC 8693 token exchange.
//!
//! `main.rs` parses flags and binds; [`serve`] does the rest; [`router`] is the whole app.

pub mod bearer;
pub mod cache;
pub mod config;
pub mod introspection;
pub mod mcp;
pub mod metadata;
pub mod ops;
pub mod origin;
pub mod sessions;
pub mod tools;
pub mod upstream;

use axum::Router;
use axum::http::Method;
use config::{Args, Config, ConfigError};
use introspection::Introspector;
use ops::Metrics;
use origin::OriginPolicy;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use sessions::SessionOwners;
use std::io::Write as _;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use upstream::Upstream;

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub introspector: Introspector,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub origins: Arc<OriginPolicy>,
    pub sessions: Arc<SessionOwners>,
    /// The `resource_metadata` URL put in every challenge.
    pub prm_url: Arc<str>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl AppState {
    /// Builds the state (HTTP clients with their timeouts, caches) from a checked config.
    pub fn new(config: Config) -> Result<Self, ServeError> {
        let metrics = Arc::new(Metrics::default());
        let client = |timeout| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(std::time::Duration::from_secs(3)))
                // Never follow redirects with credentials attached.
                .redirect(reqwest::redirect::Policy::none())
                .build()
        };
        let auth_http = client(config.auth_timeout)?;
        let tm_http = client(config.upstream_timeout)?;
        let introspector = Introspector::new(
            auth_http.clone(),
            &config.auth_server,
            config.rs_client_id.clone(),
            config.rs_client_secret.clone(),
            config.introspection_ttl,
            config.cache_capacity,
            metrics.clone(),
        );
        let upstream = Upstream::new(
            auth_http,
            tm_http,
            &config.auth_server,
            &config.taskmanager_url,
            config.rs_client_id.clone(),
            config.rs_client_secret.clone(),
            config.cache_capacity,
            metrics.clone(),
        );
        Ok(Self {
            origins: Arc::new(OriginPolicy::new(
                &config.resource,
                config.allowed_origins.clone(),
            )),
            sessions: Arc::new(SessionOwners::new(config.cache_capacity)),
            prm_url: metadata::prm_url(&config.resource).into(),
            config: Arc::new(config),
            introspector,
            upstream,
            metrics,
        })
    }
}

/// The whole application. `mcp` configures rmcp's transport (its cancellation token ends
/// the MCP sessions).
pub fn router(state: AppState, mcp: StreamableHttpServerConfig) -> Router {
    // Discovery documents are public: any origin may read them (RFC 9728 clients in browsers).
    let public_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET])
        .allow_headers(Any);
    Router::new()
        .merge(metadata::routes(&state.config.resource).layer(public_cors))
        .merge(mcp::routes(&state, mcp))
        .merge(ops::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_responses,
        ))
        .with_state(state)
}

/// Runs the server on `listener` until SIGINT/SIGTERM. Prints `listening on http://ADDR` on
/// stdout once ready (CONTRACTS.md).
pub async fn serve(listener: TcpListener, args: Args) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let config = args.validate(addr)?;
    tracing::info!(
        resource = %config.resource,
        auth_server = %config.auth_server,
        taskmanager = %config.taskmanager_url,
        "starting resource server"
    );
    let state = AppState::new(config)?;
    let mcp = mcp::transport_config(&state);
    let sessions = mcp.cancellation_token.clone();
    let app = router(state, mcp);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            sessions.cancel();
        })
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
