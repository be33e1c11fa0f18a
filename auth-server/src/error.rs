//! The auth server's internal error: logged once where it becomes a wire error, never leaked.

use crate::store::StoreError;
use crate::tokens::keys::KeyError;
use crate::upstream::vault::VaultError;
use shared::OAuthError;

/// An internal failure (storage, keys, crypto).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "internal error");
        OAuthError::server_error()
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<KeyError> for OAuthError {
    fn from(e: KeyError) -> Self {
        Error::from(e).into()
    }
}

impl From<VaultError> for OAuthError {
    fn from(e: VaultError) -> Self {
        Error::from(e).into()
    }
}
