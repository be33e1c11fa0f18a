//! `GET /.well-known/oauth-authorization-server` (RFC 8414 §3), also served at the OpenID
//! discovery path because some MCP clients probe that first.

use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use shared::metadata::AuthorizationServerMetadata;
use shared::paths;
use shared::token::GRANT_TOKEN_EXCHANGE;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::AS_METADATA, get(metadata))
        .route(paths::OIDC_METADATA, get(metadata))
}

/// Builds the metadata document from the configured issuer; paths are the router's constants.
pub fn document(app: &AppState) -> AuthorizationServerMetadata {
    let s = &app.settings;
    let at = |path: &str| format!("{}{path}", s.issuer);
    let client_auth = vec![
        "client_secret_basic".into(),
        "client_secret_post".into(),
        "none".into(),
    ];
    let rs_auth = vec![
        "client_secret_basic".to_owned(),
        "client_secret_post".to_owned(),
    ];
    AuthorizationServerMetadata {
        issuer: s.issuer.clone(),
        authorization_endpoint: at(paths::AUTHORIZE),
        token_endpoint: at(paths::TOKEN),
        jwks_uri: Some(at(paths::JWKS)),
        registration_endpoint: Some(at(paths::REGISTER)),
        introspection_endpoint: Some(at(paths::INTROSPECT)),
        revocation_endpoint: Some(at(paths::REVOKE)),
        scopes_supported: s.mcp_scopes.iter().map(str::to_owned).collect(),
        response_types_supported: vec!["code".into()],
        response_modes_supported: vec!["query".into()],
        grant_types_supported: vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "client_credentials".into(),
            GRANT_TOKEN_EXCHANGE.into(),
        ],
        token_endpoint_auth_methods_supported: client_auth.clone(),
        introspection_endpoint_auth_methods_supported: rs_auth,
        revocation_endpoint_auth_methods_supported: client_auth,
        code_challenge_methods_supported: vec![shared::pkce::S256.into()],
        authorization_response_iss_parameter_supported: true,
        client_id_metadata_document_supported: true,
        service_documentation: None,
    }
}

async fn metadata(State(app): State<AppState>) -> Json<AuthorizationServerMetadata> {
    Json(document(&app))
}
