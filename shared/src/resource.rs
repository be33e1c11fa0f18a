//! Resource indicators (RFC 8707): the canonical form of a resource URI, so that a trailing
//! slash or an upper-case scheme or host name the same resource (MCP authorization spec,
//! "Canonical Server URI").

use url::Url;

/// Why a `resource` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource must be an absolute URI")]
    NotAbsolute,
    #[error("resource must not contain a fragment (RFC 8707 section 2)")]
    Fragment,
}

/// The canonical form of a resource URI: scheme and host lower-cased (the URL parser does it),
/// default port dropped, one trailing slash of the path dropped.
pub fn canonicalize(resource: &str) -> Result<String, ResourceError> {
    let url = Url::parse(resource.trim()).map_err(|_| ResourceError::NotAbsolute)?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ResourceError::NotAbsolute);
    }
    if url.fragment().is_some() {
        return Err(ResourceError::Fragment);
    }
    let mut s = String::from(url.as_str());
    if url.query().is_none() && s.ends_with('/') {
        s.pop();
    }
    Ok(s)
}

/// Whether two resource URIs name the same resource.
pub fn same(a: &str, b: &str) -> bool {
    match (canonicalize(a), canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonicalize("http://127.0.0.1:8001/mcp").unwrap(),
            "http://127.0.0.1:8001/mcp"
        );
        assert_eq!(
            canonicalize("HTTP://LOCALHOST:8001/mcp/").unwrap(),
            "http://localhost:8001/mcp"
        );
        assert_eq!(
            canonicalize("https://api.test:443/").unwrap(),
            "https://api.test"
        );
        assert_eq!(canonicalize("urn:x"), Err(ResourceError::NotAbsolute));
        assert_eq!(
            canonicalize("https://a.test/mcp#x"),
            Err(ResourceError::Fragment)
        );
    }

    #[test]
    fn sameness() {
        assert!(same("http://Host:1/mcp/", "http://host:1/mcp"));
        assert!(!same("http://host:1/mcp", "http://host:1/MCP"));
        assert!(!same("http://host:1/mcp", "http://host:2/mcp"));
    }
}
