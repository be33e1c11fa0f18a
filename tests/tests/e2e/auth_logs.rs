//! Secrets never appear in logs: a whole login, refresh, exchange and revocation at the most
//! verbose log level, then the log is searched for every secret and token that went by.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::stack::{Pkce, RS_CLIENT_SECRET, Stack, StackOptions, TM_CLIENT_SECRET};
use serde_json::Value;

#[tokio::test]
async fn no_secret_or_token_reaches_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth-server.log");
    let stack = Stack::start_with(StackOptions {
        auth_env: vec![("RUST_LOG".into(), "trace".into())],
        auth_log: Some(log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();
    let pkce = Pkce::s256();
    let redirect = stack.authorize(&client, &pkce).await.unwrap();
    let code = redirect.code().to_owned();
    let tokens: Value = stack
        .redeem(&client, &code, &pkce)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refreshed: Value = stack
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exchanged: Value = stack
        .exchange(refreshed["access_token"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upstream = exchanged["access_token"].as_str().unwrap().to_owned();
    stack.introspect(&access).await.unwrap();
    stack
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "wrong-token"),
            ],
        )
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.len() > 1000,
        "trace logging produced output ({} bytes)",
        text.len()
    );
    let secrets = [
        ("client secret", client.client_secret.clone().unwrap()),
        ("TaskManager client secret", TM_CLIENT_SECRET.to_owned()),
        ("resource server secret", RS_CLIENT_SECRET.to_owned()),
        ("authorization code", code),
        ("access token", access),
        ("refresh token", refresh),
        (
            "rotated refresh token",
            refreshed["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("TaskManager access token", upstream),
        ("PKCE verifier", pkce.verifier.clone()),
    ];
    for (what, secret) in secrets {
        assert!(!text.contains(&secret), "{what} appears in the log");
    }
}

/// A stack whose auth server logs to a file at `warn`, with TaskManager flags `tm_args`.
async fn logged_stack(tm_args: &[&str]) -> (Stack, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth-server.log");
    let stack = Stack::start_with(StackOptions {
        auth_env: vec![("RUST_LOG".into(), "warn".into())],
        auth_log: Some(log.clone()),
        tm_args: tm_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    (stack, log, dir)
}

#[tokio::test]
async fn taskmanager_tokens_shorter_than_the_refresh_margin_are_reported_once() {
    const WARNING: &str = "shorter than --upstream-refresh-margin-secs";
    let (stack, log, _dir) = logged_stack(&["--access-token-ttl", "60"]).await;
    let client = stack.public_client().await.unwrap();
    for _ in 0..2 {
        stack.tokens(&client).await.unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches(WARNING).count(), 1, "{text}");
    assert!(text.contains("margin_secs=300"), "{text}");

    // TaskManager's default lifetime (an hour) is well above the margin: nothing to say.
    let (stack, log, _dir) = logged_stack(&[]).await;
    let client = stack.public_client().await.unwrap();
    stack.tokens(&client).await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(WARNING), "{text}");
}
