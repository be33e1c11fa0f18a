//! Claims of the MCP access token (a JWT the auth server signs; RFC 9068 shape).

use serde::{Deserialize, Serialize};

/// The `typ` header of our access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an MCP access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The auth server's issuer URL.
    pub iss: String,
    /// TaskManager's user id.
    pub sub: String,
    /// The resource (RFC 8707) the token is for.
    pub aud: String,
    /// The MCP client the token was issued to.
    pub client_id: String,
    /// Space-delimited scopes.
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    /// Unique id; revocation and the refresh family are keyed by it.
    pub jti: String,
}
