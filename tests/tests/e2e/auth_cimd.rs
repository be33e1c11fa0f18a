//! Client ID metadata documents (MCP 2025-11-25; draft-ietf-oauth-client-id-metadata-document):
//! a URL `client_id` is resolved from the document it names. A small axum server in the test
//! serves the documents on 127.0.0.1, which the auth server reaches only with its hidden
//! test flag `--cimd-insecure-allow-loopback-http` (loopback is otherwise refused by design).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use harness::stack::{Browser, Client, Pkce, Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

const REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// Serves metadata documents on 127.0.0.1 and counts the fetches of each.
struct DocServer {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

#[derive(Clone)]
struct DocState {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

async fn document(State(s): State<DocState>, Path(name): Path<String>) -> Response {
    *s.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let own_id = format!("{}/docs/{name}", s.base);
    let doc = |id: &str, redirect: &str| {
        json!({
            "client_id": id,
            "client_name": "CIMD Test App",
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
        })
    };
    let json_headers = |cache: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.insert(header::CACHE_CONTROL, cache.parse().unwrap());
        h
    };
    match name.as_str() {
        "client.json" | "cached.json" => (
            json_headers("max-age=300"),
            doc(&own_id, REDIRECT_URI).to_string(),
        )
            .into_response(),
        "nostore.json" => (
            json_headers("no-store"),
            doc(&own_id, REDIRECT_URI).to_string(),
        )
            .into_response(),
        "wrong-id.json" => (
            json_headers("max-age=300"),
            doc(&format!("{}/docs/client.json", s.base), REDIRECT_URI).to_string(),
        )
            .into_response(),
        "other-redirect.json" => (
            json_headers("max-age=300"),
            doc(&own_id, "http://127.0.0.1:33418/other").to_string(),
        )
            .into_response(),
        "secret.json" => {
            let mut d = doc(&own_id, REDIRECT_URI);
            d["token_endpoint_auth_method"] = "client_secret_basic".into();
            (json_headers("max-age=300"), d.to_string()).into_response()
        }
        "redirect.json" => (
            AxumStatus::FOUND,
            [(header::LOCATION, format!("{}/docs/client.json", s.base))],
        )
            .into_response(),
        "slow.json" => {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            (
                json_headers("max-age=300"),
                doc(&own_id, REDIRECT_URI).to_string(),
            )
                .into_response()
        }
        "big.json" => {
            let mut d = doc(&own_id, REDIRECT_URI);
            d["padding"] = "x".repeat(70 * 1024).into();
            (json_headers("max-age=300"), d.to_string()).into_response()
        }
        _ => AxumStatus::NOT_FOUND.into_response(),
    }
}

impl DocServer {
    async fn start() -> DocServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let app = Router::new()
            .route("/docs/{name}", get(document))
            .with_state(DocState {
                base: base.clone(),
                hits: hits.clone(),
            });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DocServer { base, hits }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/docs/{name}", self.base)
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn client(&self, name: &str) -> Client {
        Client {
            client_id: self.url(name),
            client_secret: None,
            redirect_uri: REDIRECT_URI.to_owned(),
        }
    }
}

async fn stack_allowing_loopback() -> Stack {
    Stack::start_with(StackOptions {
        auth_args: vec!["--cimd-insecure-allow-loopback-http".into()],
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

/// The first answer to the authorization request of `client` (no redirects followed).
async fn first_hop(stack: &Stack, browser: &Browser, client: &Client) -> reqwest::Response {
    let url = stack.authorize_url(client, &Pkce::s256(), &[]).unwrap();
    browser.http.get(url).send().await.unwrap()
}

/// Asserts `r` is an HTML error page (never a redirect) whose text contains `needle`.
async fn assert_error_page(r: reqwest::Response, needle: &str) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.headers().get("location").is_none(),
        "must not redirect to an untrusted client"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains(needle), "page lacks {needle:?}: {html}");
}

async fn token_error(stack: &Stack, client: &Client) -> (StatusCode, Value) {
    let r = stack
        .token(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "not-a-token"),
            ],
        )
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn full_login_with_a_metadata_document_url_as_client_id() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let meta = stack
        .get_json("/.well-known/oauth-authorization-server")
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let client = docs.client("client.json");
    // The consent page says the client is identified by a URL and names its host.
    let browser = Browser::new();
    let r = first_hop(&stack, &browser, &client).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let consent = Url::parse(&stack.issuer())
        .unwrap()
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap();
    let html = browser
        .http
        .get(consent)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("CIMD Test App"), "{html}");
    assert!(html.contains("identified by a web address"), "{html}");
    assert!(html.contains("<p class=\"host\">127.0.0.1</p>"), "{html}");

    // The whole login; the code is redeemed with client_id = URL and no secret.
    let tokens = stack.tokens(&client).await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let info = stack.introspect(access).await.unwrap();
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], client.client_id.as_str());

    // Refresh with client_id = URL works; the cached document is used (one fetch in all).
    let r = stack
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(docs.hits("client.json"), 1, "max-age=300 is honoured");

    // A CIMD client has no secret: presenting one is invalid_client.
    let with_secret = Client {
        client_secret: Some("guess".into()),
        ..client.clone()
    };
    let (status, body) = token_error(&stack, &with_secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn document_whose_client_id_differs_is_an_error_page_and_invalid_client() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let client = docs.client("wrong-id.json");
    let r = first_hop(&stack, &Browser::new(), &client).await;
    assert_error_page(r, "its client_id does not equal its URL").await;
    let (status, body) = token_error(&stack, &client).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    // Invalid documents are not cached: each use fetches again.
    assert_eq!(docs.hits("wrong-id.json"), 2);
}

