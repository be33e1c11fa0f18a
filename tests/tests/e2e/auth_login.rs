//! The federated login end to end: discovery → registration → consent → TaskManager login →
//! our code → MCP tokens; and the rules of each step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::stack::{Browser, Pkce, Stack, redirect_prefix};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn metadata_advertises_endpoints_and_s256() {
    let stack = Stack::start().await.unwrap();
    let m = stack
        .get_json("/.well-known/oauth-authorization-server")
        .await
        .unwrap();
    let issuer = stack.issuer();
    assert_eq!(m["issuer"], issuer);
    assert_eq!(
        m["authorization_endpoint"],
        format!("{issuer}/oauth/authorize")
    );
    assert_eq!(m["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(
        m["registration_endpoint"],
        format!("{issuer}/oauth/register")
    );
    assert_eq!(m["introspection_endpoint"], format!("{issuer}/introspect"));
    assert_eq!(m["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
    assert_eq!(m["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["response_types_supported"], json!(["code"]));
    let jwks = stack.get_json("/.well-known/jwks.json").await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key["kid"].as_str().is_some());
    let health = stack.http.get(stack.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn full_login_issues_our_own_tokens() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let pkce = Pkce::s256();
    let redirect = stack.authorize(&client, &pkce).await.unwrap();
    assert_eq!(redirect.param("state"), Some("st-123"));
    assert_eq!(redirect.param("iss"), Some(stack.issuer().as_str()));
    let response = stack.redeem(&client, redirect.code(), &pkce).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "read write");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh.len(), 43, "256-bit opaque refresh token");
    let access = tokens["access_token"].as_str().unwrap();
    let header = harness::jwt::header(access).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let claims = harness::jwt::claims(access).unwrap();
    assert_eq!(claims["iss"], stack.issuer());
    assert_eq!(claims["sub"], "user-alice");
    assert_eq!(claims["aud"], stack.resource);
    assert_eq!(claims["client_id"], client.client_id);
    assert_eq!(claims["scope"], "read write");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(claims["jti"].as_str().is_some());
    // TaskManager's token never reaches the MCP client.
    assert!(!tokens.to_string().contains("tm_"), "{tokens}");
    let introspected = stack.introspect(access).await.unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["sub"], "user-alice");
    // RFC 7662 `username`: the id_token's preferred_username.
    assert_eq!(introspected["username"], "alice");
}

#[tokio::test]
async fn confidential_client_with_basic_and_post() {
    let stack = Stack::start().await.unwrap();
    for method in ["client_secret_basic", "client_secret_post"] {
        let client = stack
            .register(method, "https://app.example/cb")
            .await
            .unwrap();
        assert!(client.client_secret.is_some());
        let pkce = Pkce::s256();
        let redirect = stack.authorize(&client, &pkce).await.unwrap();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", redirect.code()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let req = stack.http.post(stack.at("/oauth/token"));
        let secret = client.client_secret.clone().unwrap();
        let resp = if method == "client_secret_basic" {
            req.basic_auth(&client.client_id, Some(&secret))
                .form(&form)
                .send()
                .await
                .unwrap()
        } else {
            let mut f = form.to_vec();
            f.push(("client_id", &client.client_id));
            f.push(("client_secret", &secret));
            req.form(&f).send().await.unwrap()
        };
        assert_eq!(resp.status(), StatusCode::OK, "{method}");
        // Wrong secret: invalid_client; via Basic: 401 + Basic challenge.
        let bad = stack
            .http
            .post(stack.at("/oauth/token"))
            .basic_auth(&client.client_id, Some("wrong"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        assert!(
            bad.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert_eq!(
            bad.json::<Value>().await.unwrap()["error"],
            "invalid_client"
        );
    }
}

#[tokio::test]
async fn deny_returns_access_denied_with_iss() {
    let stack = Stack::start().await.unwrap();
    let client = stack.public_client().await.unwrap();
    let url = stack.authorize_url(&client, &Pkce::s256(), &[]).unwrap();
    let redirect = Browser::new()
        .login(url, "alice", "deny", &redirect_prefix(&client.redirect_uri))
        .await
        .unwrap();
    assert_eq!(redirect.param("error"), Some("access_denied"));
    assert_eq!(redirect.param("state"), Some("st-123"));
    assert_eq!(redirect.param("iss"), Some(stack.issuer().as_str()));
}

#[tokio::test]
async fn without_an_id_token_the_user_comes_from_userinfo_or_a_clear_error() {
    use harness::stack::StackOptions;
    let stack_with = |extra: &[&str]| {
        let auth_args: Vec<String> = ["--upstream-scope", "read write"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        Stack::start_with(StackOptions {
            auth_args,
            ..Default::default()
        })
    };
    // No `openid`, so no id_token: the configured userinfo endpoint names the user.
    let stack = stack_with(&["--upstream-userinfo-path", "/api/oauth/userinfo"])
        .await
        .unwrap();
    let client = stack.public_client().await.unwrap();
    let tokens = stack.tokens(&client).await.unwrap();
    let introspected = stack
        .introspect(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(introspected["sub"], "user-alice");
    assert_eq!(introspected["username"], "alice");

    // Neither: the login ends at the client with an error that names the setting to fix.
    let stack = stack_with(&[]).await.unwrap();
    let client = stack.public_client().await.unwrap();
    let redirect = stack.authorize(&client, &Pkce::s256()).await.unwrap();
    assert_eq!(redirect.param("error"), Some("server_error"));
    let description = redirect.param("error_description").unwrap_or_default();
    assert!(description.contains("openid"), "{description}");
    assert!(redirect.param("code").is_none());
}

#[tokio::test]
async fn a_configured_vault_key_is_used_and_a_wrong_one_refuses_to_start() {
    use harness::stack::StackOptions;
    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut stack = Stack::start_with(StackOptions {
        auth_env: vec![("MCP_VAULT_KEY".into(), KEY.into())],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = stack.public_client().await.unwrap();
    let tokens = stack.tokens(&client).await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert!(
        !stack.data_dir.path().join("vault.key").exists(),
        "no key file is generated when the key is configured"
    );
    stack.stop_auth().await;
    // Another key cannot open what the first one sealed: a clear refusal, not a half start.
    let out = std::process::Command::new(harness::bin_path("auth-server").unwrap())
        .args(stack.auth_args())
        .env("MCP_VAULT_KEY", "ff".repeat(32))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot be decrypted with the configured vault key"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(KEY) && !stderr.contains(&"ff".repeat(32)),
        "{stderr}"
    );
    // The right key again: everything issued before is intact.
    stack.start_auth().await.unwrap();
    assert_eq!(stack.introspect(&access).await.unwrap()["active"], true);
    let refreshed = stack
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
}
