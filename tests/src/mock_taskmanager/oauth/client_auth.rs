//! Client authentication at the token endpoint (RFC 6749 §2.3.1): `client_secret_basic`
//! (credentials form-urlencoded, then Base64 in HTTP Basic) or `client_secret_post`.

use super::super::state::{ClientRecord, MockState};
use super::super::util::{form_decode, param};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use shared::OAuthError;
use shared::secret::constant_time_eq;
use std::collections::HashMap;

/// The same answer for an unknown client and a wrong secret, so neither can be probed.
const FAILED: &str = "client authentication failed";

/// Authenticates the client of a token request.
pub(super) fn authenticate(
    state: &MockState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<ClientRecord, OAuthError> {
    let basic = basic_credentials(headers)?;
    let body_id = param(params, "client_id");
    let body_secret = param(params, "client_secret");
    let (id, secret, via_basic) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            // §2.3: "The client MUST NOT use more than one authentication method in each request."
            return Err(OAuthError::invalid_request(
                "use either HTTP Basic or client_secret in the body, not both",
            ));
        }
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body does not match the HTTP Basic credentials",
                ));
            }
            (id, secret, true)
        }
        (None, Some(secret)) => {
            let id = body_id.ok_or_else(|| {
                OAuthError::invalid_request("client_secret was sent without client_id")
            })?;
            (id.to_owned(), secret.to_owned(), false)
        }
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is required (client_secret_basic or client_secret_post)",
            )
            .with_basic_challenge());
        }
    };
    let client = state.db().client(&id).cloned();
    let fail = || {
        tracing::info!(target: "security", client_id = %id, "client authentication failed");
        let e = OAuthError::invalid_client(FAILED);
        if via_basic {
            e.with_basic_challenge()
        } else {
            e
        }
    };
    let client = client.ok_or_else(fail)?;
    if !constant_time_eq(client.client_secret.expose(), &secret) {
        return Err(fail());
    }
    Ok(client)
}

/// The decoded `Authorization: Basic` credentials, if that header is present.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || OAuthError::invalid_client("malformed HTTP Basic credentials").with_basic_challenge();
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "the token endpoint accepts only HTTP Basic client credentials",
        )
        .with_basic_challenge());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).map_err(|_| malformed())?;
    let secret = form_decode(secret).map_err(|_| malformed())?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, secret)))
}