#[tokio::test]
async fn redirect_uri_not_in_the_document_is_an_error_page() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let r = first_hop(&stack, &Browser::new(), &docs.client("other-redirect.json")).await;
    assert_error_page(r, "Redirect address not registered").await;
}

#[tokio::test]
async fn document_asking_for_a_shared_secret_is_refused() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let r = first_hop(&stack, &Browser::new(), &docs.client("secret.json")).await;
    assert_error_page(r, "token_endpoint_auth_method must be none").await;
}

#[tokio::test]
async fn loopback_url_is_refused_without_the_test_flag() {
    let docs = DocServer::start().await;
    let stack = Stack::start().await.unwrap();
    let client = docs.client("client.json");
    let r = first_hop(&stack, &Browser::new(), &client).await;
    assert_error_page(r, "must use https").await;
    let (status, body) = token_error(&stack, &client).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(docs.hits("client.json"), 0, "nothing was fetched");
}

#[tokio::test]
async fn https_urls_to_non_public_addresses_are_refused_even_with_the_test_flag() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let port = Url::parse(&docs.base).unwrap().port().unwrap();
    for client_id in [
        format!("https://127.0.0.1:{port}/docs/client.json"),
        format!("https://localhost:{port}/docs/client.json"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://[::ffff:127.0.0.1]/client.json".to_owned(),
        "https://10.0.0.1/client.json".to_owned(),
    ] {
        let client = Client {
            client_id,
            client_secret: None,
            redirect_uri: REDIRECT_URI.into(),
        };
        let r = first_hop(&stack, &Browser::new(), &client).await;
        assert_error_page(r, "non-public address").await;
    }
    assert_eq!(docs.hits("client.json"), 0);
}

#[tokio::test]
async fn malformed_client_id_urls_are_refused() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    for (client_id, needle) in [
        (format!("{}/", docs.base), "must contain a path"),
        (
            format!("{}/docs/x/../client.json", docs.base),
            "path segments",
        ),
        ("http://localhost/client.json".to_owned(), "must use https"),
    ] {
        let client = Client {
            client_id,
            client_secret: None,
            redirect_uri: REDIRECT_URI.into(),
        };
        let r = first_hop(&stack, &Browser::new(), &client).await;
        assert_error_page(r, needle).await;
    }
}

#[tokio::test]
async fn a_redirecting_url_is_refused() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let r = first_hop(&stack, &Browser::new(), &docs.client("redirect.json")).await;
    assert_error_page(r, "HTTP 302").await;
    assert_eq!(docs.hits("client.json"), 0, "the redirect was not followed");
}

#[tokio::test]
async fn an_oversize_document_is_refused() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let r = first_hop(&stack, &Browser::new(), &docs.client("big.json")).await;
    assert_error_page(r, "larger than").await;
}

#[tokio::test]
async fn concurrent_first_uses_of_a_url_fetch_its_document_once() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    let client = docs.client("slow.json");
    let answers = futures::future::join_all(
        (0..8).map(|_| async { first_hop(&stack, &Browser::new(), &client).await.status() }),
    )
    .await;
    assert!(
        answers.iter().all(|s| *s == StatusCode::SEE_OTHER),
        "{answers:?}"
    );
    assert_eq!(docs.hits("slow.json"), 1, "one fetch for eight requests");
}

#[tokio::test]
async fn documents_are_cached_by_their_cache_control() {
    let docs = DocServer::start().await;
    let stack = stack_allowing_loopback().await;
    for _ in 0..2 {
        let r = first_hop(&stack, &Browser::new(), &docs.client("cached.json")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = first_hop(&stack, &Browser::new(), &docs.client("nostore.json")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(docs.hits("cached.json"), 1);
    assert_eq!(docs.hits("nostore.json"), 2);
}
