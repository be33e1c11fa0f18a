//! A running stack for black-box tests: the mock TaskManager and the real auth server (and,
//! when asked, the resource server), each a child process on loopback, with a temp data dir.
//! Plus a scripted "browser" (reqwest with a cookie jar, no automatic redirects) that walks
//! consent and TaskManager's login exactly as the pages' forms do.

use crate::spawn::Server;
use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use tempfile::TempDir;
use url::Url;

/// Our client id and secret at the mock TaskManager.
pub const TM_CLIENT_ID: &str = "mcp-auth-server-test";
pub const TM_CLIENT_SECRET: &str = "test-secret";
/// The resource server's credentials at the auth server.
pub const RS_CLIENT_ID: &str = "resource-server";
pub const RS_CLIENT_SECRET: &str = "rs-secret";

/// Every request a test makes is bounded: a hung server fails the test instead of hanging it.
pub const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A port that was free a moment ago (for a server whose URL must be known before it starts).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Options of a stack.
#[derive(Default, Clone)]
pub struct StackOptions {
    pub auth_args: Vec<String>,
    pub tm_args: Vec<String>,
    /// Extra environment of the auth server (e.g. `RUST_LOG`).
    pub auth_env: Vec<(String, String)>,
    /// Append the auth server's logs to this file instead of the test's stderr.
    pub auth_log: Option<std::path::PathBuf>,
    /// Also start the resource server; the resource URL is then its real `/mcp` URL.
    pub resource_server: bool,
}

/// A counter from the Prometheus text at `metrics_url`, if it is there.
pub async fn metric(http: &reqwest::Client, metrics_url: &str, name: &str) -> Result<Option<u64>> {
    let text = http.get(metrics_url).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()))
}

/// An authorization request (code flow, PKCE S256) for `client` at the auth server `issuer`,
/// with `extra` parameters (`state`, `resource`, ...).
pub fn authorize_url(
    issuer: &str,
    client: &Client,
    pkce: &Pkce,
    extra: &[(&str, &str)],
) -> Result<Url> {
    let mut url = Url::parse(&format!("{issuer}/oauth/authorize"))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &client.redirect_uri)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    Ok(url)
}

/// The running stack.
pub struct Stack {
    pub tm: Server,
    pub auth: Option<Server>,
    pub rs: Option<Server>,
    pub auth_port: u16,
    pub data_dir: TempDir,
    pub resource: String,
    options: StackOptions,
    /// A client for API calls (no cookies, no redirects).
    pub http: reqwest::Client,
}

/// A client registered at the auth server.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

/// PKCE verifier and challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn s256() -> Self {
        let (verifier, challenge) = shared::pkce::new_pair();
        Self {
            verifier,
            challenge,
        }
    }
}

/// Where a scripted login ended: the redirect to the client.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub url: Url,
    pub params: HashMap<String, String>,
}

impl Redirect {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
    pub fn code(&self) -> &str {
        self.param("code").unwrap_or("")
    }
}

/// A scripted browser with its own cookie jar.
pub struct Browser {
    pub http: reqwest::Client,
}

/// The value of `<input name="NAME" value="...">` in a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(html_escape::decode_html_entities(&html[start..end]).into_owned())
}

