//! TaskManager, the upstream OAuth provider: its HTTP client and the vault for its tokens.

pub mod client;
pub mod grant;
pub mod vault;
