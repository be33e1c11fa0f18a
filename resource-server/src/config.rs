//! Command line and environment configuration, validated into a [`Config`].
//!
//! The names of the TaskManager integration document (`MCP_RESOURCE_HOST`,
//! `MCP_RESOURCE_PORT`, `MCP_RESOURCE_AUTH_SERVER_URL`, `TASKMANAGER_BASE_URL`) keep working.

use clap::Parser;
use shared::Secret;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use url::Url;

/// Flags of the `resource-server` binary, each with an environment fallback.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "resource-server",
    version,
    about = "The protected TaskManager MCP server"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "MCP_RESOURCE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MCP_RESOURCE_PORT", default_value_t = 8001)]
    pub port: u16,
    /// Base URL of the authorization server (introspection and token exchange).
    #[arg(
        long = "auth-server",
        env = "MCP_RESOURCE_AUTH_SERVER_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    pub auth_server: String,
    /// Public canonical URL of this MCP resource (RFC 8707/9728). Behind a proxy it differs
    /// from the listen address. Default: `http://{host}:{bound port}/mcp`.
    #[arg(long, env = "MCP_RESOURCE_URL")]
    pub resource: Option<String>,
    /// This resource server's client id at the authorization server.
    #[arg(long = "rs-client-id", env = "MCP_RS_CLIENT_ID", default_value = "")]
    pub rs_client_id: String,
    /// This resource server's client secret at the authorization server.
    #[arg(
        long = "rs-client-secret",
        env = "MCP_RS_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub rs_client_secret: String,
    /// Base URL of TaskManager (its tasks API), also the token-exchange `audience`.
    #[arg(
        long = "taskmanager-url",
        env = "TASKMANAGER_BASE_URL",
        default_value = "http://127.0.0.1:4321"
    )]
    pub taskmanager_url: String,
    /// Extra browser origins allowed to call `/mcp` (besides the resource's host and
    /// loopback), e.g. `https://inspector.example.com`. Repeatable or comma-separated.
    #[arg(
        long = "allowed-origin",
        env = "MCP_RESOURCE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Extra `Host` header values accepted on `/mcp` (DNS-rebinding protection), besides the
    /// resource's host and loopback names. Repeatable or comma-separated.
    #[arg(
        long = "allowed-host",
        env = "MCP_RESOURCE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// How long an introspection answer may be reused, in seconds. Bounds how long a revoked
    /// token keeps working here.
    #[arg(
        long,
        env = "MCP_RESOURCE_INTROSPECTION_CACHE_SECS",
        default_value_t = 3
    )]
    pub introspection_cache_secs: u64,
    /// Maximum number of cached introspection answers and upstream tokens.
    #[arg(long, env = "MCP_RESOURCE_CACHE_CAPACITY", default_value_t = 10_000)]
    pub cache_capacity: usize,
    /// Timeout of each call to the authorization server, in milliseconds.
    #[arg(long, env = "MCP_RESOURCE_AUTH_TIMEOUT_MS", default_value_t = 5_000)]
    pub auth_timeout_ms: u64,
    /// Timeout of each call to TaskManager, in milliseconds.
    #[arg(
        long,
        env = "MCP_RESOURCE_UPSTREAM_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub upstream_timeout_ms: u64,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} is not a valid absolute http(s) URL: {value}")]
    BadUrl { flag: &'static str, value: String },
    #[error("--resource must be an absolute URL without a fragment: {0}")]
    BadResource(String),
    #[error("--allowed-origin {0} is not an origin such as https://app.example.com")]
    BadOrigin(String),
    #[error("--introspection-cache-secs must be at most 60 (it bounds revocation latency)")]
    CacheTooLong,
    #[error("--cache-capacity must be at least 1")]
    CacheCapacity,
    #[error("{flag} is required (or set {env}): introspection and token exchange need it")]
    Missing {
        flag: &'static str,
        env: &'static str,
    },
}

/// The checked configuration. The resource URL is known only once the port is bound.
#[derive(Debug, Clone)]
pub struct Config {
    /// Canonical resource URL (`shared::resource::canonicalize`).
    pub resource: String,
    /// Authorization server base URL, without a trailing slash.
    pub auth_server: String,
    pub rs_client_id: String,
    pub rs_client_secret: Secret<String>,
    /// TaskManager base URL, without a trailing slash.
    pub taskmanager_url: String,
    /// Extra allowed origins, as ASCII-serialized origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Accepted `Host` values on `/mcp`.
    pub allowed_hosts: Vec<String>,
    pub introspection_ttl: Duration,
    pub cache_capacity: usize,
    pub auth_timeout: Duration,
    pub upstream_timeout: Duration,
}

