//! Endpoint paths, shared by the routers that serve them and the metadata that advertises them.

/// RFC 8414 authorization server metadata.
pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect discovery alias of the same document (some MCP clients probe it first).
pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";
/// RFC 7517 key set of the auth server.
pub const JWKS: &str = "/.well-known/jwks.json";
/// RFC 7591 dynamic client registration.
pub const REGISTER: &str = "/oauth/register";
/// RFC 6749 §3.1 authorization endpoint.
pub const AUTHORIZE: &str = "/oauth/authorize";
/// Consent page (MCP security best practices: confused deputy).
pub const CONSENT: &str = "/oauth/consent";
/// Where TaskManager sends the user back with its code.
pub const CALLBACK: &str = "/oauth/callback";
/// RFC 6749 §3.2 token endpoint.
pub const TOKEN: &str = "/oauth/token";
/// RFC 7662 introspection.
pub const INTROSPECT: &str = "/introspect";
/// RFC 7009 revocation.
pub const REVOKE: &str = "/oauth/revoke";
/// Root aliases for clients of the 2025-03-26 MCP revision that fall back to them.
pub const AUTHORIZE_ALIAS: &str = "/authorize";
/// Root alias of the token endpoint.
pub const TOKEN_ALIAS: &str = "/token";
/// Root alias of the registration endpoint.
pub const REGISTER_ALIAS: &str = "/register";
/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: store and upstream reachable.
pub const READYZ: &str = "/readyz";
/// Prometheus text metrics.
pub const METRICS: &str = "/metrics";
/// RFC 9728 protected resource metadata (root form).
pub const PRM: &str = "/.well-known/oauth-protected-resource";
/// The MCP endpoint of the resource server.
pub const MCP: &str = "/mcp";
