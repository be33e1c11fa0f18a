//! RFC 9728 protected resource metadata. The document is served at the well-known path
//! derived from the resource URL (§3.1: the well-known segment goes between the host and the
//! resource's path, so `…/mcp` → `/.well-known/oauth-protected-resource/mcp`), at
//! `/.well-known/oauth-protected-resource/mcp`, and at the root form, which clients of older
//! MCP revisions probe.

use crate::{AppState, tools};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shared::metadata::ProtectedResourceMetadata;
use url::Url;

/// The name shown to users by clients that display it (RFC 9728 §2 `resource_name`).
pub const RESOURCE_NAME: &str = "TaskManager MCP server";

/// The well-known path of the metadata of `resource` (RFC 9728 §3.1).
pub fn prm_path(resource: &str) -> String {
    let path = Url::parse(resource)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    format!("{}{path}", shared::paths::PRM)
}

/// The absolute URL of the metadata of `resource`, as put in `resource_metadata`.
pub fn prm_url(resource: &str) -> String {
    match Url::parse(resource) {
        Ok(u) => format!("{}{}", u.origin().ascii_serialization(), prm_path(resource)),
        Err(_) => prm_path(resource),
    }
}

/// The document: `resource` exactly the canonical resource URL.
pub fn document(resource: &str, auth_server: &str) -> ProtectedResourceMetadata {
    ProtectedResourceMetadata {
        resource: resource.to_owned(),
        authorization_servers: vec![auth_server.to_owned()],
        scopes_supported: vec![tools::READ.to_owned(), tools::WRITE.to_owned()],
        bearer_methods_supported: vec!["header".to_owned()],
        resource_name: Some(RESOURCE_NAME.to_owned()),
        resource_documentation: None,
    }
}

/// The metadata routes for `resource`.
pub fn routes(resource: &str) -> Router<AppState> {
    let mut paths = vec![
        shared::paths::PRM.to_owned(),
        format!("{}{}", shared::paths::PRM, shared::paths::MCP),
        prm_path(resource),
    ];
    paths.sort();
    paths.dedup();
    paths.into_iter().fold(Router::new(), |router, path| {
        router.route(&path, get(serve))
    })
}

async fn serve(axum::extract::State(app): axum::extract::State<AppState>) -> Response {
    let doc = document(&app.config.resource, &app.config.auth_server);
    let mut response = axum::Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_path_follows_the_resource_path() {
        assert_eq!(
            prm_path("http://127.0.0.1:8001/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            prm_path("https://api.example.com/tools/mcp"),
            "/.well-known/oauth-protected-resource/tools/mcp"
        );
        assert_eq!(
            prm_path("https://api.example.com"),
            "/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            prm_url("https://api.example.com/mcp"),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            prm_url("http://127.0.0.1:8001/mcp"),
            "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn document_shape() {
        let d = serde_json::to_value(document(
            "http://127.0.0.1:8001/mcp",
            "http://127.0.0.1:9000",
        ))
        .unwrap();
        assert_eq!(
            d,
            serde_json::json!({
                "resource": "http://127.0.0.1:8001/mcp",
                "authorization_servers": ["http://127.0.0.1:9000"],
                "scopes_supported": ["read", "write"],
                "bearer_methods_supported": ["header"],
                "resource_name": RESOURCE_NAME,
            })
        );
    }
}
