//! One test per rule of the federated login (registration, authorize, consent, callback,
//! code redemption) and the bad-input and upstream-fault rules, with exact errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::stack::{Browser, Client, Pkce, Stack, StackOptions, hidden_field, redirect_prefix};
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

async fn error_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]
            .as_str()
            .unwrap_or("<no error field>")
            .to_owned(),
    )
}

/// Sends the browser to `url` and returns the first response (no redirects followed).
async fn first_hop(browser: &Browser, url: Url) -> reqwest::Response {
    browser.http.get(url).send().await.unwrap()
}

fn redirect_params(r: &reqwest::Response) -> (Url, std::collections::HashMap<String, String>) {
    let loc = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let params = loc.query_pairs().into_owned().collect();
    (loc, params)
}

// ---------- Registration (RFC 7591) ----------

#[tokio::test]
async fn registration_accepts_public_and_confidential_clients() {
    let stack = Stack::start().await.unwrap();
    let r = stack
        .http
        .post(stack.at("/oauth/register"))
        .json(&json!({
            "client_name": "Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback"],
            "token_endpoint_auth_method": "none", "unknown_field": {"x": 1}, "scope": "read admin"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert!(body["client_id"].as_str().is_some());
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["scope"], "read", "unknown scopes are narrowed away");
    assert!(body.get("unknown_field").is_none());

    let (status, body) = stack
        .register_raw(&json!({"redirect_uris": ["https://app.example/cb"]}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["client_secret"].as_str().unwrap().len(), 43);
    assert_eq!(body["client_secret_expires_at"], 0);
    // Root alias.
    let r = stack
        .http
        .post(stack.at("/register"))
        .json(&json!({"redirect_uris": ["https://app.example/cb2"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn private_use_scheme_redirects_only_when_the_operator_allows_them() {
    let stack = Stack::start_with(StackOptions {
        auth_args: vec!["--allow-private-use-redirect-schemes".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, body) = stack
        .register_raw(&json!({"redirect_uris": ["com.example.app:/oauth/cb"], "token_endpoint_auth_method": "none"}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["redirect_uris"], json!(["com.example.app:/oauth/cb"]));
    // Still never script or file schemes.
    for uri in [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/html,x",
    ] {
        let (status, body) = stack
            .register_raw(&json!({"redirect_uris": [uri]}))
            .await
            .unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn registration_refuses_bad_metadata_with_exact_errors() {
    let stack = Stack::start().await.unwrap();
    let cases = [
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "https://a.example/cb"}),
            "invalid_redirect_uri",
        ),
        (json!({}), "invalid_redirect_uri"),
        // https or loopback http only, unless the operator opens private-use schemes.
        (
            json!({"redirect_uris": ["com.example.app:/oauth/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "client_name": 42}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (json!([1, 2]), "invalid_client_metadata"),
    ];
    for (body, expected) in cases {
        let (status, got) = stack.register_raw(&body).await.unwrap();
        assert_eq!(
            (status, got["error"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, expected),
            "{body}"
        );
    }
    let r = stack
        .http
        .post(stack.at("/oauth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::BAD_REQUEST, "invalid_client_metadata".into())
    );
    let r = stack
        .http
        .post(stack.at("/oauth/register"))
        .form(&[("redirect_uris", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}

#[tokio::test]
async fn identical_repeat_registration_does_not_pile_up() {
    let stack = Stack::start().await.unwrap();
    let meta = json!({"client_name": "Twice", "redirect_uris": ["http://127.0.0.1:5000/cb"], "token_endpoint_auth_method": "none"});
    let (_, a) = stack.register_raw(&meta).await.unwrap();
    let (_, b) = stack.register_raw(&meta).await.unwrap();
    assert_eq!(a["client_id"], b["client_id"]);
    let (_, c) = stack.register_raw(&json!({"client_name": "Other", "redirect_uris": ["http://127.0.0.1:5000/cb"], "token_endpoint_auth_method": "none"})).await.unwrap();
    assert_ne!(a["client_id"], c["client_id"]);
    // A confidential client is never merged: the first registrant's secret must keep working.
    let meta = json!({"client_name": "Secret twice", "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_basic"});
    let (_, first) = stack.register_raw(&meta).await.unwrap();
    let (_, second) = stack.register_raw(&meta).await.unwrap();
    assert_ne!(first["client_id"], second["client_id"]);
    for reg in [&first, &second] {
        let r = stack
            .http
            .post(stack.at("/oauth/token"))
            .basic_auth(
                reg["client_id"].as_str().unwrap(),
                reg["client_secret"].as_str(),
            )
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "unknown"),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"], "invalid_grant",
            "the secret authenticates: {body}"
        );
    }
}

#[tokio::test]
async fn registration_policy_closed_and_initial_access_token() {
    let closed = Stack::start_with(StackOptions {
        auth_args: vec!["--registration".into(), "closed".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, body) = closed
        .register_raw(&json!({"redirect_uris": ["https://a.example/cb"]}))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "access_denied")
    );

    let iat = Stack::start_with(StackOptions {
        auth_args: vec![
            "--registration".into(),
            "initial-access-token".into(),
            "--initial-access-token".into(),
            "let-me-in".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let (status, _) = iat
        .register_raw(&json!({"redirect_uris": ["https://a.example/cb"]}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = iat
        .http
        .post(iat.at("/oauth/register"))
        .bearer_auth("let-me-in")
        .json(&json!({"redirect_uris": ["https://a.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn registration_is_rate_limited_per_ip() {
    let stack = Stack::start_with(StackOptions {
        auth_args: vec!["--registration-rate-per-minute".into(), "2".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body =
            json!({"client_name": format!("c{i}"), "redirect_uris": ["https://a.example/cb"]});
        let r = stack
            .http
            .post(stack.at("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "60");
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"],
                "temporarily_unavailable"
            );
        }
    }
    // Two fit in one window; the third is refused (unless the minute turned in between).
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(
        created == 2 || created == 3 && statuses[2] == StatusCode::CREATED,
        "{statuses:?}"
    );
    if created == 2 {
        assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS);
    }
}

// ---------- Authorization endpoint ----------

#[tokio::test]
async fn unknown_client_or_unregistered_redirect_is_a_page_not_a_redirect() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let browser = Browser::new();
    let fake = Client {
        client_id: "nope".into(),
        client_secret: None,
        redirect_uri: "https://evil.example/cb".into(),
    };
    let r = first_hop(
        &browser,
        stack.authorize_url(&fake, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("Unknown application"));

    let evil = Client {
        redirect_uri: "https://evil.example/cb".into(),
        ..client.clone()
    };
    let r = first_hop(
        &browser,
        stack.authorize_url(&evil, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    // Other path on the registered loopback host is not the registered URI either.
    let other_path = Client {
        redirect_uri: "http://127.0.0.1:33418/other".into(),
        ..client
    };
    let r = first_hop(
        &browser,
        stack
            .authorize_url(&other_path, &Pkce::s256(), &[])
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn loopback_redirect_port_may_differ() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap(); // registered http://127.0.0.1:33418/callback
    let moved = Client {
        redirect_uri: "http://127.0.0.1:45999/callback".into(),
        ..client
    };
    let pkce = Pkce::s256();
    let redirect = stack.authorize(&moved, &pkce).await.unwrap();
    assert_eq!(redirect.url.port(), Some(45999));
    let r = stack.redeem(&moved, redirect.code(), &pkce).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn request_errors_redirect_back_with_state_and_iss() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let pkce = Pkce::s256();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
        (vec![("scope", "read admin")], "invalid_scope"),
    ];
    for (extra, expected) in cases {
        let r = first_hop(
            &Browser::new(),
            stack.authorize_url(&client, &pkce, &extra).unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FOUND, "{extra:?}");
        let (loc, p) = redirect_params(&r);
        assert!(loc.as_str().starts_with(&client.redirect_uri));
        assert_eq!(p["error"], expected);
        assert_eq!(p["state"], "st-123");
        assert_eq!(p["iss"], stack.issuer());
    }
    // Hand-built URLs for PKCE and response_type rules.
    let base = format!(
        "{}?client_id={}&redirect_uri={}&state=s1",
        stack.at("/oauth/authorize"),
        client.client_id,
        client.redirect_uri
    );
    let cases = [
        (
            format!(
                "{base}&response_type=token&code_challenge={}&code_challenge_method=S256",
                pkce.challenge
            ),
            "unsupported_response_type",
        ),
        (format!("{base}&response_type=code"), "invalid_request"),
        (
            format!(
                "{base}&response_type=code&code_challenge={}&code_challenge_method=plain",
                pkce.challenge
            ),
            "invalid_request",
        ),
        (
            format!(
                "{base}&response_type=code&code_challenge={}",
                pkce.challenge
            ),
            "invalid_request",
        ),
        (
            format!("{base}&response_type=code&code_challenge=short&code_challenge_method=S256"),
            "invalid_request",
        ),
    ];
    for (url, expected) in cases {
        let r = first_hop(&Browser::new(), Url::parse(&url).unwrap()).await;
        let (_, p) = redirect_params(&r);
        assert_eq!(p["error"], expected, "{url}");
        assert_eq!(p["state"], "s1");
        assert_eq!(p["iss"], stack.issuer());
    }
}

#[tokio::test]
async fn resource_indicator_forms() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    for resource in [
        None,
        Some("http://127.0.0.1:8001/mcp/"),
        Some("HTTP://127.0.0.1:8001/mcp"),
    ] {
        let pkce = Pkce::s256();
        let extra: Vec<(&str, &str)> = resource.map(|r| vec![("resource", r)]).unwrap_or_default();
        let url = stack.authorize_url(&client, &pkce, &extra).unwrap();
        let redirect = Browser::new()
            .login(
                url,
                "alice",
                "approve",
                &redirect_prefix(&client.redirect_uri),
            )
            .await
            .unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", redirect.code()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let tokens: Value = stack
            .token(&client, &form)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let introspected = stack
            .introspect(tokens["access_token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(
            introspected["aud"], "http://127.0.0.1:8001/mcp",
            "{resource:?}"
        );
    }
}

#[tokio::test]
async fn root_authorize_alias_answers() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let url = stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap();
    let alias = Url::parse(&url.as_str().replace("/oauth/authorize", "/authorize")).unwrap();
    let r = first_hop(&Browser::new(), alias).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/oauth/consent")
    );
}

// ---------- Consent ----------

#[tokio::test]
async fn consent_page_names_client_redirect_scopes_and_resource_and_cannot_be_framed() {
    let stack = Stack::start().await.unwrap();
    let client = stack
        .register("none", "https://claude.example/api/mcp/auth_callback")
        .await
        .unwrap();
    let browser = Browser::new();
    let r = first_hop(
        &browser,
        stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    let consent = Url::parse(&stack.issuer())
        .unwrap()
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap();
    let page = browser.http.get(consent).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    for expected in [
        "E2E Client",
        "claude.example",
        "https://claude.example/api/mcp/auth_callback",
        "read",
        "write",
        "http://127.0.0.1:8001/mcp",
        "csrf_token",
    ] {
        assert!(html.contains(expected), "consent page lacks {expected}");
    }
}

#[tokio::test]
async fn consent_rejects_bad_csrf_and_foreign_sessions() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let browser = Browser::new();
    let r = first_hop(
        &browser,
        stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    let consent = Url::parse(&stack.issuer())
        .unwrap()
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap();
    let html = browser
        .http
        .get(consent.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let request_id = hidden_field(&html, "request_id").unwrap();
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    // Wrong CSRF token.
    let r = browser
        .http
        .post(stack.at("/oauth/consent"))
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", "forged"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another browser (another session) cannot see or answer it, even with the token.
    let other = Browser::new();
    let r = other.http.get(consent).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = other
        .http
        .post(stack.at("/oauth/consent"))
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("location").is_none());
    // The rightful browser still can.
    let r = browser
        .http
        .post(stack.at("/oauth/consent"))
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&stack.tm.url)
    );
}

#[tokio::test]
async fn consent_is_remembered_per_client_and_redirect_in_the_browser_session() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let browser = Browser::new();
    let prefix = redirect_prefix(&client.redirect_uri);
    browser
        .login(
            stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap(),
            "alice",
            "approve",
            &prefix,
        )
        .await
        .unwrap();
    // Second time: straight to TaskManager, no consent page.
    let r = first_hop(
        &browser,
        stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(&stack.tm.url), "{loc}");
    let upstream = Url::parse(loc).unwrap();
    let q: std::collections::HashMap<_, _> = upstream.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], harness::stack::TM_CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_ne!(q["state"], "st-123", "upstream state is our own");
    // Another client in the same browser still needs consent.
    let other = stack
        .register("none", "http://127.0.0.1:40000/cb")
        .await
        .unwrap();
    let r = first_hop(
        &browser,
        stack.authorize_url(&other, &Pkce::s256(), &[]).unwrap(),
    )
    .await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/oauth/consent")
    );
}

// ---------- Callback ----------

/// Runs a login up to the moment TaskManager redirects to our callback; returns that URL.
async fn until_callback(stack: &Stack, browser: &Browser, client: &Client, pkce: &Pkce) -> Url {
    let prefix = stack.at("/oauth/callback");
    browser
        .login(
            stack.authorize_url(client, pkce, &[]).unwrap(),
            "alice",
            "approve",
            &prefix,
        )
        .await
        .unwrap()
        .url
}

#[tokio::test]
async fn callback_state_is_single_use_and_bound_to_the_browser() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let browser = Browser::new();
    let callback = until_callback(&stack, &browser, &client, &Pkce::s256()).await;
    // Another browser presenting the callback is refused, and cannot burn... it is single use
    // though, so check the foreign attempt on a second login.
    let r = browser.http.get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let again = browser.http.get(callback).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "state replay");
    assert!(again.text().await.unwrap().contains("cannot be completed"));

    let browser2 = Browser::new();
    let callback2 = until_callback(&stack, &browser2, &client, &Pkce::s256()).await;
    let r = Browser::new().http.get(callback2).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "foreign browser session"
    );
    assert!(r.headers().get("location").is_none());

    let r = browser
        .http
        .get(format!(
            "{}?code=x&state=unknown",
            stack.at("/oauth/callback")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn taskmanager_down_slow_or_garbage_at_callback_is_a_clear_error() {
    let stack = Stack::start_with(StackOptions {
        auth_args: vec!["--upstream-timeout-secs".into(), "1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = stack.public_client().await.unwrap();
    for (knobs, expected) in [
        (json!({"fail_status": 503}), "temporarily_unavailable"),
        (json!({"delay_ms": 2500}), "temporarily_unavailable"),
        (json!({"garbage": true}), "server_error"),
        // OIDC Core §3.1.3.7: we sent a nonce, so an id_token without it is refused.
        (json!({"omit_nonce": true}), "server_error"),
    ] {
        stack
            .tm_knobs(
                json!({"fail_status": null, "delay_ms": 0, "garbage": false, "omit_nonce": false}),
            )
            .await
            .unwrap();
        let browser = Browser::new();
        let callback = until_callback(&stack, &browser, &client, &Pkce::s256()).await;
        stack.tm_knobs(knobs.clone()).await.unwrap();
        let started = std::time::Instant::now();
        let r = browser.http.get(callback).send().await.unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "bounded"
        );
        assert_eq!(r.status(), StatusCode::FOUND, "{knobs}");
        let (_, p) = redirect_params(&r);
        assert_eq!(p["error"], expected, "{knobs}");
        assert_eq!(p["iss"], stack.issuer());
        assert_eq!(p["state"], "st-123");
        if knobs["omit_nonce"] == true {
            assert!(p["error_description"].contains("nonce"), "{p:?}");
        }
    }
}

// ---------- Code redemption ----------

/// Builds a token-request form from the client, the code and the PKCE pair.
type FormFn = Box<dyn Fn(&Client, &str, &Pkce) -> Vec<(String, String)>>;

#[tokio::test]
async fn second_redemption_fails_and_revokes_what_the_first_issued() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let pkce = Pkce::s256();
    let code = stack.authorize(&client, &pkce).await.unwrap();
    let first: Value = stack
        .redeem(&client, code.code(), &pkce)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(stack.introspect(access).await.unwrap()["active"], true);
    let second = stack.redeem(&client, code.code(), &pkce).await.unwrap();
    assert_eq!(
        error_of(second).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert_eq!(
        stack.introspect(access).await.unwrap(),
        json!({"active": false})
    );
    let refresh = stack
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        error_of(refresh).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
}

#[tokio::test]
async fn concurrent_redemptions_have_exactly_one_winner() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    // Eight at once, then pairs: a pair makes the replay land while the winner's tokens are
    // still being stored, the narrowest window.
    for attempts in [8, 2, 2, 2, 2, 2] {
        let pkce = Pkce::s256();
        let code = stack.authorize(&client, &pkce).await.unwrap();
        let redemptions = (0..attempts).map(|_| stack.redeem(&client, code.code(), &pkce));
        let mut winners = Vec::new();
        let mut refused = 0;
        for r in futures::future::join_all(redemptions).await {
            let r = r.unwrap();
            match r.status() {
                StatusCode::OK => winners.push(r.json::<Value>().await.unwrap()),
                StatusCode::BAD_REQUEST => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!((winners.len(), refused), (1, attempts - 1));
        // The replays revoked what the winner got (RFC 9700 §4.5.3.1: a replayed code is a
        // leaked one), even when they arrived before the winner's tokens were stored.
        for kind in ["access_token", "refresh_token"] {
            let token = winners[0][kind].as_str().unwrap();
            let v = stack.introspect(token).await.unwrap();
            assert_eq!(
                v,
                json!({"active": false}),
                "{kind} after {attempts} redemptions"
            );
        }
    }
}

#[tokio::test]
async fn redemption_checks_verifier_redirect_client_and_resource() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let other = stack
        .register("none", "http://127.0.0.1:40001/cb")
        .await
        .unwrap();
    let cases: Vec<(&str, FormFn, &Client, &str)> = vec![
        (
            "wrong verifier",
            Box::new(|c, code, _| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), c.redirect_uri.clone()),
                    ("code_verifier".into(), Pkce::s256().verifier),
                ]
            }),
            &client,
            "invalid_grant",
        ),
        (
            "wrong redirect",
            Box::new(|_, code, p| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), "http://127.0.0.1:33418/other".into()),
                    ("code_verifier".into(), p.verifier.clone()),
                ]
            }),
            &client,
            "invalid_grant",
        ),
        (
            "other client",
            Box::new(|c, code, p| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), c.redirect_uri.clone()),
                    ("code_verifier".into(), p.verifier.clone()),
                ]
            }),
            &other,
            "invalid_grant",
        ),
        (
            "other resource",
            Box::new(|c, code, p| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), c.redirect_uri.clone()),
                    ("code_verifier".into(), p.verifier.clone()),
                    ("resource".into(), "https://x.example/mcp".into()),
                ]
            }),
            &client,
            "invalid_target",
        ),
        (
            "missing verifier",
            Box::new(|c, code, _| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), c.redirect_uri.clone()),
                ]
            }),
            &client,
            "invalid_request",
        ),
    ];
    for (name, form, presenter, expected) in cases {
        let pkce = Pkce::s256();
        let code = stack.authorize(&client, &pkce).await.unwrap();
        let mut f = form(&client, code.code(), &pkce);
        f.push(("grant_type".into(), "authorization_code".into()));
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = stack.token(presenter, &f).await.unwrap();
        assert_eq!(
            error_of(r).await,
            (StatusCode::BAD_REQUEST, expected.to_owned()),
            "{name}"
        );
    }
}

// ---------- Bad input on OAuth endpoints ----------

#[tokio::test]
async fn bad_input_on_the_token_endpoint_is_rfc6749_json_4xx() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let token = stack.at("/oauth/token");
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            stack.http.post(&token).header("content-type", form),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            stack
                .http
                .post(&token)
                .json(&json!({"grant_type": "authorization_code"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body(format!(
                    "grant_type=password&client_id={}",
                    client.client_id
                )),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body("grant_type=authorization_code&grant_type=refresh_token"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body(vec![b'a'; 2 * 1024 * 1024]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body(vec![0xff, 0xfe, 0x00, 0x80]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            stack.http.get(&token),
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body("grant_type=authorization_code&client_id=unknown&code=x&code_verifier=y"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            stack
                .http
                .post(&token)
                .header("content-type", form)
                .body(format!(
                    "grant_type=authorization_code&client_id={}&code=unknown&code_verifier={}",
                    client.client_id,
                    "a".repeat(43)
                )),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            stack
                .http
                .post(stack.at("/token"))
                .header("content-type", form)
                .body("grant_type=nope"),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "case {i}"
        );
        assert_eq!(error_of(r).await, (status, code.to_owned()), "case {i}");
    }
}

#[tokio::test]
async fn bodies_over_the_server_limit_get_oauth_json_or_a_page_never_plain_text() {
    let stack = Stack::start().await.unwrap();
    // Just over the 4 MiB limit: the server stops reading there and answers (a client still
    // sending megabytes more may see the connection close instead; that is its problem).
    let huge = vec![b'a'; 4 * 1024 * 1024 + 1024];
    let oauth = [
        (
            "/oauth/register",
            "application/json",
            "invalid_client_metadata",
        ),
        (
            "/oauth/token",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (
            "/oauth/revoke",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (
            "/introspect",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
    ];
    for (path, content_type, code) in oauth {
        let r = stack
            .http
            .post(stack.at(path))
            .header("content-type", content_type)
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(r).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{path}"
        );
    }
    let r = Browser::new()
        .http
        .post(stack.at("/oauth/consent"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("Form too large"));
}

#[tokio::test]
async fn browser_endpoints_answer_bad_input_with_pages() {
    let stack = Stack::start().await.unwrap();
    let b = Browser::new();
    for url in [
        stack.at("/oauth/authorize"),
        stack.at("/oauth/authorize?client_id=a&client_id=b"),
        stack.at("/oauth/consent"),
        stack.at("/oauth/consent?request_id=nope"),
        stack.at("/oauth/callback"),
    ] {
        let r = b.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{url}"
        );
    }
    let r = b
        .http
        .post(stack.at("/oauth/consent"))
        .body(vec![0xffu8, 0x00])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
}

// ---------- State survives restarts ----------

#[tokio::test]
async fn restart_keeps_clients_and_tokens_valid() {
    let mut stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let tokens = stack.tokens(&client).await.unwrap();
    stack.stop_auth().await;
    stack.start_auth().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        stack.introspect(access).await.unwrap()["active"],
        true,
        "signing keys persisted"
    );
    // The registration is still there: a new login works with the same client.
    stack.tokens(&client).await.unwrap();
    let vault_key = stack.data_dir.path().join("vault.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(vault_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
