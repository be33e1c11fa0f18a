//! Reading a compact JWS without verifying it, to assert on what a server put in a token.
//! (Tests that must verify a signature use `jsonwebtoken` with the published JWKS.)

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

fn part(jwt: &str, index: usize) -> Result<Value> {
    let segment = jwt
        .split('.')
        .nth(index)
        .with_context(|| format!("not a compact JWS: no part {index}"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .context("JWS part is not base64url")?;
    serde_json::from_slice(&bytes).context("JWS part is not JSON")
}

/// The JOSE header of `jwt`.
pub fn header(jwt: &str) -> Result<Value> {
    part(jwt, 0)
}

/// The claims of `jwt`.
pub fn claims(jwt: &str) -> Result<Value> {
    part(jwt, 1)
}
