//! What the auth server, the resource server and the CLI agree on: wire types of the OAuth
//! documents they exchange, the RFC 6749 error type, and small pure helpers (PKCE, scopes,
//! redirect URIs, resource indicators, secrets, time). No server logic lives here.

pub mod claims;
pub mod introspection;
pub mod logging;
pub mod metadata;
pub mod oauth_error;
pub mod paths;
pub mod pkce;
pub mod redirect_uri;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod time;
pub mod token;

pub use oauth_error::{ErrorCode, OAuthError};
pub use scope::Scope;
pub use secret::Secret;
pub use time::UnixTime;
