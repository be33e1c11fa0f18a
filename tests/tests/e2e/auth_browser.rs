//! The login clicked through in a real headless browser (Debian's chromium), against the mock
//! TaskManager and against an independent, certified OpenID provider (panva's
//! `oidc-provider`, configured only by base URL, paths, client id/secret and scope).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::Server;
use harness::browser::{RealLogin, js_dir, node, real_login};
use harness::stack::{
    Client, Pkce, RS_CLIENT_ID, RS_CLIENT_SECRET, Stack, authorize_url, free_port, redirect_prefix,
};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn chromium_completes_consent_and_taskmanager_login() {
    let stack = Stack::start().await.unwrap();
    let client = stack
        .register("none", "http://127.0.0.1:33418/callback")
        .await
        .unwrap();
    let pkce = Pkce::s256();
    let url = stack.authorize_url(&client, &pkce, &[]).unwrap();
    let back = real_login(RealLogin {
        url: &url,
        username: "alice",
        password: "password",
        deny: false,
        expect_prefix: &redirect_prefix(&client.redirect_uri),
        screenshots: &[
            ("consent", "consent.png"),
            ("tm-login", "taskmanager-login.png"),
        ],
    })
    .await
    .unwrap();
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params["iss"], stack.issuer());
    assert_eq!(params["state"], "st-123");
    let tokens: Value = stack
        .redeem(&client, &params["code"], &pkce)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let introspected = stack
        .introspect(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(introspected["sub"], "user-alice");
    assert!(
        harness::browser::screenshot_dir()
            .join("consent.png")
            .exists()
    );
}

#[tokio::test]
async fn chromium_deny_and_unknown_client_page() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let url = stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap();
    let back = real_login(RealLogin {
        url: &url,
        username: "alice",
        password: "password",
        deny: true,
        expect_prefix: &redirect_prefix(&client.redirect_uri),
        screenshots: &[],
    })
    .await
    .unwrap();
    assert!(back.as_str().contains("error=access_denied"), "{back}");
    // An unknown client ends on our error page: the browser run fails and keeps a screenshot.
    let unknown = harness::stack::Client {
        client_id: "unknown-client".into(),
        ..client.clone()
    };
    let url = stack.authorize_url(&unknown, &Pkce::s256(), &[]).unwrap();
    let err = real_login(RealLogin {
        url: &url,
        username: "alice",
        password: "password",
        deny: false,
        expect_prefix: &redirect_prefix(&client.redirect_uri),
        screenshots: &[("error", "error-unknown-client.png")],
    })
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("Unknown application"),
        "{err:#}"
    );
}

#[tokio::test]
async fn login_through_an_independent_openid_provider() {
    let auth_port = free_port().unwrap();
    let callback = format!("http://127.0.0.1:{auth_port}/oauth/callback");
    let op_script = js_dir().join("oidc-op.mjs");
    let op = Server::start_program(
        "oidc-op",
        &node(),
        &[
            op_script.display().to_string(),
            "--port".into(),
            "0".into(),
            "--client-id".into(),
            "federated-as".into(),
            "--client-secret".into(),
            "op-secret-123".into(),
            "--redirect-uri".into(),
            callback,
            "--auth-method".into(),
            "client_secret_post".into(),
        ],
        &[],
    )
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let issuer = format!("http://127.0.0.1:{auth_port}");
    let args: Vec<String> = [
        "--port",
        &auth_port.to_string(),
        "--issuer",
        &issuer,
        "--taskmanager-url",
        &op.url,
        "--client-id",
        "federated-as",
        "--client-secret",
        "op-secret-123",
        "--upstream-authorize-path",
        "/auth",
        "--upstream-token-path",
        "/token",
        "--upstream-jwks-path",
        "/jwks",
        "--upstream-auth-method",
        "client-secret-post",
        "--upstream-scope",
        "openid read write",
        "--resource",
        "http://127.0.0.1:8001/mcp",
        "--rs-client-id",
        RS_CLIENT_ID,
        "--rs-client-secret",
        RS_CLIENT_SECRET,
        "--data-dir",
        &data.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _auth = Server::start("auth-server", &args, &[]).await.unwrap();
    let http = reqwest::Client::new();
    let reg: Value = http
        .post(format!("{issuer}/oauth/register"))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1:47000/cb"], "token_endpoint_auth_method": "none", "client_name": "OP test"}))
        .send().await.unwrap().json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let pkce = Pkce::s256();
    let client = Client {
        client_id: client_id.to_owned(),
        client_secret: None,
        redirect_uri: "http://127.0.0.1:47000/cb".to_owned(),
    };
    let url = authorize_url(&issuer, &client, &pkce, &[("state", "op-state")]).unwrap();
    let back = real_login(RealLogin {
        url: &url,
        username: "alice",
        password: "anything",
        deny: false,
        expect_prefix: "http://127.0.0.1:47000/cb",
        screenshots: &[],
    })
    .await
    .unwrap();
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params["iss"], issuer);
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:47000/cb"),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    let introspected: Value = http
        .post(format!("{issuer}/introspect"))
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[("token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(
        introspected["sub"], "alice",
        "identity from the OP's verified id_token"
    );
    // A refresh works against the OP too (its tokens are refreshed when near expiry).
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
