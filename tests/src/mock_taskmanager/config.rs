//! Command-line flags of the mock TaskManager, each with an environment fallback.

use clap::Parser;
use shared::Secret;
use url::Url;

/// Flags of `mock-taskmanager` (see docs/CONTRACTS.md, "Mock TaskManager").
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mock-taskmanager",
    about = "A stand-in for TaskManager: login, consent, OAuth endpoints, client registration and a tasks API."
)]
pub struct Config {
    /// Port to listen on; 0 picks a free one (the bound address is printed).
    #[arg(long, env = "MOCK_TM_PORT", default_value_t = 4321)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "MOCK_TM_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Public base URL (the id_token issuer); defaults to `http://ADDR:PORT` once bound.
    #[arg(long, env = "MOCK_TM_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<Url>,
    /// Lifetime of access tokens, seconds.
    #[arg(long, env = "MOCK_TM_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    pub access_token_ttl: u64,
    /// Lifetime of refresh tokens, seconds (default 30 days).
    #[arg(long, env = "MOCK_TM_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,
    /// A pre-registered confidential client, `ID:SECRET:REDIRECT_URI[,REDIRECT_URI...]`;
    /// repeatable (in the environment: several separated by spaces).
    #[arg(
        long = "client",
        env = "MOCK_TM_CLIENTS",
        value_delimiter = ' ',
        value_parser = parse_client_spec
    )]
    pub clients: Vec<ClientSpec>,
}

/// A client given on the command line.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub redirect_uris: Vec<String>,
}

/// Parses `ID:SECRET:URI[,URI...]`; the URIs keep their own colons.
pub fn parse_client_spec(s: &str) -> Result<ClientSpec, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(id), Some(secret), Some(uris)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected ID:SECRET:REDIRECT_URI[,REDIRECT_URI...]".into());
    };
    if id.is_empty() || secret.is_empty() {
        return Err("client id and secret must not be empty".into());
    }
    let redirect_uris = uris
        .split(',')
        .map(|u| check_redirect_uri(u).map(|()| u.to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientSpec {
        client_id: id.to_owned(),
        client_secret: Secret::new(secret.to_owned()),
        redirect_uris,
    })
}

/// A redirect URI must be an absolute URL without a fragment (RFC 6749 §3.1.2).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("redirect URI `{uri}` is not a URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI `{uri}` must not have a fragment"));
    }
    if url.cannot_be_a_base() {
        return Err(format!("redirect URI `{uri}` is not a hierarchical URL"));
    }
    Ok(())
}

fn parse_public_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("the public URL must be http(s)://host[:port][/path]".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL must not have a query or fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_spec_keeps_colons_of_uris() {
        let c = parse_client_spec(
            "mcp:s3cret:http://127.0.0.1:9000/oauth/callback,http://localhost:9000/cb",
        )
        .unwrap();
        assert_eq!(c.client_id, "mcp");
        assert_eq!(c.client_secret.expose(), "s3cret");
        assert_eq!(
            c.redirect_uris,
            [
                "http://127.0.0.1:9000/oauth/callback",
                "http://localhost:9000/cb"
            ]
        );
    }

    #[test]
    fn bad_client_specs_are_refused() {
        assert!(parse_client_spec("only-id").is_err());
        assert!(parse_client_spec(":s:http://x/").is_err());
        assert!(parse_client_spec("a:b:not a url").is_err());
        assert!(parse_client_spec("a:b:http://x/#frag").is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        let c = Config::try_parse_from(["mock-taskmanager", "--port", "0"]).unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.access_token_ttl, 3600);
        assert!(c.clients.is_empty());
    }
}
