//! `Origin` validation on `/mcp` (MCP streamable HTTP transport, "Security Warning": servers
//! MUST validate `Origin` to prevent DNS rebinding). A request without `Origin` (not from a
//! browser) passes; a browser origin passes when its host is the resource's host or a
//! loopback host, or when it is in the configured allow list.

use std::net::IpAddr;
use url::{Host, Url};

/// The origin policy of `/mcp`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Host of the canonical resource URL (lower case, IPv6 without brackets).
    resource_host: Option<Host<String>>,
    /// Extra allowed origins, ASCII-serialized.
    extra: Vec<String>,
}

impl OriginPolicy {
    /// The policy for `resource` plus the `extra` origins (already normalized).
    pub fn new(resource: &str, extra: Vec<String>) -> Self {
        let resource_host = Url::parse(resource)
            .ok()
            .and_then(|u| u.host().map(|h| h.to_owned()));
        Self {
            resource_host,
            extra,
        }
    }

    /// Whether a request carrying `Origin: origin` may be served.
    pub fn allows(&self, origin: &str) -> bool {
        let Ok(url) = Url::parse(origin.trim()) else {
            return false;
        };
        let serialized = url.origin();
        if !serialized.is_tuple() || !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        if self
            .extra
            .iter()
            .any(|o| *o == serialized.ascii_serialization())
        {
            return true;
        }
        let Some(host) = url.host() else {
            return false;
        };
        is_loopback(&host)
            || self
                .resource_host
                .as_ref()
                .is_some_and(|r| *r == host.to_owned())
    }
}

/// `localhost` (and its subdomains, RFC 6761 §6.3), `127.0.0.0/8`, `::1`.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost" || d.ends_with(".localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new(
            "https://mcp.example.com/mcp",
            vec!["https://inspector.example.org".into()],
        )
    }

    #[test]
    fn resource_host_and_loopback_pass() {
        let p = policy();
        assert!(p.allows("https://mcp.example.com"));
        assert!(p.allows("https://MCP.example.com:8443"));
        assert!(p.allows("http://localhost:6274"));
        assert!(p.allows("http://127.0.0.1:3000"));
        assert!(p.allows("http://[::1]:3000"));
        assert!(p.allows("https://inspector.example.org"));
    }

    #[test]
    fn other_origins_are_refused() {
        let p = policy();
        assert!(!p.allows("https://evil.example"));
        assert!(!p.allows("https://mcp.example.com.evil.example"));
        assert!(!p.allows("https://inspector.example.org:8443"));
        assert!(!p.allows("null"));
        assert!(!p.allows("not a url"));
        assert!(!p.allows("file:///etc/passwd"));
        assert!(!p.allows("http://127.0.0.1.nip.io"));
    }
}
