//! Browser-based MCP clients (the MCP Inspector, web clients) call the discovery documents,
//! registration, token and revocation endpoints from script: CORS preflights succeed and the
//! answers are readable cross-origin. The pages (authorize, consent, callback) stay same-origin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::stack::Stack;
use reqwest::{Method, StatusCode};

const ORIGIN: &str = "http://localhost:6274";

#[tokio::test]
async fn preflight_and_cross_origin_reads_on_script_endpoints() {
    let stack = Stack::start().await.unwrap();
    let endpoints = [
        (
            "/.well-known/oauth-authorization-server",
            "GET",
            "mcp-protocol-version",
        ),
        ("/.well-known/jwks.json", "GET", "content-type"),
        ("/oauth/register", "POST", "content-type"),
        ("/oauth/token", "POST", "authorization,content-type"),
        ("/oauth/revoke", "POST", "authorization,content-type"),
    ];
    for (path, method, headers) in endpoints {
        let r = stack
            .http
            .request(Method::OPTIONS, stack.at(path))
            .header("origin", ORIGIN)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        let allowed = r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(allowed.contains(method), "{path}: {allowed}");
        let allowed_headers = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for h in headers.split(',') {
            assert!(
                allowed_headers.contains(h),
                "{path}: {h} not in {allowed_headers}"
            );
        }
    }
    // The actual cross-origin answers carry the CORS headers, errors included, and expose
    // WWW-Authenticate (a Basic challenge on invalid_client).
    let r = stack
        .http
        .get(stack.at("/.well-known/oauth-authorization-server"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = stack
        .http
        .post(stack.at("/oauth/token"))
        .header("origin", ORIGIN)
        .basic_auth("nobody", Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("www-authenticate")
    );
}

#[tokio::test]
async fn pages_and_introspection_are_not_opened_to_other_origins() {
    let stack = Stack::start().await.unwrap();
    for path in ["/oauth/authorize", "/oauth/consent", "/introspect"] {
        let r = stack
            .http
            .request(Method::OPTIONS, stack.at(path))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}