fn location(resp: &reqwest::Response, base: &Url) -> Result<Url> {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .ok_or_else(|| anyhow!("{} has no Location ({})", resp.url(), resp.status()))?
        .to_str()?;
    Ok(base.join(loc)?)
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// Follows redirects by hand from `url`, approving our consent (`approve_ours`), logging
    /// into TaskManager as `user` and approving its consent, until a redirect leaves both
    /// servers (to the client's redirect URI). Returns that redirect; fails on any page that
    /// is not one of those steps.
    pub async fn login(
        &self,
        start: Url,
        user: &str,
        decision: &str,
        client_prefix: &str,
    ) -> Result<Redirect> {
        let mut url = start;
        for _ in 0..20 {
            if url.as_str().starts_with(client_prefix) {
                let params = url.query_pairs().into_owned().collect();
                return Ok(Redirect { url, params });
            }
            let resp = self.http.get(url.clone()).send().await?;
            if resp.status().is_redirection() {
                url = location(&resp, &url)?;
                continue;
            }
            let status = resp.status();
            let html = resp.text().await?;
            if url.path() == "/oauth/consent" && status == StatusCode::OK {
                let form = [
                    (
                        "request_id",
                        hidden_field(&html, "request_id").context("request_id")?,
                    ),
                    (
                        "csrf_token",
                        hidden_field(&html, "csrf_token").context("csrf_token")?,
                    ),
                    ("decision", decision.to_owned()),
                ];
                let r = self
                    .http
                    .post(url.join("/oauth/consent")?)
                    .form(&form)
                    .send()
                    .await?;
                if !r.status().is_redirection() {
                    bail!("consent POST answered {}: {}", r.status(), r.text().await?);
                }
                url = location(&r, &url)?;
            } else if url.path() == "/login" {
                let next = hidden_field(&html, "next").unwrap_or_default();
                let form = [
                    ("username", user),
                    (
                        "password",
                        if user == "admin" { "admin" } else { "password" },
                    ),
                    ("next", &next),
                ];
                let r = self
                    .http
                    .post(url.join("/login")?)
                    .form(&form)
                    .send()
                    .await?;
                if !r.status().is_redirection() {
                    bail!("TaskManager login answered {}", r.status());
                }
                url = location(&r, &url)?;
            } else if html.contains("/api/oauth/authorize/decision") {
                let form = [
                    (
                        "request_id",
                        hidden_field(&html, "request_id").context("tm request_id")?,
                    ),
                    ("csrf", hidden_field(&html, "csrf").context("tm csrf")?),
                    ("decision", "approve".to_owned()),
                ];
                let r = self
                    .http
                    .post(url.join("/api/oauth/authorize/decision")?)
                    .form(&form)
                    .send()
                    .await?;
                url = location(&r, &url)?;
            } else {
                bail!(
                    "unexpected page at {url} ({status}): {}",
                    &html[..html.len().min(600)]
                );
            }
        }
        bail!("too many redirects")
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Stack {
    /// Mock TaskManager + auth server with default options.
    pub async fn start() -> Result<Stack> {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts the stack with `options`.
    pub async fn start_with(options: StackOptions) -> Result<Stack> {
        let auth_port = free_port()?;
        let callbacks = format!(
            "{TM_CLIENT_ID}:{TM_CLIENT_SECRET}:http://127.0.0.1:{auth_port}/oauth/callback"
        );
        let mut tm_args = vec!["--port".into(), "0".into(), "--client".into(), callbacks];
        tm_args.extend(options.tm_args.iter().cloned());
        let tm = Server::start("mock-taskmanager", &tm_args, &[]).await?;
        let rs_port = if options.resource_server {
            free_port()?
        } else {
            8001
        };
        let resource = format!("http://127.0.0.1:{rs_port}/mcp");
        let mut stack = Stack {
            tm,
            auth: None,
            rs: None,
            auth_port,
            data_dir: tempfile::tempdir()?,
            resource,
            options,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(HTTP_TIMEOUT)
                .build()?,
        };
        stack.start_auth().await?;
        if stack.options.resource_server {
            let args = stack.rs_args(rs_port, &stack.resource);
            stack.rs = Some(Server::start("resource-server", &args, &[]).await?);
        }
        Ok(stack)
    }

    /// A resource server's command line for this stack: its auth server, TaskManager and the
    /// resource server's credentials, listening on `port` (0: any) as `resource`.
    pub fn rs_args(&self, port: u16, resource: &str) -> Vec<String> {
        [
            "--port",
            &port.to_string(),
            "--auth-server",
            &self.issuer(),
            "--resource",
            resource,
            "--rs-client-id",
            RS_CLIENT_ID,
            "--rs-client-secret",
            RS_CLIENT_SECRET,
            "--taskmanager-url",
            &self.tm.url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The auth server's command line.
    pub fn auth_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &self.auth_port.to_string(),
            "--issuer",
            &format!("http://127.0.0.1:{}", self.auth_port),
            "--taskmanager-url",
            &self.tm.url,
            "--client-id",
            TM_CLIENT_ID,
            "--client-secret",
            TM_CLIENT_SECRET,
            "--upstream-scope",
            "openid read write",
            "--resource",
            &self.resource,
            "--rs-client-id",
            RS_CLIENT_ID,
            "--rs-client-secret",
            RS_CLIENT_SECRET,
            "--data-dir",
            &self.data_dir.path().display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.options.auth_args.iter().cloned());
        args
    }

    /// (Re)starts the auth server on its port with the same data dir.
    pub async fn start_auth(&mut self) -> Result<()> {
        let args = self.auth_args();
        let program = crate::spawn::bin_path("auth-server")?;
        let (env, log) = (&self.options.auth_env, self.options.auth_log.as_deref());
        self.auth = Some(Server::start_logged("auth-server", &program, &args, env, log).await?);
        Ok(())
    }

    /// Stops the auth server (its data dir stays).
    pub async fn stop_auth(&mut self) {
        if let Some(s) = self.auth.take() {
            s.stop().await;
        }
    }

    /// The auth server's base URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.auth_port)
    }

    /// `issuer + path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    /// Registers a client with JSON metadata; returns status and body.
    pub async fn register_raw(&self, body: &Value) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .post(self.at("/oauth/register"))
            .json(body)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Registers a client; `auth_method` is `none` or `client_secret_basic`/`_post`.
    pub async fn register(&self, auth_method: &str, redirect_uri: &str) -> Result<Client> {
        let (status, body) = self
            .register_raw(&json!({
                "client_name": "E2E Client",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": auth_method,
                "grant_types": ["authorization_code", "refresh_token"],
            }))
            .await?;
        if status != StatusCode::CREATED {
            bail!("registration answered {status}: {body}");
        }
        Ok(Client {
            client_id: body["client_id"].as_str().unwrap_or_default().to_owned(),
            client_secret: body["client_secret"].as_str().map(str::to_owned),
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// A public client with a loopback redirect URI.
    pub async fn public_client(&self) -> Result<Client> {
        self.register("none", "http://127.0.0.1:33418/callback")
            .await
    }

    /// The authorization URL for `client` with PKCE and extra parameters.
    pub fn authorize_url(
        &self,
        client: &Client,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> Result<Url> {
        let mut params = vec![("state", "st-123")];
        params.extend_from_slice(extra);
        authorize_url(&self.issuer(), client, pkce, &params)
    }

    /// A full login as alice through a fresh browser; returns the redirect to the client.
    pub async fn authorize(&self, client: &Client, pkce: &Pkce) -> Result<Redirect> {
        let prefix = redirect_prefix(&client.redirect_uri);
        Browser::new()
            .login(
                self.authorize_url(client, pkce, &[])?,
                "alice",
                "approve",
                &prefix,
            )
            .await
    }

    /// Posts a form to the token endpoint, authenticating as `client`.
    pub async fn token(&self, client: &Client, form: &[(&str, &str)]) -> Result<reqwest::Response> {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let req = self.http.post(self.at("/oauth/token"));
        let req = match &client.client_secret {
            Some(secret) => req.basic_auth(&client.client_id, Some(secret)),
            None => {
                form.push(("client_id", &client.client_id));
                req
            }
        };
        Ok(req.form(&form).send().await?)
    }

    /// Redeems a code with its verifier.
    pub async fn redeem(
        &self,
        client: &Client,
        code: &str,
        pkce: &Pkce,
    ) -> Result<reqwest::Response> {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await
    }

    /// Logs in and redeems: the token response JSON.
    pub async fn tokens(&self, client: &Client) -> Result<Value> {
        let pkce = Pkce::s256();
        let redirect = self.authorize(client, &pkce).await?;
        let r = self.redeem(client, redirect.code(), &pkce).await?;
        if r.status() != StatusCode::OK {
            bail!(
                "token endpoint answered {}: {}",
                r.status(),
                r.text().await?
            );
        }
        Ok(r.json().await?)
    }

    /// RFC 8693 token exchange as the resource server: TaskManager's token for `subject`.
    pub async fn exchange(&self, subject: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.at("/oauth/token"))
            .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", self.tm.url.as_str()),
            ])
            .send()
            .await?)
    }

    /// Introspects as the resource server.
    pub async fn introspect(&self, token: &str) -> Result<Value> {
        let r = self
            .http
            .post(self.at("/introspect"))
            .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .await?;
        if r.status() != StatusCode::OK {
            bail!("introspection answered {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// Sets knobs on the mock TaskManager.
    pub async fn tm_knobs(&self, knobs: Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/__knobs", self.tm.url))
            .json(&knobs)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("knobs answered {}", r.status());
        }
        Ok(())
    }

    /// The mock TaskManager's counters.
    pub async fn tm_stats(&self) -> Result<Value> {
        self.get_json(&format!("{}/__stats", self.tm.url)).await
    }

    /// `GET url` (or an auth-server path such as `/.well-known/jwks.json`), as JSON.
    pub async fn get_json(&self, url_or_path: &str) -> Result<Value> {
        let url = if url_or_path.starts_with('/') {
            self.at(url_or_path)
        } else {
            url_or_path.to_owned()
        };
        Ok(self.http.get(url).send().await?.json().await?)
    }
}

/// The part of a redirect URI that identifies a redirect to the client (scheme, host, path).
pub fn redirect_prefix(redirect_uri: &str) -> String {
    match Url::parse(redirect_uri) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            match u.port() {
                Some(p) => format!(":{p}"),
                None => String::new(),
            }
        ),
        Err(_) => redirect_uri.to_owned(),
    }
}
