//! The token lifecycle end to end: refresh (rotation, grace, reuse, scope, resource, the
//! upstream grant behind it), introspection (RFC 7662), revocation (RFC 7009), token exchange
//! for the resource server (RFC 8693), signing-key rotation, restarts, concurrency, and bad
//! input on the three token endpoints. Exact `error` codes and statuses throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::stack::{Client, Pkce, RS_CLIENT_ID, RS_CLIENT_SECRET, Stack, StackOptions};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

// ---------- helpers ----------

/// A stack with extra auth-server and mock-TaskManager flags.
async fn stack_with(auth_args: &[&str], tm_args: &[&str]) -> Stack {
    Stack::start_with(StackOptions {
        auth_args: auth_args.iter().map(|s| s.to_string()).collect(),
        tm_args: tm_args.iter().map(|s| s.to_string()).collect(),
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

/// Asserts an RFC 6749 §5.2 error: exact status and `error`, JSON, not cacheable.
async fn assert_error(r: Response, status: StatusCode, error: &str) -> Value {
    let got = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let no_store = r
        .headers()
        .get(CACHE_CONTROL)
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(error)),
        "{body}"
    );
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(no_store.as_deref(), Some("no-store"));
    body
}

/// Asserts 200 and returns the JSON body.
async fn ok_json(r: Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
        .to_owned()
}

fn jwt_header(jwt: &str) -> Value {
    harness::jwt::header(jwt).unwrap()
}

fn jwt_claims(jwt: &str) -> Value {
    harness::jwt::claims(jwt).unwrap()
}

/// A public client logged in as alice: the client and its token response.
async fn login(stack: &Stack) -> (Client, Value) {
    let client = stack.public_client().await.unwrap();
    let tokens = stack.tokens(&client).await.unwrap();
    (client, tokens)
}

/// `grant_type=refresh_token` with `extra` parameters, authenticating as `client`.
async fn refresh(stack: &Stack, client: &Client, token: &str, extra: &[(&str, &str)]) -> Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    stack.token(client, &form).await.unwrap()
}

/// Refreshes and expects success.
async fn refresh_ok(stack: &Stack, client: &Client, token: &str) -> Value {
    ok_json(refresh(stack, client, token, &[]).await).await
}

async fn is_active(stack: &Stack, token: &str) -> bool {
    let v = stack.introspect(token).await.unwrap();
    match v["active"].as_bool() {
        Some(true) => true,
        Some(false) => {
            assert_eq!(
                v,
                json!({"active": false}),
                "inactive answers carry nothing else"
            );
            false
        }
        None => panic!("introspection without `active`: {v}"),
    }
}

/// A token-exchange form for `subject`.
fn exchange_form<'a>(stack: &'a Stack, subject: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TYPE_ACCESS_TOKEN),
        ("requested_token_type", TYPE_ACCESS_TOKEN),
        ("audience", stack.tm.url.as_str()),
    ]
}

/// Token exchange as the resource server.
async fn exchange(stack: &Stack, subject: &str) -> Response {
    stack.exchange(subject).await.unwrap()
}

/// `POST /oauth/revoke` as `client` (Basic for confidential clients, `client_id` for public).
async fn revoke(stack: &Stack, client: &Client, form: &[(&str, &str)]) -> Response {
    let mut form = form.to_vec();
    let req = stack.http.post(stack.at("/oauth/revoke"));
    let req = match &client.client_secret {
        Some(secret) => req.basic_auth(&client.client_id, Some(secret)),
        None => {
            form.push(("client_id", &client.client_id));
            req
        }
    };
    req.form(&form).send().await.unwrap()
}

async fn refresh_grants(stack: &Stack) -> u64 {
    stack.tm_stats().await.unwrap()["refresh_grants"]
        .as_u64()
        .unwrap()
}

/// The published JWKS.
async fn jwks(stack: &Stack) -> Value {
    stack.get_json("/.well-known/jwks.json").await.unwrap()
}

async fn jwks_kids(stack: &Stack) -> Vec<String> {
    jwks(stack).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(k, "kid"))
        .collect()
}

// ---------- Refresh (RFC 6749 §6, OAuth 2.1 §4.3) ----------

#[tokio::test]
async fn refresh_rotates_the_opaque_token_and_issues_a_new_access_token() {
    let stack = Stack::start().await.unwrap();
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    let r = refresh(&stack, &client, &r0, &[]).await;
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let second = ok_json(r).await;
    let r1 = str_of(&second, "refresh_token");
    assert_ne!(r1, r0, "rotated on use");
    assert_eq!(r1.len(), 43, "256-bit opaque token");
    assert!(!r1.contains('.'), "opaque, not a JWT");
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["scope"], "read write");
    assert_eq!(second["expires_in"], 3600);
    let a1 = str_of(&second, "access_token");
    assert_ne!(a1, str_of(&first, "access_token"));
    let claims = jwt_claims(&a1);
    assert_eq!(claims["client_id"], client.client_id);
    assert_eq!(claims["aud"], stack.resource);
    assert_eq!(claims["sub"], "user-alice");
    assert!(is_active(&stack, &a1).await);
    // The successor is live, its predecessor is not.
    let introspected = stack.introspect(&r1).await.unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["client_id"], client.client_id);
    assert!(!is_active(&stack, &r0).await);
    // The successor rotates too.
    let third = refresh_ok(&stack, &client, &r1).await;
    assert_ne!(str_of(&third, "refresh_token"), r1);
}

