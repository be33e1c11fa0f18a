//! Redirect URIs: which ones a client may register (OAuth 2.1 §2.3.1, RFC 8252 §7), and how a
//! requested one is matched against the registered ones (exact, except a loopback port).

use url::{Host, Url};

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    #[error(
        "redirect URI must use https, or http on a loopback address (127.0.0.1, [::1], localhost)"
    )]
    InsecureHttp,
    #[error("redirect URI scheme is not allowed; use https, or http on a loopback address")]
    Scheme,
    #[error(
        "private-use scheme redirect URIs (RFC 8252 §7.1) are not accepted by this server; use \
         https, or http on a loopback address"
    )]
    PrivateUseDisabled,
}

/// Which redirect URIs registration accepts beyond https and loopback http.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrivateUseSchemes {
    /// Only https and loopback http (the default).
    #[default]
    Refused,
    /// Also reverse-domain private-use schemes such as `com.example.app:/cb` (RFC 8252 §7.1),
    /// which some desktop MCP clients register.
    Allowed,
}

/// `127.0.0.1` (any of 127/8), `[::1]` or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a redirect URI offered at registration.
///
/// Allowed: `https` URIs; `http` URIs on a loopback host (RFC 8252 §7.3, native apps and CLI
/// clients); with [`PrivateUseSchemes::Allowed`], private-use schemes in reverse-domain form
/// such as `com.example.app:/cb` (RFC 8252 §7.1). Never fragments (RFC 6749 §3.1.2).
pub fn check_registrable(
    uri: &str,
    private_use: PrivateUseSchemes,
) -> Result<Url, RedirectUriError> {
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err(RedirectUriError::InsecureHttp),
        "https" => Err(RedirectUriError::NotAbsolute),
        // Reverse-domain private-use schemes contain a dot (RFC 8252 §7.1); this also refuses
        // `javascript:`, `data:`, `file:` and the like.
        s if s.contains('.') => match private_use {
            PrivateUseSchemes::Allowed => Ok(url),
            PrivateUseSchemes::Refused => Err(RedirectUriError::PrivateUseDisabled),
        },
        _ => Err(RedirectUriError::Scheme),
    }
}

/// Whether a requested redirect URI matches a registered one.
///
/// Exact string comparison (OAuth 2.1 §4.1.3), except that for `http` loopback URIs the port is
/// ignored, because native apps bind an ephemeral port at request time (RFC 8252 §7.3).
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    if reg.scheme() != "http" || req.scheme() != "http" || !is_loopback_host(&reg) {
        return false;
    }
    reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && reg.username() == req.username()
        && reg.password() == req.password()
        && req.fragment().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: PrivateUseSchemes = PrivateUseSchemes::Refused;

    #[test]
    fn private_use_schemes_only_when_allowed() {
        assert_eq!(
            check_registrable("com.example.app:/oauth", STRICT),
            Err(RedirectUriError::PrivateUseDisabled)
        );
        assert_eq!(
            check_registrable("javascript:alert(1)", PrivateUseSchemes::Allowed),
            Err(RedirectUriError::Scheme)
        );
    }

    #[test]
    fn registrable_uris() {
        assert!(check_registrable("https://claude.ai/api/mcp/auth_callback", STRICT).is_ok());
        assert!(check_registrable("http://127.0.0.1:33418/callback", STRICT).is_ok());
        assert!(check_registrable("http://localhost/cb", STRICT).is_ok());
        assert!(check_registrable("http://[::1]:8080/cb", STRICT).is_ok());
        assert!(check_registrable("com.example.app:/oauth", PrivateUseSchemes::Allowed).is_ok());
        assert_eq!(
            check_registrable("http://example.com/cb", STRICT),
            Err(RedirectUriError::InsecureHttp)
        );
        assert_eq!(
            check_registrable("https://x.test/cb#frag", STRICT),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            check_registrable("/relative", STRICT),
            Err(RedirectUriError::NotAbsolute)
        );
        assert_eq!(
            check_registrable("javascript:alert(1)", STRICT),
            Err(RedirectUriError::Scheme)
        );
    }

    #[test]
    fn exact_match_except_loopback_port() {
        assert!(matches("https://a.test/cb", "https://a.test/cb"));
        assert!(!matches("https://a.test/cb", "https://a.test/cb/"));
        assert!(!matches("https://a.test:443/cb", "https://a.test:8443/cb"));
        assert!(matches(
            "http://127.0.0.1:1000/cb",
            "http://127.0.0.1:2000/cb"
        ));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:2000/cb"));
        assert!(matches("http://localhost:1/cb", "http://localhost:2/cb"));
        assert!(!matches(
            "http://127.0.0.1:1000/cb",
            "http://localhost:1000/cb"
        ));
        assert!(!matches(
            "http://127.0.0.1:1000/cb",
            "http://127.0.0.1:1000/other"
        ));
        assert!(!matches(
            "http://127.0.0.1:1/cb?a=1",
            "http://127.0.0.1:1/cb?a=2"
        ));
        assert!(!matches("http://127.0.0.1:1/cb", "http://evil.test:1/cb"));
    }
}
