//! The MCP access token: a JWT (RFC 9068 profile) signed with our current key (EdDSA by
//! default; ES256 or a pinned RS256 key per `keys`).

use super::keys::{KeyError, KeyRing};
use jsonwebtoken::{Header, Validation};
use shared::UnixTime;
use shared::claims::{ACCESS_TOKEN_TYP, AccessTokenClaims};

/// Signs `claims` with the current key.
pub async fn sign(keys: &KeyRing, claims: &AccessTokenClaims) -> Result<String, KeyError> {
    let (kid, alg, key) = keys.signing_key().await?;
    let mut header = Header::new(alg);
    header.kid = Some(kid);
    header.typ = Some(ACCESS_TOKEN_TYP.into());
    jsonwebtoken::encode(&header, claims, &key).map_err(|_| KeyError::NoKey)
}

/// Verifies signature, issuer and expiry; `None` for anything not a valid token of ours.
/// Audience is checked by the caller (introspection reports it; the resource server compares).
pub async fn verify(
    keys: &KeyRing,
    token: &str,
    issuer: &str,
    now: UnixTime,
) -> Option<AccessTokenClaims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let (alg, key) = keys.decoding_key(header.kid.as_deref()?, now).await?;
    // The key decides the algorithm, never the token (no algorithm confusion).
    if header.alg != alg {
        return None;
    }
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    // Expiry is checked below against our clock, without leeway.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &validation).ok()?;
    (data.claims.exp > now.0).then_some(data.claims)
}
