//! Issuing and checking MCP access tokens. Introspection, revocation and token exchange all
//! ask [`check`], so "active" means one thing everywhere: valid signature and issuer,
//! unexpired, not revoked by `jti`, and its refresh family (if any) not revoked.

use crate::error::Error;
use crate::state::AppState;
use crate::store::FamilyRecord;
use shared::claims::AccessTokenClaims;
use shared::secret::random_token;
use shared::{Scope, UnixTime};

/// Prefix of `jti`s of tokens without a family (client credentials).
const NO_FAMILY: &str = "cc";

/// An active access token and the family it descends from.
pub struct Active {
    pub claims: AccessTokenClaims,
    pub family: Option<FamilyRecord>,
}

/// The family id a `jti` carries (`{family}.{random}`), if any.
fn family_of(jti: &str) -> Option<&str> {
    jti.split_once('.')
        .map(|(f, _)| f)
        .filter(|f| *f != NO_FAMILY)
}

/// Mints an access token for `sub`/`client_id` with `scope` and audience `resource`.
/// Returns the JWT and its lifetime in seconds.
pub async fn mint(
    app: &AppState,
    family_id: Option<&str>,
    sub: &str,
    client_id: &str,
    resource: &str,
    scope: &Scope,
    now: UnixTime,
) -> Result<(String, u64), Error> {
    let ttl = app.settings.access_token_ttl;
    let claims = AccessTokenClaims {
        iss: app.settings.issuer.clone(),
        sub: sub.to_owned(),
        aud: resource.to_owned(),
        client_id: client_id.to_owned(),
        scope: scope.to_string(),
        iat: now.0,
        exp: now.plus(ttl).0,
        jti: format!("{}.{}", family_id.unwrap_or(NO_FAMILY), random_token(16)),
    };
    let jwt = super::jwt::sign(&app.keys, &claims).await?;
    Ok((jwt, ttl.as_secs()))
}

/// The token's claims if it is active at `now`.
pub async fn check(app: &AppState, token: &str, now: UnixTime) -> Result<Option<Active>, Error> {
    let Some(claims) = super::jwt::verify(&app.keys, token, &app.settings.issuer, now).await else {
        return Ok(None);
    };
    if app.store.is_access_revoked(&claims.jti).await? {
        return Ok(None);
    }
    let family = match family_of(&claims.jti) {
        Some(fid) => match app.store.get_family(fid).await? {
            Some(f) if f.revoked_at.is_none() => Some(f),
            // Revoked, or swept after expiry: either way not active.
            _ => return Ok(None),
        },
        None => None,
    };
    Ok(Some(Active { claims, family }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_is_read_from_jti() {
        assert_eq!(family_of("fabc.xyz"), Some("fabc"));
        assert_eq!(family_of("cc.xyz"), None);
        assert_eq!(family_of("nodot"), None);
    }
}
