//! Request extraction whose rejections are *our* errors: RFC 6749 JSON, never axum's plain text.

use crate::oauth::client_metadata::{CimdError, find_client};
use crate::state::AppState;
use crate::store::ClientRecord;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use shared::OAuthError;
use shared::secret::{TokenHash, constant_time_eq};
use std::collections::HashMap;

/// Largest form body an OAuth endpoint accepts.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Largest body the server reads at all. Bodies between the two are read and then refused with
/// a JSON error: refusing before reading would reset the connection mid-upload, and the client
/// would see a transport error instead of RFC 6749 JSON.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Parameters of an OAuth request. Every parameter may appear once, except `resource`
/// (RFC 8707 §2 allows several); a repeated one is `invalid_request` (RFC 6749 §3.1, §3.2).
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: HashMap<String, String>,
    pub resources: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text.
    pub fn parse(text: &str) -> Result<Self, OAuthError> {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
            if k == "resource" {
                p.resources.push(v.into_owned());
            } else if p.values.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{k}` is repeated"
                )));
            }
        }
        Ok(p)
    }

    /// A parameter; empty values count as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }

    /// The single `resource`, if any (several are refused: one token, one audience).
    pub fn resource(&self) -> Result<Option<&str>, OAuthError> {
        match self.resources.as_slice() {
            [] => Ok(None),
            [one] if one.is_empty() => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(OAuthError::invalid_target(
                "only one `resource` may be requested",
            )),
        }
    }
}

/// An OAuth form body (POST, `application/x-www-form-urlencoded`, size bounded).
pub struct OAuthForm(pub Params, pub HeaderMap);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.method() != Method::POST {
            return Err(OAuthError::invalid_request(
                "this endpoint accepts POST only",
            ));
        }
        let headers = req.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| OAuthError::invalid_request("request body is too large or unreadable"))?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(OAuthError::invalid_request("request body is too large"));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| OAuthError::invalid_request("request body is not UTF-8"))?;
        Ok(OAuthForm(Params::parse(text)?, headers))
    }
}

/// Credentials a client presented (RFC 6749 §2.3.1).
#[derive(Debug, Clone)]
pub struct PresentedClient {
    pub client_id: String,
    pub secret: Option<String>,
    /// Presented by HTTP Basic: failures need 401 + `WWW-Authenticate: Basic`.
    pub via_basic: bool,
}

/// Reads client credentials from HTTP Basic or the form (not both: RFC 6749 §2.3).
pub fn presented_client(
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<PresentedClient>, OAuthError> {
    let basic = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
            Some(parse_basic(&h[6..])?)
        }
        _ => None,
    };
    match (basic, params.get("client_id")) {
        (Some(b), form_id) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not both",
                ));
            }
            if form_id.is_some_and(|id| id != b.client_id) {
                return Err(
                    OAuthError::invalid_client("client_id does not match the credentials")
                        .with_basic_challenge(),
                );
            }
            Ok(Some(b))
        }
        (None, Some(id)) => Ok(Some(PresentedClient {
            client_id: id.to_owned(),
            secret: params.get("client_secret").map(str::to_owned),
            via_basic: false,
        })),
        (None, None) => Ok(None),
    }
}

fn parse_basic(b64: &str) -> Result<PresentedClient, OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge();
    let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(PresentedClient {
        client_id: unescape(id),
        secret: Some(unescape(secret)),
        via_basic: true,
    })
}

/// Authenticates a registered MCP client at the token or revocation endpoint: confidential
/// clients must present their secret, public clients their `client_id` only. A URL
/// `client_id` is resolved from its metadata document (always a public client).
pub async fn authenticate_client(
    app: &AppState,
    presented: Option<PresentedClient>,
) -> Result<ClientRecord, OAuthError> {
    let Some(p) = presented else {
        return Err(OAuthError::invalid_client(
            "client authentication is required",
        ));
    };
    let fail = |msg: &'static str| {
        let e = OAuthError::invalid_client(msg);
        if p.via_basic {
            e.with_basic_challenge()
        } else {
            e
        }
    };
    let client = match find_client(app, &p.client_id, app.clock.now()).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(fail("unknown client")),
        Err(CimdError::Store(e)) => return Err(e.into()),
        Err(e) => {
            let e = OAuthError::invalid_client(format!(
                "client metadata document: {}",
                e.public_message()
            ));
            return Err(if p.via_basic {
                e.with_basic_challenge()
            } else {
                e
            });
        }
    };
    match (&client.secret_hash, &p.secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => Err(fail("this public client has no secret")),
        (Some(_), None) => Err(fail("client secret is required")),
        (Some(hash), Some(secret)) => {
            if constant_time_eq(TokenHash::of(secret).as_str(), hash.as_str()) {
                Ok(client)
            } else {
                Err(fail("client authentication failed"))
            }
        }
    }
}

/// Whether the resource server's credentials were presented (introspection, token exchange).
pub fn is_resource_server(app: &AppState, presented: &PresentedClient) -> bool {
    match (&app.settings.rs_client, &presented.secret) {
        (Some((id, secret)), Some(given)) => {
            constant_time_eq(id, &presented.client_id) && constant_time_eq(secret.expose(), given)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_refused_except_resource() {
        assert!(Params::parse("a=1&a=2").is_err());
        let p = Params::parse("resource=x&resource=y&a=1").unwrap();
        assert_eq!(p.resources.len(), 2);
        assert!(p.resource().is_err());
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(Params::parse("a=").unwrap().get("a"), None);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let raw = STANDARD.encode("my%20id:s%3Acret");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {raw}").parse().unwrap(),
        );
        let c = presented_client(&h, &Params::default()).unwrap().unwrap();
        assert_eq!(c.client_id, "my id");
        assert_eq!(c.secret.as_deref(), Some("s:cret"));
        assert!(c.via_basic);
    }
}