impl Args {
    /// Checks the flags; `bound` is the address the listener actually bound.
    pub fn validate(&self, bound: SocketAddr) -> Result<Config, ConfigError> {
        let auth_server = base_url("--auth-server", &self.auth_server)?;
        let taskmanager_url = base_url("--taskmanager-url", &self.taskmanager_url)?;
        let resource = match &self.resource {
            Some(r) => shared::resource::canonicalize(r)
                .map_err(|_| ConfigError::BadResource(r.clone()))?,
            None => default_resource(bound),
        };
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| normalize_origin(o).ok_or_else(|| ConfigError::BadOrigin(o.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if self.introspection_cache_secs > 60 {
            return Err(ConfigError::CacheTooLong);
        }
        if self.cache_capacity == 0 {
            return Err(ConfigError::CacheCapacity);
        }
        if self.rs_client_id.trim().is_empty() {
            return Err(ConfigError::Missing {
                flag: "--rs-client-id",
                env: "MCP_RS_CLIENT_ID",
            });
        }
        if self.rs_client_secret.is_empty() {
            return Err(ConfigError::Missing {
                flag: "--rs-client-secret",
                env: "MCP_RS_CLIENT_SECRET",
            });
        }
        let mut allowed_hosts: Vec<String> =
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(host) = Url::parse(&resource)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            allowed_hosts.push(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            );
        }
        if !bound.ip().is_unspecified() {
            allowed_hosts.push(bound.ip().to_string());
        }
        allowed_hosts.extend(
            self.allowed_hosts
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
        );
        allowed_hosts.sort();
        allowed_hosts.dedup();
        Ok(Config {
            resource,
            auth_server,
            rs_client_id: self.rs_client_id.clone(),
            rs_client_secret: Secret::new(self.rs_client_secret.clone()),
            taskmanager_url,
            allowed_origins,
            allowed_hosts,
            introspection_ttl: Duration::from_secs(self.introspection_cache_secs),
            cache_capacity: self.cache_capacity,
            auth_timeout: Duration::from_millis(self.auth_timeout_ms.max(1)),
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms.max(1)),
        })
    }
}

/// `http://{host}:{port}/mcp`; an unspecified listen address (0.0.0.0) is not a URL anyone
/// can reach, so loopback stands in for it (set `--resource` for a public deployment).
fn default_resource(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "http://{}{}",
        SocketAddr::new(ip, bound.port()),
        shared::paths::MCP
    )
}

/// An absolute http(s) URL, returned without its trailing slash.
fn base_url(flag: &'static str, value: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadUrl {
        flag,
        value: value.to_owned(),
    };
    let url = Url::parse(value.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The ASCII serialization of an origin (`scheme://host[:port]`, default port dropped), or
/// `None` when `value` is not a tuple origin.
pub fn normalize_origin(value: &str) -> Option<String> {
    let url = Url::parse(value).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "resource-server",
            "--rs-client-id",
            "rs",
            "--rs-client-secret",
            "s",
        ];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn issue_command_line_parses() {
        let a = Args::parse_from([
            "resource-server",
            "--port",
            "8001",
            "--auth-server",
            "http://127.0.0.1:9000",
            "--resource",
            "http://127.0.0.1:8001/mcp",
            "--rs-client-id",
            "RS_ID",
            "--rs-client-secret",
            "RS_SECRET",
            "--taskmanager-url",
            "http://127.0.0.1:4321",
        ]);
        assert!(matches!(
            Args::parse_from(["resource-server"]).validate("127.0.0.1:1".parse().unwrap()),
            Err(ConfigError::Missing { .. })
        ));
        let c = a.validate("127.0.0.1:8001".parse().unwrap()).unwrap();
        assert_eq!(c.resource, "http://127.0.0.1:8001/mcp");
        assert_eq!(c.auth_server, "http://127.0.0.1:9000");
        assert_eq!(c.rs_client_id, "RS_ID");
        assert_eq!(c.rs_client_secret.expose(), "RS_SECRET");
        assert_eq!(c.taskmanager_url, "http://127.0.0.1:4321");
        assert!(!format!("{c:?}").contains("RS_SECRET"));
    }

    #[test]
    fn default_resource_uses_bound_port() {
        let c = args(&["--port", "0"])
            .validate("127.0.0.1:41234".parse().unwrap())
            .unwrap();
        assert_eq!(c.resource, "http://127.0.0.1:41234/mcp");
        let c = args(&[]).validate("0.0.0.0:8001".parse().unwrap()).unwrap();
        assert_eq!(c.resource, "http://127.0.0.1:8001/mcp");
        let c = args(&[]).validate("[::1]:8001".parse().unwrap()).unwrap();
        assert_eq!(c.resource, "http://[::1]:8001/mcp");
    }

    #[test]
    fn resource_is_canonicalized_and_urls_checked() {
        let c = args(&["--resource", "HTTPS://MCP.Example.com/mcp/"])
            .validate("127.0.0.1:1".parse().unwrap())
            .unwrap();
        assert_eq!(c.resource, "https://mcp.example.com/mcp");
        assert!(c.allowed_hosts.contains(&"mcp.example.com".to_owned()));
        assert!(matches!(
            args(&["--auth-server", "ftp://x"]).validate("127.0.0.1:1".parse().unwrap()),
            Err(ConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            args(&["--allowed-origin", "not a url"]).validate("127.0.0.1:1".parse().unwrap()),
            Err(ConfigError::BadOrigin(_))
        ));
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example.com:443/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            normalize_origin("http://localhost:6274").as_deref(),
            Some("http://localhost:6274")
        );
        assert_eq!(normalize_origin("null"), None);
    }
}