#[tokio::test]
async fn retry_of_the_predecessor_within_grace_gets_the_same_successor() {
    let stack = Stack::start().await.unwrap();
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    let second = refresh_ok(&stack, &client, &r0).await;
    let r1 = str_of(&second, "refresh_token");
    // The response was "lost": the client retries with r0 and is not logged out.
    let retried = refresh_ok(&stack, &client, &r0).await;
    assert_eq!(str_of(&retried, "refresh_token"), r1);
    let retry_access = str_of(&retried, "access_token");
    assert!(is_active(&stack, &retry_access).await);
    assert!(is_active(&stack, &str_of(&second, "access_token")).await);
    // r1 rotates to r2; now r0 is no longer the immediate predecessor of the live token.
    let third = refresh_ok(&stack, &client, &r1).await;
    let r2 = str_of(&third, "refresh_token");
    let a2 = str_of(&third, "access_token");
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    // That reuse revoked the whole family.
    assert_error(
        refresh(&stack, &client, &r2, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    for access in [&str_of(&first, "access_token"), &retry_access, &a2] {
        assert!(!is_active(&stack, access).await);
    }
    assert!(!is_active(&stack, &r2).await);
}

#[tokio::test]
async fn reuse_outside_the_grace_window_revokes_the_family() {
    let stack = stack_with(&["--refresh-grace-secs", "0"], &[]).await;
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    let second = refresh_ok(&stack, &client, &r0).await;
    let r1 = str_of(&second, "refresh_token");
    let a1 = str_of(&second, "access_token");
    assert!(is_active(&stack, &a1).await);
    let body = assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert!(body["error_description"].as_str().is_some());
    // Every token descended from that login is dead.
    assert_error(
        refresh(&stack, &client, &r1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert!(!is_active(&stack, &a1).await);
    assert!(!is_active(&stack, &str_of(&first, "access_token")).await);
    assert!(!is_active(&stack, &r1).await);
    // Another login of the same user is a different family and unaffected.
    let other = stack.tokens(&client).await.unwrap();
    refresh_ok(&stack, &client, &str_of(&other, "refresh_token")).await;
}

#[tokio::test]
async fn reuse_while_taskmanager_is_down_still_revokes_the_family() {
    // TaskManager's tokens are always near expiry, so a fresh refresh needs TaskManager.
    let stack = stack_with(
        &["--refresh-grace-secs", "0"],
        &["--access-token-ttl", "60"],
    )
    .await;
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    let r1 = str_of(&refresh_ok(&stack, &client, &r0).await, "refresh_token");
    stack.tm_knobs(json!({"fail_status": 503})).await.unwrap();
    let upstream_before = refresh_grants(&stack).await;
    // The replay is a reuse whatever TaskManager's state: invalid_grant, never 503.
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        refresh_grants(&stack).await,
        upstream_before,
        "a replayed token costs no upstream refresh"
    );
    stack.tm_knobs(json!({"fail_status": null})).await.unwrap();
    assert_error(
        refresh(&stack, &client, &r1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn scope_may_narrow_on_refresh_but_never_widen() {
    let stack = Stack::start().await.unwrap();
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    let narrowed = ok_json(refresh(&stack, &client, &r0, &[("scope", "read")]).await).await;
    assert_eq!(narrowed["scope"], "read");
    assert_eq!(
        jwt_claims(&str_of(&narrowed, "access_token"))["scope"],
        "read"
    );
    let r1 = str_of(&narrowed, "refresh_token");
    // Back to the original scope is a widening now; so is a scope never granted.
    for scope in ["read write", "write", "read admin"] {
        assert_error(
            refresh(&stack, &client, &r1, &[("scope", scope)]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        )
        .await;
    }
    // The refused requests did not consume r1; without `scope` the narrowed scope stays.
    let again = refresh_ok(&stack, &client, &r1).await;
    assert_eq!(again["scope"], "read");
    assert_eq!(
        stack
            .introspect(&str_of(&again, "access_token"))
            .await
            .unwrap()["scope"],
        "read"
    );
}

#[tokio::test]
async fn resource_on_refresh_must_match_the_grant() {
    let stack = Stack::start().await.unwrap();
    let (client, first) = login(&stack).await;
    let r0 = str_of(&first, "refresh_token");
    for other in ["http://127.0.0.1:8002/mcp", "https://evil.example/mcp"] {
        assert_error(
            refresh(&stack, &client, &r0, &[("resource", other)]).await,
            StatusCode::BAD_REQUEST,
            "invalid_target",
        )
        .await;
    }
    let ok = ok_json(refresh(&stack, &client, &r0, &[("resource", &stack.resource)]).await).await;
    assert_eq!(
        jwt_claims(&str_of(&ok, "access_token"))["aud"],
        stack.resource
    );
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_invalid_grant() {
    let stack = Stack::start().await.unwrap();
    let (_owner, tokens) = login(&stack).await;
    let r0 = str_of(&tokens, "refresh_token");
    let thief = stack.public_client().await.unwrap();
    assert_error(
        refresh(&stack, &thief, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let confidential = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();
    assert_error(
        refresh(&stack, &confidential, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

// ---------- Refresh and the upstream grant ----------

#[tokio::test]
async fn fresh_upstream_tokens_are_not_refreshed_with_the_mcp_token() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let before = refresh_grants(&stack).await;
    refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    assert_eq!(refresh_grants(&stack).await, before);
}

#[tokio::test]
async fn near_expiry_upstream_tokens_are_refreshed_with_the_mcp_token() {
    // TaskManager's tokens live 60 s, within the 300 s margin: always "near expiry".
    let stack = stack_with(&[], &["--access-token-ttl", "60"]).await;
    let (client, tokens) = login(&stack).await;
    // Our lifetime is our own, not TaskManager's.
    assert_eq!(tokens["expires_in"], 3600);
    let before = refresh_grants(&stack).await;
    let second = refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    assert_eq!(refresh_grants(&stack).await, before + 1);
    assert_eq!(second["expires_in"], 3600);
    refresh_ok(&stack, &client, &str_of(&second, "refresh_token")).await;
    assert_eq!(refresh_grants(&stack).await, before + 2);
}

#[tokio::test]
async fn an_upstream_refusal_ends_the_grant_until_a_new_login() {
    let stack = stack_with(&[], &["--access-token-ttl", "60"]).await;
    let (client, tokens) = login(&stack).await;
    let r0 = str_of(&tokens, "refresh_token");
    let a0 = str_of(&tokens, "access_token");
    stack
        .tm_knobs(json!({"refuse_refresh": true}))
        .await
        .unwrap();
    let before = refresh_grants(&stack).await;
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        refresh_grants(&stack).await,
        before + 1,
        "TaskManager was asked"
    );
    // The grant stays marked even once TaskManager would refresh again.
    stack
        .tm_knobs(json!({"refuse_refresh": false}))
        .await
        .unwrap();
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        exchange(&stack, &a0).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(refresh_grants(&stack).await, before + 1, "not asked again");
    // A new login is a new grant.
    let again = stack.tokens(&client).await.unwrap();
    refresh_ok(&stack, &client, &str_of(&again, "refresh_token")).await;
}

#[tokio::test]
async fn taskmanager_failing_is_temporarily_unavailable_and_the_token_survives() {
    let stack = stack_with(&[], &["--access-token-ttl", "60"]).await;
    let (client, tokens) = login(&stack).await;
    let r0 = str_of(&tokens, "refresh_token");
    stack.tm_knobs(json!({"fail_status": 503})).await.unwrap();
    let r = refresh(&stack, &client, &r0, &[]).await;
    assert_eq!(r.headers()["retry-after"], "5");
    assert_error(
        r,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    stack.tm_knobs(json!({"fail_status": 500})).await.unwrap();
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    stack.tm_knobs(json!({"fail_status": null})).await.unwrap();
    let before = refresh_grants(&stack).await;
    let recovered = refresh_ok(&stack, &client, &r0).await;
    assert_ne!(str_of(&recovered, "refresh_token"), r0);
    assert_eq!(refresh_grants(&stack).await, before + 1);
}

#[tokio::test]
async fn taskmanager_timing_out_is_temporarily_unavailable_and_the_token_survives() {
    let stack = stack_with(
        &["--upstream-timeout-secs", "1"],
        &["--access-token-ttl", "60"],
    )
    .await;
    let (client, tokens) = login(&stack).await;
    let r0 = str_of(&tokens, "refresh_token");
    stack.tm_knobs(json!({"delay_ms": 2500})).await.unwrap();
    let started = Instant::now();
    assert_error(
        refresh(&stack, &client, &r0, &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(2400),
        "gave up at its timeout"
    );
    stack.tm_knobs(json!({"delay_ms": 0})).await.unwrap();
    let recovered = refresh_ok(&stack, &client, &r0).await;
    refresh_ok(&stack, &client, &str_of(&recovered, "refresh_token")).await;
}

// ---------- Introspection (RFC 7662) ----------

#[tokio::test]
async fn introspection_needs_the_resource_servers_credentials() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let url = stack.at("/introspect");
    let confidential = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();
    let secret = confidential.client_secret.clone().unwrap();
    let form = [("token", access.as_str())];

    let r = stack.http.post(&url).form(&form).send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let r = stack
        .http
        .post(&url)
        .basic_auth(RS_CLIENT_ID, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let r = stack
        .http
        .post(&url)
        .form(&[
            ("token", access.as_str()),
            ("client_id", RS_CLIENT_ID),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // A public client's id alone, and a registered client's valid credentials, are not enough.
    let r = stack
        .http
        .post(&url)
        .form(&[("token", access.as_str()), ("client_id", &client.client_id)])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = stack
        .http
        .post(&url)
        .basic_auth(&confidential.client_id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // The resource server, by Basic and by form.
    let basic = stack
        .http
        .post(&url)
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(ok_json(basic).await["active"], true);
    let post = stack
        .http
        .post(&url)
        .form(&[
            ("token", access.as_str()),
            ("client_id", RS_CLIENT_ID),
            ("client_secret", RS_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(post).await["active"], true);
}

#[tokio::test]
async fn an_active_token_introspects_with_its_claims() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let claims = jwt_claims(&access);
    for hint in [None, Some("access_token"), Some("refresh_token")] {
        let mut form = vec![("token", access.as_str())];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        let v = ok_json(
            stack
                .http
                .post(stack.at("/introspect"))
                .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v["active"], true);
        assert_eq!(v["sub"], "user-alice");
        assert_eq!(v["client_id"], client.client_id);
        assert_eq!(v["scope"], "read write");
        assert_eq!(v["aud"], stack.resource);
        assert_eq!(v["iss"], stack.issuer());
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["exp"], claims["exp"]);
        assert_eq!(v["iat"], claims["iat"]);
        assert_eq!(
            v["exp"].as_u64().unwrap() - v["iat"].as_u64().unwrap(),
            3600
        );
    }
}

#[tokio::test]
async fn unknown_revoked_and_foreign_tokens_are_exactly_inactive() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let header = jwt_header(&access);
    let claims = jwt_claims(&access);

    // Same header (our kid) and claims, signed by a key that is not ours.
    let foreign_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = foreign_key.to_pkcs8_der().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(str_of(&header, "kid"));
    h.typ = Some("at+jwt".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    // Our signature over altered claims.
    let mut widened = claims.clone();
    widened["scope"] = json!("read write admin");
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&widened).unwrap());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    // HS256 with a guessable key, and `alg: none`.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let none = {
        use base64::Engine;
        let e = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        format!(
            "{}.{}.",
            e(&json!({"alg": "none", "typ": "at+jwt"})),
            e(&claims)
        )
    };
    // Another issuer's kid entirely.
    let mut other_kid = h.clone();
    other_kid.kid = Some("someone-else".into());
    let other = jsonwebtoken::encode(
        &other_kid,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();

    for token in [
        forged.as_str(),
        tampered.as_str(),
        hs.as_str(),
        none.as_str(),
        other.as_str(),
        "garbage",
        "a.b.c",
        "x7Dq2m4b1Vr0Pz9sKe3Lw8Nf5Gh6Ju1Ty2Re3Wq4As5D",
    ] {
        assert_eq!(
            stack.introspect(token).await.unwrap(),
            json!({"active": false}),
            "{token}"
        );
    }
    // The real token is active; once revoked it is exactly inactive too.
    assert!(is_active(&stack, &access).await);
    assert_eq!(
        revoke(&stack, &client, &[("token", &access)])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        stack.introspect(&access).await.unwrap(),
        json!({"active": false})
    );
}

#[tokio::test]
async fn an_expired_access_token_is_inactive() {
    let stack = stack_with(&["--access-token-ttl", "1"], &[]).await;
    let (_client, tokens) = login(&stack).await;
    assert_eq!(tokens["expires_in"], 1);
    let access = str_of(&tokens, "access_token");
    let claims = jwt_claims(&access);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        1
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = stack.introspect(&access).await.unwrap();
        if v["active"] == false {
            assert_eq!(v, json!({"active": false}));
            break;
        }
        assert!(Instant::now() < deadline, "still active after 5 s: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------- Revocation (RFC 7009) ----------

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_at_once() {
    let stack = Stack::start().await.unwrap();
    for hint in [None, Some("refresh_token"), Some("access_token")] {
        let (client, first) = login(&stack).await;
        let second = refresh_ok(&stack, &client, &str_of(&first, "refresh_token")).await;
        let r1 = str_of(&second, "refresh_token");
        let a0 = str_of(&first, "access_token");
        let a1 = str_of(&second, "access_token");
        assert!(is_active(&stack, &a0).await && is_active(&stack, &a1).await);
        let mut form = vec![("token", r1.as_str())];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        let r = revoke(&stack, &client, &form).await;
        assert_eq!(r.status(), StatusCode::OK, "{hint:?}");
        assert!(!is_active(&stack, &a0).await, "{hint:?}");
        assert!(!is_active(&stack, &a1).await, "{hint:?}");
        assert!(!is_active(&stack, &r1).await, "{hint:?}");
        assert_error(
            refresh(&stack, &client, &r1, &[]).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
        assert_error(
            exchange(&stack, &a1).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
}

#[tokio::test]
async fn revoking_an_access_token_makes_it_inactive() {
    let stack = Stack::start().await.unwrap();
    let (public, _) = login(&stack).await;
    let confidential = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();
    for client in [&public, &confidential] {
        for hint in [None, Some("access_token"), Some("refresh_token")] {
            let tokens = stack.tokens(client).await.unwrap();
            let access = str_of(&tokens, "access_token");
            let mut form = vec![("token", access.as_str())];
            if let Some(h) = hint {
                form.push(("token_type_hint", h));
            }
            let r = revoke(&stack, client, &form).await;
            assert_eq!(r.status(), StatusCode::OK, "{hint:?}");
            assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
            assert!(!is_active(&stack, &access).await, "{hint:?}");
            // Revoking twice is fine.
            assert_eq!(revoke(&stack, client, &form).await.status(), StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn revocation_authenticates_the_client_and_ignores_unknown_tokens() {
    let stack = Stack::start().await.unwrap();
    let (public, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let refresh_token = str_of(&tokens, "refresh_token");
    let url = stack.at("/oauth/revoke");
    let confidential = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();

    // Unknown tokens: 200 (RFC 7009 §2.2).
    for token in ["no-such-token", "a.b.c"] {
        assert_eq!(
            revoke(&stack, &public, &[("token", token)]).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            revoke(
                &stack,
                &confidential,
                &[("token", token), ("token_type_hint", "refresh_token")]
            )
            .await
            .status(),
            StatusCode::OK
        );
    }
    // No client identification at all.
    let r = stack
        .http
        .post(&url)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // An unknown client id, and a confidential client's wrong secret.
    let r = stack
        .http
        .post(&url)
        .form(&[("token", access.as_str()), ("client_id", "nobody")])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = stack
        .http
        .post(&url)
        .basic_auth(&confidential.client_id, Some("wrong"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A confidential client that leaves out its secret.
    let r = stack
        .http
        .post(&url)
        .form(&[
            ("token", access.as_str()),
            ("client_id", &confidential.client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Another client cannot revoke the public client's tokens: refused (RFC 7009 §2.1), with
    // or without a hint, and the tokens stay valid.
    for token in [&access, &refresh_token] {
        for hint in ["access_token", "refresh_token"] {
            let form = [("token", token.as_str()), ("token_type_hint", hint)];
            let r = revoke(&stack, &confidential, &form).await;
            assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
        }
        let r = revoke(&stack, &confidential, &[("token", token)]).await;
        assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    }
    assert!(is_active(&stack, &access).await);
    assert!(is_active(&stack, &refresh_token).await);
    // The owner still can.
    assert_eq!(
        revoke(&stack, &public, &[("token", &refresh_token)])
            .await
            .status(),
        StatusCode::OK
    );
    assert!(!is_active(&stack, &access).await);
}

// ---------- Token exchange for the resource server (RFC 8693) ----------

#[tokio::test]
async fn token_exchange_gives_the_resource_server_taskmanagers_token() {
    let stack = Stack::start().await.unwrap();
    let (_client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let before = stack.tm_stats().await.unwrap();
    let r = exchange(&stack, &access).await;
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let v = ok_json(r).await;
    assert_eq!(v["issued_token_type"], TYPE_ACCESS_TOKEN);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["upstream_grant_state"], "fresh");
    assert!(v.get("refresh_token").is_none(), "{v}");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!(
        (3590..=3600).contains(&expires_in),
        "TaskManager's real lifetime: {v}"
    );
    let upstream = str_of(&v, "access_token");
    assert_ne!(
        upstream, access,
        "the MCP token itself is not what TaskManager gets"
    );
    // Fresh tokens: TaskManager was not called to get them.
    let after = stack.tm_stats().await.unwrap();
    assert_eq!(after["token_requests"], before["token_requests"]);

    let tasks = stack
        .http
        .get(format!("{}/api/tasks", stack.tm.url))
        .bearer_auth(&upstream)
        .send()
        .await
        .unwrap();
    let tasks = ok_json(tasks).await.to_string();
    assert!(tasks.contains("Buy groceries"), "{tasks}");
    assert!(tasks.contains("user-alice"), "{tasks}");
    // Our token means nothing to TaskManager.
    let mcp_at_tm = stack
        .http
        .get(format!("{}/api/tasks", stack.tm.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp_at_tm.status(), StatusCode::UNAUTHORIZED);
    // The same again while fresh.
    assert_eq!(
        str_of(
            &ok_json(exchange(&stack, &access).await).await,
            "access_token"
        ),
        upstream
    );
}

#[tokio::test]
async fn token_exchange_refreshes_a_near_expiry_grant_once_for_concurrent_callers() {
    let stack = stack_with(&[], &["--access-token-ttl", "60"]).await;
    let (_client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    // A TaskManager that takes a while to answer, so the 16 calls surely overlap the refresh.
    stack.tm_knobs(json!({"delay_ms": 300})).await.unwrap();
    let before = refresh_grants(&stack).await;
    let answers = futures::future::join_all((0..16).map(|_| exchange(&stack, &access))).await;
    stack.tm_knobs(json!({"delay_ms": 0})).await.unwrap();
    let mut upstream = Vec::new();
    for r in answers {
        let v = ok_json(r).await;
        assert_eq!(v["upstream_grant_state"], "refreshed", "{v}");
        assert_eq!(v["issued_token_type"], TYPE_ACCESS_TOKEN);
        let expires_in = v["expires_in"].as_u64().unwrap();
        assert!(
            (50..=60).contains(&expires_in),
            "at most TaskManager's 60 s: {v}"
        );
        upstream.push(str_of(&v, "access_token"));
    }
    assert_eq!(refresh_grants(&stack).await, before + 1, "single flight");
    assert!(
        upstream.iter().all(|t| *t == upstream[0]),
        "one token for all: {upstream:?}"
    );
    let tasks = stack
        .http
        .get(format!("{}/api/tasks", stack.tm.url))
        .bearer_auth(&upstream[0])
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_exchange_during_a_taskmanager_outage_is_temporarily_unavailable() {
    // TaskManager's tokens are always near expiry, so every exchange must refresh upstream.
    let stack = stack_with(
        &["--upstream-timeout-secs", "1"],
        &["--access-token-ttl", "60"],
    )
    .await;
    let (_, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    for knobs in [
        json!({"fail_status": 503}),
        json!({"fail_status": null, "delay_ms": 2500}),
    ] {
        stack.tm_knobs(knobs.clone()).await.unwrap();
        let started = Instant::now();
        let r = exchange(&stack, &access).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bounded: {knobs}"
        );
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
            Some("5"),
            "{knobs}"
        );
        assert_error(
            r,
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        )
        .await;
    }
    // TaskManager back: the same MCP token works, nothing was lost or revoked.
    stack.tm_knobs(json!({"delay_ms": 0})).await.unwrap();
    ok_json(exchange(&stack, &access).await).await;
    assert!(is_active(&stack, &access).await);
}

#[tokio::test]
async fn token_exchange_is_for_the_resource_server_only() {
    let stack = Stack::start().await.unwrap();
    let (public, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let url = stack.at("/oauth/token");
    let form = exchange_form(&stack, &access);
    let confidential = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();

    // No credentials.
    let r = stack.http.post(&url).form(&form).send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Registered clients, properly authenticated, are not allowed this grant.
    let r = stack
        .http
        .post(&url)
        .basic_auth(&confidential.client_id, confidential.client_secret.as_ref())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    let mut public_form = form.clone();
    public_form.push(("client_id", &public.client_id));
    let r = stack
        .http
        .post(&url)
        .form(&public_form)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // Wrong credentials are an authentication failure (RFC 6749 §5.2).
    let r = stack
        .http
        .post(&url)
        .basic_auth(RS_CLIENT_ID, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = stack
        .http
        .post(&url)
        .basic_auth(&confidential.client_id, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // The resource server in turn may not use the client grants.
    let r = stack
        .http
        .post(&url)
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &str_of(&tokens, "refresh_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // And it still works for the resource server.
    ok_json(exchange(&stack, &access).await).await;
}

#[tokio::test]
async fn token_exchange_needs_an_active_mcp_access_token() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let refresh_token = str_of(&tokens, "refresh_token");
    for subject in ["garbage", "a.b.c", refresh_token.as_str()] {
        assert_error(
            exchange(&stack, subject).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    let send = |form: Vec<(&'static str, String)>| {
        stack
            .http
            .post(stack.at("/oauth/token"))
            .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
            .form(&form)
            .send()
    };
    let base = |skip: &str, replace: Option<(&'static str, &str)>| {
        let mut f: Vec<(&'static str, String)> = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE.into()),
            ("subject_token", access.clone()),
            ("subject_token_type", TYPE_ACCESS_TOKEN.into()),
            ("requested_token_type", TYPE_ACCESS_TOKEN.into()),
            ("audience", stack.tm.url.clone()),
        ];
        f.retain(|(k, _)| *k != skip);
        if let Some((k, v)) = replace {
            f.retain(|(key, _)| *key != k);
            f.push((k, v.to_owned()));
        }
        f
    };
    assert_error(
        send(base("subject_token", None)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        send(base("subject_token_type", None)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        send(base(
            "",
            Some((
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )),
        ))
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        send(base("", Some(("audience", "https://elsewhere.example"))))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_target",
    )
    .await;
    // Revoked: invalid_grant.
    ok_json(exchange(&stack, &access).await).await;
    assert_eq!(
        revoke(&stack, &client, &[("token", &access)])
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        exchange(&stack, &access).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

// ---------- Keys and housekeeping ----------

#[tokio::test]
async fn signing_key_rotation_keeps_earlier_tokens_valid() {
    let mut stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let old_access = str_of(&tokens, "access_token");
    let old_kid = str_of(&jwt_header(&old_access), "kid");
    assert_eq!(jwks_kids(&stack).await, vec![old_kid.clone()]);

    stack.stop_auth().await;
    let mut args = stack.auth_args();
    args.extend(["keys".to_owned(), "rotate".to_owned()]);
    let out = std::process::Command::new(harness::bin_path("auth-server").unwrap())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys rotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.start_auth().await.unwrap();

    let kids = jwks_kids(&stack).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(kids.contains(&old_kid));
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&new_kid));
    // Issued before the rotation: still active.
    assert!(is_active(&stack, &old_access).await);
    // Issued after: signed with the new key.
    let fresh = refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    let new_access = str_of(&fresh, "access_token");
    assert_eq!(jwt_header(&new_access)["kid"], new_kid.as_str());
    assert!(is_active(&stack, &new_access).await);
}

/// The JWKS entry for `kid`.
async fn jwk(stack: &Stack, kid: &str) -> Value {
    let jwks = jwks(stack).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"))
}

/// Verifies `jwt` with the published `jwk` alone, as a resource server validating locally
/// would: the signature, and that the JWK's `alg` is the token's.
fn verify_with_jwk(jwt: &str, jwk: &Value) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (alg, key) = match jwk["kty"].as_str().unwrap() {
        "EC" => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(&str_of(jwk, "x"), &str_of(jwk, "y")).unwrap(),
        ),
        "RSA" => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(&str_of(jwk, "n"), &str_of(jwk, "e")).unwrap(),
        ),
        _ => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_components(&str_of(jwk, "x")).unwrap(),
        ),
    };
    assert_eq!(jwt_header(jwt)["alg"], jwk["alg"]);
    let mut v = Validation::new(alg);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

/// The RFC 7638 thumbprint of a public JWK, computed here independently of the server.
fn thumbprint(jwk: &Value) -> String {
    use base64::Engine;
    use sha2::Digest;
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        _ => &["crv", "kty", "x"],
    };
    let canonical: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| (m.to_string(), jwk[*m].clone()))
        .collect();
    let bytes = serde_json::to_vec(&canonical).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(bytes))
}

fn auth_server_command(args: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new(harness::bin_path("auth-server").unwrap());
    cmd.args(args);
    cmd
}

#[tokio::test]
async fn es256_signing_keys_when_configured() {
    let stack = stack_with(&["--signing-alg", "ES256"], &[]).await;
    let (_, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    let header = jwt_header(&access);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    let key = jwk(&stack, &str_of(&header, "kid")).await;
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    assert!(key.get("d").is_none(), "never the private part: {key}");
    let claims = verify_with_jwk(&access, &key);
    assert_eq!(claims["sub"], "user-alice");
    assert!(is_active(&stack, &access).await);
}

#[tokio::test]
async fn a_pinned_key_signs_and_replacing_it_keeps_earlier_tokens_valid() {
    use p256::pkcs8::LineEnding;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("signing.pem");
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    std::fs::write(
        &pem_file,
        ec.to_sec1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let pem_arg = pem_file.display().to_string();
    let mut stack = stack_with(&["--jwt-private-key", &pem_arg], &[]).await;

    let (client, tokens) = login(&stack).await;
    let first = str_of(&tokens, "access_token");
    let first_kid = str_of(&jwt_header(&first), "kid");
    let first_jwk = jwk(&stack, &first_kid).await;
    assert_eq!(first_jwk["alg"], "ES256");
    assert_eq!(
        first_kid,
        thumbprint(&first_jwk),
        "kid is the RFC 7638 thumbprint"
    );
    verify_with_jwk(&first, &first_jwk);
    assert_eq!(jwks_kids(&stack).await, vec![first_kid.clone()]);

    // A restart with the same key changes nothing.
    stack.stop_auth().await;
    stack.start_auth().await.unwrap();
    assert_eq!(jwks_kids(&stack).await, vec![first_kid.clone()]);

    // While pinned, the operator's rotation is refused with a reason, and changes nothing.
    stack.stop_auth().await;
    let mut rotate = stack.auth_args();
    rotate.extend(["keys".to_owned(), "rotate".to_owned()]);
    let out = auth_server_command(&rotate).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pinned by --jwt-private-key"), "{stderr}");
    assert!(
        !stderr.contains("BEGIN"),
        "no key material in errors: {stderr}"
    );

    // The operator replaces the key (RSA this time): new tokens use it, old ones stay valid.
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    std::fs::write(
        &pem_file,
        rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    stack.start_auth().await.unwrap();
    assert!(is_active(&stack, &first).await);
    let fresh = refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    let second = str_of(&fresh, "access_token");
    let second_kid = str_of(&jwt_header(&second), "kid");
    assert_ne!(second_kid, first_kid);
    let second_jwk = jwk(&stack, &second_kid).await;
    assert_eq!(
        (&second_jwk["kty"], &second_jwk["alg"]),
        (&json!("RSA"), &json!("RS256"))
    );
    assert_eq!(second_kid, thumbprint(&second_jwk));
    verify_with_jwk(&second, &second_jwk);
    assert!(is_active(&stack, &second).await);
    let kids = jwks_kids(&stack).await;
    assert_eq!(kids.len(), 2, "the replaced key stays published: {kids:?}");
    assert!(kids.contains(&first_kid));
}

#[tokio::test]
async fn a_bad_pinned_key_stops_startup_with_a_reason_and_no_key_material() {
    let stack = Stack::start().await.unwrap();
    let mut validate = stack.auth_args();
    validate.push("validate-config".to_owned());
    // PEM in an environment variable, line breaks written as `\n` (as .env files carry it).
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    use p256::pkcs8::EncodePrivateKey;
    let pem = ec
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
        .replace('\n', "\\n");
    let out = auth_server_command(&validate)
        .env("JWT_PRIVATE_KEY", &pem)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let damaged = pem.replace("MIG", "XXX");
    for (value, says) in [
        (damaged.as_str(), "JWT_PRIVATE_KEY"),
        (
            "/nonexistent/key.pem",
            "neither PEM text nor a readable file",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----",
            "not a private key",
        ),
    ] {
        let out = auth_server_command(&validate)
            .env("JWT_PRIVATE_KEY", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert!(
            !stderr.contains("MIG") && !stderr.contains("XXX"),
            "{stderr}"
        );
    }
}

/// A counter from the auth server's Prometheus text at `/metrics`.
async fn metric(stack: &Stack, name: &str) -> u64 {
    harness::stack::metric(&stack.http, &stack.at("/metrics"), name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {name} at /metrics"))
}

#[tokio::test]
async fn the_sweeper_deletes_expired_records_and_never_live_ones() {
    let stack = stack_with(&["--sweep-interval-secs", "1", "--code-ttl", "2"], &[]).await;
    let (client, tokens) = login(&stack).await;
    // Codes that are never redeemed (each login also leaves its pending request and state).
    let mut unused = Vec::new();
    for _ in 0..3 {
        let pkce = Pkce::s256();
        let redirect = stack.authorize(&client, &pkce).await.unwrap();
        unused.push((redirect.code().to_owned(), pkce));
    }
    let started = Instant::now();
    while metric(&stack, "mcp_auth_swept_records_total").await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "nothing swept in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (code, pkce) = &unused[0];
    assert_error(
        stack.redeem(&client, code, pkce).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    // The live login survived every sweep.
    assert!(is_active(&stack, &str_of(&tokens, "access_token")).await);
    refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
}

#[tokio::test]
async fn a_restart_between_issuing_and_refreshing_loses_nothing() {
    let mut stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let access = str_of(&tokens, "access_token");
    stack.stop_auth().await;
    stack.start_auth().await.unwrap();
    assert!(is_active(&stack, &access).await);
    let fresh = refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    assert!(is_active(&stack, &str_of(&fresh, "access_token")).await);
    assert_eq!(
        jwt_header(&str_of(&fresh, "access_token"))["kid"],
        jwt_header(&access)["kid"]
    );
    // The registration survived: the client can log in again.
    let again = stack.tokens(&client).await.unwrap();
    assert!(is_active(&stack, &str_of(&again, "access_token")).await);
    // The rotation state survived too: a retry of the predecessor still gets its successor.
    stack.stop_auth().await;
    stack.start_auth().await.unwrap();
    let retried = refresh_ok(&stack, &client, &str_of(&tokens, "refresh_token")).await;
    assert_eq!(retried["refresh_token"], fresh["refresh_token"]);
    refresh_ok(&stack, &client, &str_of(&fresh, "refresh_token")).await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_share_one_successor() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack).await;
    let r0 = str_of(&tokens, "refresh_token");
    let answers =
        futures::future::join_all((0..16).map(|_| refresh(&stack, &client, &r0, &[]))).await;
    let mut successors = Vec::new();
    let mut accesses = Vec::new();
    for r in answers {
        let v = ok_json(r).await;
        successors.push(str_of(&v, "refresh_token"));
        accesses.push(str_of(&v, "access_token"));
    }
    assert!(
        successors.iter().all(|s| *s == successors[0]),
        "exactly one rotation: {successors:?}"
    );
    assert_ne!(successors[0], r0);
    for a in &accesses {
        assert!(is_active(&stack, a).await);
    }
    assert!(is_active(&stack, &successors[0]).await);
    assert!(!is_active(&stack, &r0).await);
    refresh_ok(&stack, &client, &successors[0]).await;
}

// ---------- Bad input ----------

#[tokio::test]
async fn malformed_requests_get_rfc6749_json_never_a_5xx() {
    let stack = Stack::start().await.unwrap();
    let client = stack
        .register("client_secret_basic", "https://app.example/cb")
        .await
        .unwrap();
    let secret = client.client_secret.clone().unwrap();
    // Each endpoint with credentials it accepts, so only the body is at fault.
    let endpoints = [
        ("/oauth/token", client.client_id.as_str(), secret.as_str()),
        ("/token", client.client_id.as_str(), secret.as_str()),
        ("/oauth/revoke", client.client_id.as_str(), secret.as_str()),
        ("/introspect", RS_CLIENT_ID, RS_CLIENT_SECRET),
    ];
    for (path, id, secret) in endpoints {
        let url = stack.at(path);
        let post = || stack.http.post(&url).basic_auth(id, Some(secret));
        let missing = if path.ends_with("token") {
            "grant_type=refresh_token"
        } else {
            "token_type_hint=access_token"
        };
        let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "missing parameter",
                post()
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(missing),
            ),
            (
                "empty body",
                post().header(CONTENT_TYPE, "application/x-www-form-urlencoded"),
            ),
            (
                "JSON body",
                post().json(&json!({"token": "x", "grant_type": "refresh_token"})),
            ),
            (
                "duplicate parameter",
                post()
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(
                        "grant_type=refresh_token&token=a&token=b&refresh_token=a&refresh_token=b",
                    ),
            ),
            (
                "no content type",
                post().body("token=a&grant_type=refresh_token"),
            ),
            (
                "not UTF-8",
                post()
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(vec![b't', b'o', b'k', b'e', b'n', b'=', 0xff, 0xfe]),
            ),
        ];
        for (case, req) in cases {
            let r = req.send().await.unwrap();
            let status = r.status();
            assert!(!status.is_server_error(), "{path} {case}: {status}");
            let body = assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
            assert!(
                body["error_description"].as_str().is_some(),
                "{path} {case}"
            );
        }
        let r = stack
            .http
            .get(format!("{url}?token=x&grant_type=refresh_token"))
            .basic_auth(id, Some(secret))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path} GET");
        assert_eq!(body["error"], "invalid_request", "{path} GET");
    }
    // An unknown grant type, and a refresh without its token.
    let token = stack.at("/oauth/token");
    for (form, error) in [
        (
            vec![("grant_type", "password"), ("username", "alice")],
            "unsupported_grant_type",
        ),
        (vec![("grant_type", "refresh_token")], "invalid_request"),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "unknown"),
            ],
            "invalid_grant",
        ),
    ] {
        let r = stack
            .http
            .post(&token)
            .basic_auth(&client.client_id, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, error).await;
    }
}
