//! Black-box tests of the mock TaskManager: the real `mock-taskmanager` binary on port 0,
//! driven over HTTP without following redirects and with cookies handled by hand.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::Server;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use shared::pkce;
use std::time::{Duration, Instant};
use url::Url;

const CLIENT: &str = "mcp-test";
const SECRET: &str = "test-secret";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
/// A client whose secret needs form-encoding inside HTTP Basic (RFC 6749 §2.3.1).
const ODD_CLIENT: &str = "odd+client%";
const ODD_SECRET: &str = "p+s%&=x/y";

struct Tm {
    server: Server,
    http: reqwest::Client,
}

/// What an authorization request carries besides client and redirect URI.
#[derive(Default)]
struct Ask<'a> {
    scope: &'a str,
    challenge: Option<&'a str>,
    nonce: Option<&'a str>,
    state: Option<&'a str>,
}

impl Tm {
    async fn start() -> Tm {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Tm {
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--client".into(),
            format!("{CLIENT}:{SECRET}:{REDIRECT},http://localhost:9/other"),
            "--client".into(),
            format!("{ODD_CLIENT}:{ODD_SECRET}:{REDIRECT}"),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let server = Server::start("mock-taskmanager", &args, &[]).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Tm { server, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    /// Logs in and returns the `Cookie` header value.
    async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        session_cookie(&r).unwrap()
    }

    fn authorize_url(&self, client: &str, ask: &Ask<'_>) -> String {
        let mut url = Url::parse(&self.url("/api/oauth/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("scope", ask.scope);
            if let Some(c) = ask.challenge {
                q.append_pair("code_challenge", c)
                    .append_pair("code_challenge_method", "S256");
            }
            if let Some(n) = ask.nonce {
                q.append_pair("nonce", n);
            }
            if let Some(s) = ask.state {
                q.append_pair("state", s);
            }
        }
        url.into()
    }

    /// Opens the consent page and returns its body.
    async fn consent_page(&self, cookie: &str, url: &str) -> String {
        let r = self
            .http
            .get(url)
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        r.text().await.unwrap()
    }

    /// Posts the consent form and returns the redirect's query parameters.
    async fn decide(&self, cookie: &str, page: &str, decision: &str) -> Vec<(String, String)> {
        let r = self
            .http
            .post(self.url("/api/oauth/authorize/decision"))
            .header(COOKIE, cookie)
            .form(&[
                ("request_id", hidden(page, "request_id")),
                ("csrf", hidden(page, "csrf")),
                ("decision", decision.to_owned()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT), "{location}");
        location.query_pairs().into_owned().collect()
    }

    /// Logs `username` in, approves, and returns the code.
    async fn code(&self, username: &str, client: &str, ask: &Ask<'_>) -> String {
        let cookie = self.login(username, "password").await;
        let page = self
            .consent_page(&cookie, &self.authorize_url(client, ask))
            .await;
        let query = self.decide(&cookie, &page, "approve").await;
        get(&query, "code").unwrap()
    }

    /// `POST /api/oauth/token` with `client_secret_basic`.
    async fn token_basic(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/api/oauth/token"))
            .basic_auth(form_encode(id), Some(form_encode(secret)))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/oauth/token` with `client_secret_post`.
    async fn token_post(&self, form: &[(&str, &str)]) -> Response {
        let mut form = form.to_vec();
        form.extend([("client_id", CLIENT), ("client_secret", SECRET)]);
        self.http
            .post(self.url("/api/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Tokens for `username` with `scope`, through the whole flow (client_secret_basic).
    async fn tokens(&self, username: &str, scope: &str) -> Value {
        let code = self
            .code(
                username,
                CLIENT,
                &Ask {
                    scope,
                    ..Ask::default()
                },
            )
            .await;
        let r = self
            .token_basic(
                CLIENT,
                SECRET,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                ],
            )
            .await;
        ok_json(r).await
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    async fn knobs(&self, body: Value) -> Response {
        self.http
            .post(self.url("/__knobs"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Value {
        ok_json(self.http.get(self.url("/__stats")).send().await.unwrap()).await
    }
}

fn session_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_owned()
}

fn get(query: &[(String, String)], name: &str) -> Option<String> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn ok_json(r: Response) -> Value {
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Asserts an RFC 6749 §5.2 error with this status and code.
async fn assert_oauth_error(r: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    body
}

// ---- login ----

#[tokio::test]
async fn login_sets_a_session_cookie_and_goes_to_next() {
    let tm = Tm::start().await;
    let form = tm
        .http
        .get(tm.url("/login?next=/api/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let html = form.text().await.unwrap();
    assert!(html.contains(r#"name="username""#) && html.contains(r#"name="password""#));
    assert_eq!(hidden(&html, "next"), "/api/tasks");

    let r = tm
        .http
        .post(tm.url("/login"))
        .form(&[
            ("username", "alice"),
            ("password", "password"),
            ("next", "/somewhere?x=1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/somewhere?x=1");
    let set_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = session_cookie(&r).unwrap();
    let home = tm
        .http
        .get(tm.url("/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(home.text().await.unwrap().contains("Alice Example"));

    // After logout the session no longer works.
    let out = tm
        .http
        .post(tm.url("/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let home = tm
        .http
        .get(tm.url("/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(!home.text().await.unwrap().contains("Alice Example"));
}

#[tokio::test]
async fn login_refuses_wrong_passwords_and_absolute_next() {
    let tm = Tm::start().await;
    let r = tm
        .http
        .post(tm.url("/login"))
        .form(&[("username", "alice"), ("password", "nope"), ("next", "/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let html = r.text().await.unwrap();
    assert!(html.contains("Wrong username or password"));
    assert!(html.contains(r#"name="password""#));

    for next in ["https://evil.example/", "//evil.example/x"] {
        let r = tm
            .http
            .post(tm.url("/login"))
            .form(&[
                ("username", "bob"),
                ("password", "password"),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/", "next={next}");
    }
}

// ---- authorization endpoint ----

#[tokio::test]
async fn authorize_sends_a_stranger_to_login_and_back() {
    let tm = Tm::start().await;
    let url = tm.authorize_url(
        CLIENT,
        &Ask {
            scope: "read",
            ..Ask::default()
        },
    );
    let r = tm.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let login = Url::parse(&tm.url(&location)).unwrap();
    assert_eq!(login.path(), "/login");
    let next = login
        .query_pairs()
        .find(|(k, _)| k == "next")
        .unwrap()
        .1
        .into_owned();
    assert!(next.starts_with("/api/oauth/authorize?"), "{next}");

    // Logging in with that `next` lands on the consent page of the same request.
    let r = tm
        .http
        .post(tm.url("/login"))
        .form(&[
            ("username", "alice"),
            ("password", "password"),
            ("next", &next),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION].to_str().unwrap(), next);
    let cookie = session_cookie(&r).unwrap();
    let page = tm.consent_page(&cookie, &tm.url(&next)).await;
    assert!(page.contains(CLIENT) && page.contains(REDIRECT) && page.contains("read"));
}

#[tokio::test]
async fn unknown_clients_and_redirect_uris_get_a_page_not_a_redirect() {
    let tm = Tm::start().await;
    let cookie = tm.login("alice", "password").await;
    let unknown = tm.authorize_url(
        "nobody",
        &Ask {
            scope: "read",
            ..Ask::default()
        },
    );
    let wrong_redirect = tm
        .authorize_url(
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .replace("127.0.0.1%3A9", "127.0.0.1%3A10");
    let prefix_redirect = tm
        .authorize_url(
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .replace("callback", "callback%2Fextra");
    for url in [unknown, wrong_redirect, prefix_redirect] {
        let r = tm
            .http
            .get(&url)
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(r.headers().get(LOCATION).is_none());
        assert!(
            r.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

#[tokio::test]
async fn bad_requests_from_a_known_client_are_redirected_with_state() {
    let tm = Tm::start().await;
    let cookie = tm.login("alice", "password").await;
    let cases = [
        (
            Ask {
                scope: "read admin",
                state: Some("s1"),
                ..Ask::default()
            },
            "invalid_scope",
        ),
        (
            Ask {
                scope: "read",
                challenge: Some("short"),
                state: Some("s1"),
                ..Ask::default()
            },
            "invalid_request",
        ),
    ];
    for (ask, error) in cases {
        let r = tm
            .http
            .get(tm.authorize_url(CLIENT, &ask))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap();
        let q: Vec<_> = location.query_pairs().into_owned().collect();
        assert_eq!(get(&q, "error").as_deref(), Some(error));
        assert_eq!(get(&q, "state").as_deref(), Some("s1"));
    }
    let token = tm
        .authorize_url(
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .replace("response_type=code", "response_type=token");
    let r = tm
        .http
        .get(&token)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[LOCATION]
            .to_str()
            .unwrap()
            .contains("error=unsupported_response_type")
    );
}

#[tokio::test]
async fn deny_returns_access_denied_with_state() {
    let tm = Tm::start().await;
    let cookie = tm.login("alice", "password").await;
    let ask = Ask {
        scope: "read",
        state: Some("st-42"),
        ..Ask::default()
    };
    let page = tm
        .consent_page(&cookie, &tm.authorize_url(CLIENT, &ask))
        .await;
    let q = tm.decide(&cookie, &page, "deny").await;
    assert_eq!(get(&q, "error").as_deref(), Some("access_denied"));
    assert_eq!(get(&q, "state").as_deref(), Some("st-42"));
    assert_eq!(get(&q, "code"), None);
}

#[tokio::test]
async fn consent_needs_the_sessions_csrf_token() {
    let tm = Tm::start().await;
    let alice = tm.login("alice", "password").await;
    let bob = tm.login("bob", "password").await;
    let page = tm
        .consent_page(
            &alice,
            &tm.authorize_url(
                CLIENT,
                &Ask {
                    scope: "read",
                    ..Ask::default()
                },
            ),
        )
        .await;
    let post = |cookie: &str, csrf: String| {
        tm.http
            .post(tm.url("/api/oauth/authorize/decision"))
            .header(COOKIE, cookie.to_owned())
            .form(&[
                ("request_id", hidden(&page, "request_id")),
                ("csrf", csrf),
                ("decision", "approve".to_owned()),
            ])
            .send()
    };
    assert_eq!(
        post(&alice, "forged".into()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Bob's session with Bob's CSRF token cannot answer Alice's request.
    let bob_page = tm
        .consent_page(
            &bob,
            &tm.authorize_url(
                CLIENT,
                &Ask {
                    scope: "read",
                    ..Ask::default()
                },
            ),
        )
        .await;
    let r = post(&bob, hidden(&bob_page, "csrf")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Alice still can, once.
    let r = post(&alice, hidden(&page, "csrf")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = post(&alice, hidden(&page, "csrf")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

// ---- token endpoint ----

#[tokio::test]
async fn code_flow_with_basic_auth_issues_tokens_and_a_verifiable_id_token() {
    let tm = Tm::start().await;
    let (verifier, challenge) = pkce::new_pair();
    let code = tm
        .code(
            "alice",
            CLIENT,
            &Ask {
                scope: "openid read write",
                challenge: Some(&challenge),
                nonce: Some("n-123"),
                state: Some("s"),
            },
        )
        .await;
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t = ok_json(r).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["scope"], "openid read write");
    assert!(t["refresh_token"].is_string());

    // The id_token verifies against the published JWKS, with the contract's claims.
    let jwks: JwkSet = tm
        .http
        .get(tm.url("/api/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[CLIENT]);
    validation.set_issuer(&[&tm.server.url]);
    let claims =
        jsonwebtoken::decode::<Value>(id_token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "user-alice");
    assert_eq!(claims["nonce"], "n-123");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert!(claims["name"].is_string());
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());

    // Discovery names the same endpoints and issuer.
    let disco = ok_json(
        tm.http
            .get(tm.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(disco["issuer"], tm.server.url);
    assert_eq!(disco["jwks_uri"], tm.url("/api/oauth/jwks"));
    assert_eq!(disco["token_endpoint"], tm.url("/api/oauth/token"));
    assert_eq!(
        disco["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );

    // Userinfo answers for the access token.
    let access = t["access_token"].as_str().unwrap();
    let me = ok_json(
        tm.api(reqwest::Method::GET, "/api/oauth/userinfo", access)
            .await
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        me,
        json!({"sub": "user-alice", "name": "Alice Example", "email": "alice@example.com", "preferred_username": "alice"})
    );
    let r = tm
        .api(reqwest::Method::GET, "/api/oauth/userinfo", "bogus")
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn client_secret_post_works_and_no_id_token_without_openid() {
    let tm = Tm::start().await;
    let code = tm
        .code(
            "bob",
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .await;
    let t = ok_json(
        tm.token_post(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .await,
    )
    .await;
    assert_eq!(t["scope"], "read");
    assert!(t.get("id_token").is_none());
    let me = ok_json(
        tm.api(
            reqwest::Method::GET,
            "/api/oauth/userinfo",
            t["access_token"].as_str().unwrap(),
        )
        .await
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(me["sub"], "user-bob");
}

#[tokio::test]
async fn basic_credentials_are_form_decoded() {
    let tm = Tm::start().await;
    let code = tm
        .code(
            "alice",
            ODD_CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .await;
    let r = tm
        .token_basic(
            ODD_CLIENT,
            ODD_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    ok_json(r).await;
}

#[tokio::test]
async fn client_authentication_failures_are_invalid_client() {
    let tm = Tm::start().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("redirect_uri", REDIRECT),
    ];
    let r = tm.token_basic(CLIENT, "wrong", &form).await;
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = tm.token_basic("nobody", SECRET, &form).await;
    assert_oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let mut post = form.to_vec();
    post.extend([("client_id", CLIENT), ("client_secret", "wrong")]);
    let r = tm
        .http
        .post(tm.url("/api/oauth/token"))
        .form(&post)
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = tm
        .http
        .post(tm.url("/api/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = tm
        .http
        .post(tm.url("/api/oauth/token"))
        .header(AUTHORIZATION, "Basic !!!notbase64")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Both methods at once is refused (RFC 6749 §2.3).
    let r = tm
        .http
        .post(tm.url("/api/oauth/token"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = tm
        .token_basic(CLIENT, SECRET, &[("grant_type", "password")])
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    let r = tm.token_basic(CLIENT, SECRET, &[("code", "x")]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn pkce_mismatch_and_missing_verifier_are_invalid_grant() {
    let tm = Tm::start().await;
    let (verifier, challenge) = pkce::new_pair();
    let (other_verifier, _) = pkce::new_pair();
    let ask = Ask {
        scope: "read",
        challenge: Some(&challenge),
        ..Ask::default()
    };
    let code = tm.code("alice", CLIENT, &ask).await;
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &other_verifier),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    let code = tm.code("alice", CLIENT, &ask).await;
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    let code = tm.code("alice", CLIENT, &ask).await;
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    ok_json(r).await;
}

#[tokio::test]
async fn redirect_uri_must_match_at_the_token_endpoint() {
    let tm = Tm::start().await;
    let code = tm
        .code(
            "alice",
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .await;
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:9/other"),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_code_works_once_and_its_reuse_revokes_the_grant() {
    let tm = Tm::start().await;
    let code = tm
        .code(
            "alice",
            CLIENT,
            &Ask {
                scope: "read",
                ..Ask::default()
            },
        )
        .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let first = ok_json(tm.token_basic(CLIENT, SECRET, &form).await).await;
    let access = first["access_token"].as_str().unwrap();
    let r = tm
        .api(reqwest::Method::GET, "/api/tasks", access)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = tm.token_basic(CLIENT, SECRET, &form).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = tm
        .api(reqwest::Method::GET, "/api/tasks", access)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "authorization_code"), ("code", "made-up")],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_dies() {
    let tm = Tm::start().await;
    let first = tm.tokens("alice", "openid read write").await;
    let old = first["refresh_token"].as_str().unwrap();
    let second = ok_json(
        tm.token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", old)],
        )
        .await,
    )
    .await;
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["scope"], "openid read write");
    assert!(second["id_token"].is_string());

    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", old)],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // Narrowing works; widening does not. Another client cannot use it.
    let r = tm
        .token_basic(
            ODD_CLIENT,
            ODD_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", new)],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let third = ok_json(
        tm.token_post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", new),
            ("scope", "read"),
        ])
        .await,
    )
    .await;
    assert_eq!(third["scope"], "read");
    let r = tm
        .token_post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", third["refresh_token"].as_str().unwrap()),
            ("scope", "read write"),
        ])
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

// ---- client registration ----

#[tokio::test]
async fn clients_need_an_administrators_session() {
    let tm = Tm::start().await;
    let r = tm
        .http
        .get(tm.url("/api/oauth/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    let r = tm
        .http
        .get(tm.url("/api/oauth/clients"))
        .header(COOKIE, "session=made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let alice = tm.login("alice", "password").await;
    let r = tm
        .http
        .get(tm.url("/api/oauth/clients"))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "forbidden");
    let r = tm
        .http
        .post(tm.url("/api/oauth/clients"))
        .header(COOKIE, &alice)
        .json(&json!({"name": "x", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admin_lists_and_registers_clients_that_then_work() {
    let tm = Tm::start().await;
    let admin = tm.login("admin", "admin").await;
    let list = ok_json(
        tm.http
            .get(tm.url("/api/oauth/clients"))
            .header(COOKIE, &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["client_id"], CLIENT);
    assert_eq!(
        list[0]["redirect_uris"],
        json!([REDIRECT, "http://localhost:9/other"])
    );
    assert!(list[0].get("client_secret").is_none());

    let r = tm
        .http
        .post(tm.url("/api/oauth/clients"))
        .header(COOKIE, &admin)
        .json(&json!({"name": "<script>alert(1)</script>", "redirect_uris": [REDIRECT], "scope": ["openid", "read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created = r.json::<Value>().await.unwrap();
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["scope"], "openid read");
    assert_eq!(
        created["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let created_at = created["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z') && created_at.as_bytes()[10] == b'T',
        "{created_at}"
    );

    let list = ok_json(
        tm.http
            .get(tm.url("/api/oauth/clients"))
            .header(COOKIE, &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(list.to_string().find(&secret).is_none());

    // The consent page names it, escaped; its own scope bounds what it may ask.
    let alice = tm.login("alice", "password").await;
    let page = tm
        .consent_page(
            &alice,
            &tm.authorize_url(
                &id,
                &Ask {
                    scope: "openid read",
                    ..Ask::default()
                },
            ),
        )
        .await;
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));
    let r = tm
        .http
        .get(tm.authorize_url(
            &id,
            &Ask {
                scope: "read write",
                ..Ask::default()
            },
        ))
        .header(COOKIE, &alice)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[LOCATION]
            .to_str()
            .unwrap()
            .contains("error=invalid_scope")
    );

    let q = tm.decide(&alice, &page, "approve").await;
    let code = get(&q, "code").unwrap();
    let t = ok_json(
        tm.token_basic(
            &id,
            &secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await,
    )
    .await;
    assert!(t["id_token"].is_string());
}

#[tokio::test]
async fn bad_registrations_are_invalid_request() {
    let tm = Tm::start().await;
    let admin = tm.login("admin", "admin").await;
    let bodies = [
        "not json".to_owned(),
        json!({"redirect_uris": [REDIRECT]}).to_string(),
        json!({"name": "x", "redirect_uris": []}).to_string(),
        json!({"name": "x", "redirect_uris": ["not a url"]}).to_string(),
        json!({"name": "x", "redirect_uris": [REDIRECT], "grant_types": ["password"]}).to_string(),
        json!({"name": "x", "redirect_uris": [REDIRECT], "scope": "read admin"}).to_string(),
    ];
    for body in bodies {
        let r = tm
            .http
            .post(tm.url("/api/oauth/clients"))
            .header(COOKIE, &admin)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
        assert!(e["message"].is_string());
    }
}

// ---- tasks API ----

#[tokio::test]
async fn tasks_crud_is_per_user_and_scoped() {
    use reqwest::Method;
    let tm = Tm::start().await;
    let alice = tm.tokens("alice", "read write").await;
    let alice = alice["access_token"].as_str().unwrap();
    let bob = tm.tokens("bob", "read write").await;
    let bob = bob["access_token"].as_str().unwrap();

    let tasks = ok_json(
        tm.api(Method::GET, "/api/tasks", alice)
            .await
            .send()
            .await
            .unwrap(),
    )
    .await;
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for key in [
        "id",
        "title",
        "description",
        "completed",
        "owner",
        "created_at",
        "updated_at",
    ] {
        assert!(tasks[0].get(key).is_some(), "{key}");
    }
    assert_eq!(tasks[0]["owner"], "user-alice");
    let seeded = tasks[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ok_json(
            tm.api(Method::GET, "/api/tasks", bob)
                .await
                .send()
                .await
                .unwrap()
        )
        .await,
        json!([])
    );

    let r = tm
        .api(Method::POST, "/api/tasks", bob)
        .await
        .json(&json!({"title": "Bob's", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created = r.json::<Value>().await.unwrap();
    assert_eq!(created["title"], "Bob's");
    assert_eq!(created["completed"], false);
    assert_eq!(created["owner"], "user-bob");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/tasks/{id}");

    let fetched = ok_json(tm.api(Method::GET, &path, bob).await.send().await.unwrap()).await;
    assert_eq!(fetched, created);
    let patched = ok_json(
        tm.api(Method::PATCH, &path, bob)
            .await
            .json(&json!({"completed": true, "title": "Done"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(patched["completed"], true);
    assert_eq!(patched["title"], "Done");
    assert_eq!(patched["description"], "d");

    // Another user's task is indistinguishable from a missing one.
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let r = tm
            .api(method.clone(), &path, alice)
            .await
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method}");
        let r = tm
            .api(method.clone(), &format!("/api/tasks/{seeded}"), bob)
            .await
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method}");
    }

    let r = tm
        .api(Method::DELETE, &path, bob)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = tm.api(Method::GET, &path, bob).await.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Bad bodies are 400, not a crash.
    for body in ["{", r#"{"title": ""}"#, r#"{"description": "no title"}"#] {
        let r = tm
            .api(Method::POST, "/api/tasks", bob)
            .await
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn tasks_answer_401_and_403_with_bearer_challenges() {
    use reqwest::Method;
    let tm = Tm::start().await;
    let r = tm.http.get(tm.url("/api/tasks")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    let r = tm
        .api(Method::GET, "/api/tasks", "unknown")
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let read_only = tm.tokens("alice", "read").await;
    let read_only = read_only["access_token"].as_str().unwrap();
    assert_eq!(
        tm.api(Method::GET, "/api/tasks", read_only)
            .await
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = tm
        .api(Method::POST, "/api/tasks", read_only)
        .await
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="write""#),
        "{challenge}"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );

    let openid_only = tm.tokens("alice", "openid").await;
    let r = tm
        .api(
            Method::GET,
            "/api/tasks",
            openid_only["access_token"].as_str().unwrap(),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

// ---- knobs and stats ----

#[tokio::test]
async fn refuse_refresh_knob_answers_invalid_grant_until_cleared() {
    let tm = Tm::start().await;
    let t = tm.tokens("alice", "read").await;
    let refresh = t["refresh_token"].as_str().unwrap();
    let knobs = ok_json(tm.knobs(json!({"refuse_refresh": true})).await).await;
    assert_eq!(knobs["refuse_refresh"], true);
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    ok_json(tm.knobs(json!({"refuse_refresh": false})).await).await;
    ok_json(
        tm.token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await,
    )
    .await;
    let stats = tm.stats().await;
    assert_eq!(stats["refresh_grants"], 2);
    assert_eq!(stats["code_grants"], 1);
    assert_eq!(stats["token_requests"], 3);
}

#[tokio::test]
async fn fail_status_and_garbage_apply_to_api_routes_only() {
    let tm = Tm::start().await;
    let t = tm.tokens("alice", "read").await;
    let access = t["access_token"].as_str().unwrap();

    let knobs = ok_json(tm.knobs(json!({"fail_status": 503})).await).await;
    assert_eq!(knobs["fail_status"], 503);
    for path in ["/api/tasks", "/api/oauth/jwks"] {
        let r = tm
            .api(reqwest::Method::GET, path, access)
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    let r = tm
        .token_basic(
            CLIENT,
            SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Non-API routes are untouched, and requests are still counted.
    assert_eq!(
        tm.http.get(tm.url("/login")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let stats = tm.stats().await;
    assert_eq!(stats["tasks_requests"], 1);
    assert_eq!(stats["token_requests"], 2);

    let knobs = ok_json(
        tm.knobs(json!({"fail_status": null, "garbage": true}))
            .await,
    )
    .await;
    assert_eq!(knobs["fail_status"], Value::Null);
    let r = tm
        .api(reqwest::Method::GET, "/api/tasks", access)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    ok_json(tm.knobs(json!({"garbage": false})).await).await;
    ok_json(
        tm.api(reqwest::Method::GET, "/api/tasks", access)
            .await
            .send()
            .await
            .unwrap(),
    )
    .await;
    let current = ok_json(tm.http.get(tm.url("/__knobs")).send().await.unwrap()).await;
    assert_eq!(
        current,
        json!({"refuse_refresh": false, "delay_ms": 0, "fail_status": null, "access_token_ttl": 3600, "garbage": false, "omit_nonce": false})
    );
}

#[tokio::test]
async fn delay_ms_slows_api_routes() {
    let tm = Tm::start().await;
    ok_json(tm.knobs(json!({"delay_ms": 300})).await).await;
    let started = Instant::now();
    let r = tm.http.get(tm.url("/api/oauth/jwks")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    ok_json(tm.knobs(json!({"delay_ms": 0})).await).await;
}

#[tokio::test]
async fn access_token_ttl_knob_changes_new_tokens() {
    let tm = Tm::start().await;
    ok_json(tm.knobs(json!({"access_token_ttl": 0})).await).await;
    let t = tm.tokens("alice", "read").await;
    assert_eq!(t["expires_in"], 0);
    let r = tm
        .api(
            reqwest::Method::GET,
            "/api/tasks",
            t["access_token"].as_str().unwrap(),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn bad_knobs_are_refused() {
    let tm = Tm::start().await;
    for body in [
        json!({"no_such_knob": true}),
        json!({"fail_status": 1000}),
        json!({"delay_ms": -1}),
    ] {
        let r = tm.knobs(body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn public_url_sets_the_issuer() {
    let tm = Tm::start_with(&["--public-url", "https://tm.example.com/"]).await;
    let disco = ok_json(
        tm.http
            .get(tm.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(disco["issuer"], "https://tm.example.com");
    assert_eq!(
        disco["authorization_endpoint"],
        "https://tm.example.com/api/oauth/authorize"
    );
}
