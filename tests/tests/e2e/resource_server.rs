//! Black-box tests of the resource server: the real `resource-server` binary on port 0.
//!
//! The first part needs no valid token (discovery, challenges, transport rules, auth server
//! outages); the second runs the whole stack (mock TaskManager, real auth server) and drives
//! `/mcp` with real tokens.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::Server;
use harness::stack::{Browser, Client, Pkce, Stack, redirect_prefix};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, AUTHORIZATION, CONTENT_TYPE,
    ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A port nothing listens on (bound and released at once).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Rs {
    server: Server,
    http: reqwest::Client,
    /// The canonical resource URL it was started with (its own `/mcp` by default).
    resource: String,
}

impl Rs {
    /// The resource server with an auth server URL where nothing answers, plus `extra` flags.
    async fn start(extra: &[&str]) -> Rs {
        let auth = format!("http://127.0.0.1:{}", closed_port());
        Self::start_against(&auth, extra).await
    }

    async fn start_against(auth_server: &str, extra: &[&str]) -> Rs {
        let tm = format!("http://127.0.0.1:{}", closed_port());
        let mut args = vec![
            "--port",
            "0",
            "--auth-server",
            auth_server,
            "--rs-client-id",
            "RS_ID",
            "--rs-client-secret",
            "RS_SECRET",
            "--taskmanager-url",
            &tm,
        ];
        args.extend_from_slice(extra);
        Self::launch(&args).await
    }

    /// The resource server of `stack` (its auth server, TaskManager and resource URL).
    async fn for_stack(stack: &Stack, extra: &[&str]) -> Rs {
        Self::for_stack_as(stack, &stack.resource, extra).await
    }

    /// The same, claiming to be `resource`.
    async fn for_stack_as(stack: &Stack, resource: &str, extra: &[&str]) -> Rs {
        let mut args = stack.rs_args(0, resource);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(&args).await
    }

    async fn launch(args: &[&str]) -> Rs {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let server = Server::start("resource-server", &args, &[]).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resource = args
            .iter()
            .position(|a| a == "--resource")
            .map(|i| args[i + 1].trim_end_matches('/').to_lowercase())
            .unwrap_or_else(|| format!("{}/mcp", server.url));
        Rs {
            server,
            http,
            resource,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    /// Where `/mcp` answers (the resource URL may name a proxy instead).
    fn endpoint(&self) -> String {
        self.url("/mcp")
    }

    fn resource(&self) -> String {
        self.resource.clone()
    }

    /// The `resource_metadata` URL of the challenges.
    fn prm_url(&self) -> String {
        let u = url::Url::parse(&self.resource).unwrap();
        format!(
            "{}/.well-known/oauth-protected-resource{}",
            u.origin().ascii_serialization(),
            u.path()
        )
    }

    /// A POST to `/mcp` as MCP clients send it.
    fn post(&self, body: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.endpoint())
            .header(CONTENT_TYPE, "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_owned())
    }

    async fn metric(&self, name: &str) -> u64 {
        harness::stack::metric(&self.http, &self.url("/metrics"), name)
            .await
            .unwrap()
            .unwrap_or(0)
    }
}

fn initialize() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}
        }
    })
    .to_string()
}

fn header(r: &Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn metadata_documents_are_exact_at_both_paths() {
    let rs = Rs::start(&[]).await;
    let auth = {
        let r = rs
            .http
            .get(rs.url("/.well-known/oauth-protected-resource"))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["authorization_servers"][0].clone()
    };
    let expected = json!({
        "resource": rs.resource(),
        "authorization_servers": [auth],
        "scopes_supported": ["read", "write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "TaskManager MCP server",
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = rs
            .http
            .get(rs.url(path))
            .header(ORIGIN, "https://any.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&r, CONTENT_TYPE).as_deref(),
            Some("application/json")
        );
        // Public metadata: readable from any browser origin.
        assert_eq!(
            header(&r, ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some("*")
        );
        assert_eq!(r.json::<Value>().await.unwrap(), expected, "{path}");
    }
}

#[tokio::test]
async fn a_public_resource_url_decides_the_metadata_path_and_the_challenge() {
    // Behind a proxy the public URL differs from the listen address; its path decides the
    // metadata path (RFC 9728 §3.1).
    let auth = format!("http://127.0.0.1:{}", closed_port());
    let rs = Rs::start_against(&auth, &["--resource", "https://MCP.example.com/tools/mcp/"]).await;
    let r = rs
        .http
        .get(rs.url("/.well-known/oauth-protected-resource/tools/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["resource"], "https://mcp.example.com/tools/mcp");
    assert_eq!(doc["authorization_servers"], json!([auth]));
    let r = rs.post(&initialize()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, WWW_AUTHENTICATE).unwrap(),
        r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp", scope="read""#
    );
}

#[tokio::test]
async fn env_fallbacks_of_the_integration_document_work() {
    let auth = format!("http://127.0.0.1:{}", closed_port());
    let env: Vec<(String, String)> = [
        ("MCP_RESOURCE_HOST", "127.0.0.1"),
        ("MCP_RESOURCE_PORT", "0"),
        ("MCP_RESOURCE_AUTH_SERVER_URL", auth.as_str()),
        ("MCP_RS_CLIENT_ID", "RS_ID"),
        ("MCP_RS_CLIENT_SECRET", "RS_SECRET"),
        ("TASKMANAGER_BASE_URL", "http://127.0.0.1:4321"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let server = Server::start("resource-server", &[], &env).await.unwrap();
    let doc: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource",
        server.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(doc["resource"], format!("{}/mcp", server.url));
    assert_eq!(doc["authorization_servers"], json!([auth]));
}

#[tokio::test]
async fn missing_token_gets_the_exact_challenge_on_every_method() {
    let rs = Rs::start(&[]).await;
    let expected = format!(
        r#"Bearer resource_metadata="{}", scope="read""#,
        rs.prm_url()
    );
    let responses = [
        rs.post(&initialize()).send().await.unwrap(),
        rs.http
            .get(rs.endpoint())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap(),
        rs.http.delete(rs.endpoint()).send().await.unwrap(),
        // Another scheme is no bearer token: the same plain challenge.
        rs.post(&initialize())
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .send()
            .await
            .unwrap(),
    ];
    for r in responses {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, WWW_AUTHENTICATE).unwrap(), expected);
        assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
    }
}

#[tokio::test]
async fn malformed_tokens_are_invalid_token_without_asking_the_auth_server() {
    // Nothing answers at the auth server URL: a malformed token must still be a 401, not 503.
    let rs = Rs::start(&[]).await;
    for value in ["Bearer ", "Bearer a b", "Bearer a\"b", "Bearer ünï"] {
        let r = rs
            .post(&initialize())
            .header(AUTHORIZATION, value.as_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{value}");
        let challenge = header(&r, WWW_AUTHENTICATE).unwrap();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
            "{challenge}"
        );
        assert!(challenge.ends_with(&format!(r#"resource_metadata="{}""#, rs.prm_url())));
    }
}

#[tokio::test]
async fn tokens_in_the_query_string_are_refused() {
    let rs = Rs::start(&[]).await;
    let r = rs
        .http
        .post(format!("{}?access_token=abc", rs.endpoint()))
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let challenge = header(&r, WWW_AUTHENTICATE).unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_request""#),
        "{challenge}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn invalid_json_is_a_jsonrpc_parse_error_not_a_5xx() {
    let rs = Rs::start(&[]).await;
    let r = rs.post("{\"jsonrpc\": \"2.0\", ").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"jsonrpc": "2.0", "id": null,
               "error": {"code": -32700, "message": "Parse error: the request body is not valid JSON"}})
    );
    // JSON that is not JSON-RPC: Invalid Request, echoing the id.
    let r = rs.post(r#"{"id": 7, "method": "x"}"#).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["id"], 7);
}

#[tokio::test]
async fn foreign_origins_are_refused_and_allowed_ones_pass() {
    let rs = Rs::start(&["--allowed-origin", "https://inspector.example.org"]).await;
    for origin in [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        let r = rs
            .post(&initialize())
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(header(&r, WWW_AUTHENTICATE).is_none());
    }
    // Loopback, the resource's own host and the configured origin reach the bearer check.
    for origin in [
        "http://localhost:6274",
        "http://127.0.0.1:3000",
        "https://inspector.example.org",
    ] {
        let r = rs
            .post(&initialize())
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{origin}");
        // The browser may read the challenge (CORS).
        assert_eq!(
            header(&r, ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some(origin)
        );
        let exposed = header(&r, ACCESS_CONTROL_EXPOSE_HEADERS).unwrap();
        assert!(exposed.contains("www-authenticate"), "{exposed}");
        assert!(exposed.contains("mcp-session-id"), "{exposed}");
    }
}

#[tokio::test]
async fn cors_preflight_answers_allowed_origins_only() {
    let rs = Rs::start(&[]).await;
    let preflight = |origin: &str| {
        rs.http
            .request(reqwest::Method::OPTIONS, rs.endpoint())
            .header(ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-protocol-version, mcp-session-id",
            )
            .send()
    };
    let r = preflight("http://localhost:6274").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        header(&r, ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("http://localhost:6274")
    );
    let methods = header(&r, "access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    for h in ["authorization", "mcp-protocol-version", "mcp-session-id"] {
        assert!(headers.contains(h), "{headers}");
    }
    let r = preflight("https://evil.example").await.unwrap();
    assert!(header(&r, ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn health_and_metrics() {
    let rs = Rs::start(&[]).await;
    let r = rs.http.get(rs.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let _ = rs.post(&initialize()).send().await.unwrap();
    let r = rs.http.get(rs.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, CONTENT_TYPE).unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains("rs_http_responses_total{status=\"401\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("rs_introspection_cache_hits_total"), "{text}");
    assert!(
        text.contains("rs_introspection_cache_misses_total"),
        "{text}"
    );
    assert!(!text.contains("RS_SECRET"));
}

/// Polls `f` until it returns true, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// With the real auth server and the mock TaskManager.

/// Logs `user` in through a fresh public client (optionally asking for `scope`); the client
/// and the token response.
async fn login(stack: &Stack, user: &str, scope: Option<&str>) -> (Client, Value) {
    let client = stack.public_client().await.unwrap();
    let pkce = Pkce::s256();
    let mut extra = vec![("resource", stack.resource.as_str())];
    if let Some(s) = scope {
        extra.push(("scope", s));
    }
    let url = stack.authorize_url(&client, &pkce, &extra).unwrap();
    let redirect = Browser::new()
        .login(url, user, "approve", &redirect_prefix(&client.redirect_uri))
        .await
        .unwrap();
    let r = stack.redeem(&client, redirect.code(), &pkce).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    (client, tokens)
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The JSON-RPC message answering request `id`, from a JSON or an SSE response body.
async fn rpc_answer(r: Response, id: u64) -> Value {
    let is_sse = header(&r, CONTENT_TYPE).is_some_and(|c| c.starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    if !is_sse {
        return serde_json::from_str(&text).unwrap();
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {id} in {text}"))
}

/// A raw MCP session over streamable HTTP.
struct Mcp<'a> {
    rs: &'a Rs,
    token: String,
    session: Option<String>,
    version: String,
    next_id: std::cell::Cell<u64>,
}

impl<'a> Mcp<'a> {
    /// `initialize` + `notifications/initialized` with protocol revision `version`.
    async fn connect(rs: &'a Rs, token: &str, version: &str) -> Mcp<'a> {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "1"}
            }
        });
        let r = rs
            .post(&body.to_string())
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let session = header(&r, "mcp-session-id");
        assert!(session.is_some(), "initialize opens a session");
        let answer = rpc_answer(r, 0).await;
        assert_eq!(answer["result"]["protocolVersion"], version, "{answer}");
        let mcp = Mcp {
            rs,
            token: token.to_owned(),
            session,
            version: version.to_owned(),
            next_id: std::cell::Cell::new(1),
        };
        let r = mcp
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        mcp
    }

    async fn send(&self, message: &Value) -> Response {
        let mut req = self
            .rs
            .post(&message.to_string())
            .bearer_auth(&self.token)
            .header("mcp-protocol-version", &self.version);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.unwrap()
    }

    /// Sends a request; the raw HTTP response.
    async fn raw(&self, method: &str, params: Value) -> (Response, u64) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let r = self
            .send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        (r, id)
    }

    /// Sends a request that must succeed at the HTTP level; its JSON-RPC answer.
    async fn request(&self, method: &str, params: Value) -> Value {
        let (r, id) = self.raw(method, params).await;
        assert_eq!(r.status(), StatusCode::OK, "{method}");
        rpc_answer(r, id).await
    }

    /// Calls a tool; its result (`isError` may be true).
    async fn tool(&self, name: &str, arguments: Value) -> Value {
        let answer = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        assert!(answer.get("error").is_none(), "{answer}");
        answer["result"].clone()
    }
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn auth_server_outage_is_503_never_401_and_recovers_without_restart() {
    let mut stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    stack.stop_auth().await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let r = rs
        .post(&initialize())
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, RETRY_AFTER).as_deref(), Some("5"));
    assert!(
        header(&r, WWW_AUTHENTICATE).is_none(),
        "no challenge: no login loop"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // The auth server comes back on the same port: the same resource server recovers.
    stack.start_auth().await.unwrap();
    let token = access(&tokens);
    let recovered = eventually(Duration::from_secs(10), || async {
        let r = rs
            .post(&initialize())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        r.status() == StatusCode::OK
    })
    .await;
    assert!(recovered);
}

/// A stand-in authorization server whose introspection endpoint misbehaves as `mode` says.
async fn broken_auth_server(mode: &'static str) -> String {
    use axum::response::IntoResponse;
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/introspect",
        post(move || async move {
            match mode {
                "502" => (reqwest::StatusCode::BAD_GATEWAY, "bad gateway").into_response(),
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late".into_response()
                }
                _ => ([("content-type", "text/html")], "<html>login</html>").into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn an_auth_server_answering_5xx_hanging_or_garbage_is_503_never_401() {
    for mode in ["502", "hang", "garbage"] {
        let auth = broken_auth_server(mode).await;
        let rs = Rs::start_against(&auth, &["--auth-timeout-ms", "500"]).await;
        let started = Instant::now();
        let r = rs
            .post(&initialize())
            .bearer_auth("some-opaque-token")
            .send()
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode}: bounded"
        );
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{mode}");
        assert_eq!(header(&r, RETRY_AFTER).as_deref(), Some("5"), "{mode}");
        assert!(
            header(&r, WWW_AUTHENTICATE).is_none(),
            "{mode}: no login loop"
        );
    }
}

#[tokio::test]
async fn a_real_token_drives_every_tool_against_taskmanager() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-06-18").await;

    let tools = mcp.request("tools/list", json!({})).await;
    let tools = tools["result"]["tools"].as_array().unwrap().clone();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "auth_status",
            "create_task",
            "delete_task",
            "get_task",
            "list_tasks",
            "update_task"
        ]
    );
    for t in &tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().unwrap().len() > 30, "{t}");
    }
    let create = tools.iter().find(|t| t["name"] == "create_task").unwrap();
    assert_eq!(create["inputSchema"]["required"], json!(["title"]));

    let list = mcp.tool("list_tasks", json!({})).await;
    assert_eq!(list["isError"], false, "{list}");
    assert_eq!(
        list["structuredContent"]["count"], 2,
        "alice starts with two tasks"
    );

    let created = mcp
        .tool(
            "create_task",
            json!({"title": "Buy milk", "description": "2 litres"}),
        )
        .await;
    assert_eq!(created["isError"], false, "{created}");
    let task = created["structuredContent"].clone();
    assert_eq!(task["title"], "Buy milk");
    let id = task["id"].clone();

    let updated = mcp
        .tool("update_task", json!({"id": id, "completed": true}))
        .await;
    assert_eq!(updated["structuredContent"]["completed"], true, "{updated}");
    let got = mcp.tool("get_task", json!({"id": id})).await;
    assert_eq!(got["structuredContent"]["completed"], true, "{got}");
    let done = mcp.tool("list_tasks", json!({"completed": true})).await;
    assert!(
        done["structuredContent"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["completed"] == true)
    );

    let deleted = mcp.tool("delete_task", json!({"id": id})).await;
    assert_eq!(deleted["isError"], false, "{deleted}");
    let gone = mcp.tool("get_task", json!({"id": id})).await;
    assert_eq!(gone["isError"], true);
    assert!(text_of(&gone).contains("not found"), "{gone}");
    let nothing = mcp.tool("update_task", json!({"id": "1"})).await;
    assert_eq!(nothing["isError"], true);
    assert!(text_of(&nothing).contains("Nothing to change"));

    // TaskManager saw its own token, never the MCP token: it answered the calls at all.
    let stats = stack.tm_stats().await.unwrap();
    assert!(stats["tasks_requests"].as_u64().unwrap() >= 6, "{stats}");
}

#[tokio::test]
async fn task_ids_that_are_path_tricks_never_reach_other_taskmanager_routes() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-06-18").await;
    let before = stack.tm_stats().await.unwrap()["tasks_requests"]
        .as_u64()
        .unwrap();
    for id in [".", ".."] {
        for (tool, args) in [
            ("get_task", json!({"id": id})),
            ("delete_task", json!({"id": id})),
            ("update_task", json!({"id": id, "completed": true})),
        ] {
            let r = mcp.tool(tool, args).await;
            assert_eq!(r["isError"], true, "{tool} {id}: {r}");
            assert!(text_of(&r).contains("is not a task id"), "{r}");
        }
    }
    // Not one of them reached TaskManager (no request to /api/tasks or above it).
    let after = stack.tm_stats().await.unwrap()["tasks_requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before);
    // Other odd ids are percent-encoded into one path segment: TaskManager says not found.
    for id in ["../tasks", "1/2", "%2e%2e", "a?b#c"] {
        let r = mcp.tool("get_task", json!({"id": id})).await;
        assert_eq!(r["isError"], true, "{id}: {r}");
        assert!(text_of(&r).contains("not found"), "{id}: {r}");
    }
}

#[tokio::test]
async fn protocol_revisions_and_transport_methods() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let token = access(&tokens);
    for version in ["2025-06-18", "2025-11-25"] {
        let mcp = Mcp::connect(&rs, &token, version).await;
        let list = mcp.tool("list_tasks", json!({})).await;
        assert_eq!(list["isError"], false, "{version}: {list}");
        // GET opens the session's SSE stream.
        let r = rs
            .http
            .get(rs.endpoint())
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", mcp.session.as_deref().unwrap())
            .header("mcp-protocol-version", version)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            header(&r, CONTENT_TYPE)
                .unwrap()
                .starts_with("text/event-stream")
        );
        drop(r);
        // DELETE ends the session; it is then unknown.
        let r = rs
            .http
            .delete(rs.endpoint())
            .bearer_auth(&token)
            .header("mcp-session-id", mcp.session.as_deref().unwrap())
            .header("mcp-protocol-version", version)
            .send()
            .await
            .unwrap();
        // 204, which every SDK reads as a clean termination (rmcp's own answer is 202).
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let (r, _) = mcp.raw("tools/list", json!({})).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // The newest revision (2026-07-28) has no handshake: every request carries its metadata.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}
    });
    let body = json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "list_tasks", "arguments": {}, "_meta": meta}
    });
    let r = rs
        .post(&body.to_string())
        .bearer_auth(&token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "list_tasks")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer = rpc_answer(r, 5).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
}

#[tokio::test]
async fn a_read_only_token_gets_a_403_step_up_for_write_tools() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", Some("read")).await;
    assert_eq!(tokens["scope"], "read");
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-11-25").await;
    let list = mcp.tool("list_tasks", json!({})).await;
    assert_eq!(list["isError"], false, "{list}");
    for tool in ["create_task", "update_task", "delete_task"] {
        let (r, _) = mcp
            .raw(
                "tools/call",
                json!({"name": tool, "arguments": {"id": "1", "title": "x"}}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{tool}");
        assert_eq!(
            header(&r, WWW_AUTHENTICATE).unwrap(),
            format!(
                r#"Bearer error="insufficient_scope", scope="write", resource_metadata="{}""#,
                rs.prm_url()
            )
        );
    }
    let status = mcp.tool("auth_status", json!({})).await;
    assert_eq!(status["structuredContent"]["scopes"], json!(["read"]));
    assert!(text_of(&status).contains("`write`"), "{status}");
}

#[tokio::test]
async fn inactive_wrong_audience_and_refresh_tokens_are_invalid_token() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let invalid = |r: &Response| {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = header(r, WWW_AUTHENTICATE).unwrap();
        assert!(c.starts_with(r#"Bearer error="invalid_token""#), "{c}");
        assert!(
            c.ends_with(&format!(r#"resource_metadata="{}""#, rs.prm_url())),
            "{c}"
        );
    };
    // Unknown to the auth server.
    let r = rs
        .post(&initialize())
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    invalid(&r);
    // A refresh token is active at introspection, but is not an access token.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = rs
        .post(&initialize())
        .bearer_auth(refresh)
        .send()
        .await
        .unwrap();
    invalid(&r);
    // A token for this auth server's resource, presented to another resource.
    let other = Rs::for_stack_as(&stack, "http://127.0.0.1:8002/mcp", &[]).await;
    let r = other
        .post(&initialize())
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&r, WWW_AUTHENTICATE)
            .unwrap()
            .contains("not issued for this resource")
    );
    // Revocation takes effect within 5 s despite the introspection cache.
    let token = access(&tokens);
    let r = rs
        .post(&initialize())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let revoked = stack
        .http
        .post(stack.at("/oauth/revoke"))
        .form(&[
            ("token", token.as_str()),
            ("client_id", client.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let start = Instant::now();
    let refused = eventually(Duration::from_secs(6), || async {
        let r = rs
            .post(&initialize())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        r.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        refused && start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_new_token_cause_one_introspection() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let token = access(&tokens);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let before = rs.metric("rs_introspection_requests_total").await;
    let answers =
        futures::future::join_all((0..16).map(|_| rs.post(&ping).bearer_auth(&token).send())).await;
    for a in answers {
        assert_ne!(a.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        rs.metric("rs_introspection_requests_total").await - before,
        1
    );
    // Within the cache lifetime, the next request is a cache hit.
    let hits = rs.metric("rs_introspection_cache_hits_total").await;
    let _ = rs.post(&ping).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        rs.metric("rs_introspection_cache_hits_total").await,
        hits + 1
    );
}

#[tokio::test]
async fn sessions_are_bound_to_the_user_who_opened_them() {
    let stack = Stack::start().await.unwrap();
    let (_, alice) = login(&stack, "alice", None).await;
    let (_, bob) = login(&stack, "bob", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&alice), "2025-06-18").await;
    let hijack = Mcp {
        rs: &rs,
        token: access(&bob),
        session: mcp.session.clone(),
        version: mcp.version.clone(),
        next_id: std::cell::Cell::new(1),
    };
    let (r, _) = hijack
        .raw("tools/call", json!({"name": "list_tasks"}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Bob's own session shows bob's tasks, not alice's.
    let own = Mcp::connect(&rs, &access(&bob), "2025-06-18").await;
    let list = own.tool("list_tasks", json!({})).await;
    assert!(
        list["structuredContent"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["owner"] != "user-alice"),
        "{list}"
    );
}

#[tokio::test]
async fn auth_status_reports_user_client_scopes_and_upstream_state() {
    let stack = Stack::start().await.unwrap();
    let (client, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-06-18").await;
    let status = mcp.tool("auth_status", json!({})).await;
    assert_eq!(status["isError"], false, "{status}");
    let s = &status["structuredContent"];
    assert_eq!(s["user"]["sub"], "user-alice");
    assert_eq!(s["user"]["username"], "alice");
    assert_eq!(s["client_id"], client.client_id);
    assert_eq!(s["scopes"], json!(["read", "write"]));
    assert!(s["token_expires_in"].as_u64().unwrap() > 3000, "{s}");
    assert_eq!(s["upstream"]["state"], "fresh");
    assert!(text_of(&status).contains("Nothing to do"), "{status}");
}

#[tokio::test]
async fn taskmanager_refusals_and_outages_are_tool_errors_that_say_what_to_do() {
    let stack = Stack::start().await.unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &["--upstream-timeout-ms", "1000"]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-06-18").await;
    // Warm the upstream token, then break TaskManager in the ways the knobs allow.
    assert_eq!(mcp.tool("list_tasks", json!({})).await["isError"], false);
    for (knobs, expect) in [
        (json!({"fail_status": 503}), "try again"),
        (
            json!({"fail_status": null, "garbage": true}),
            "not valid JSON",
        ),
        (json!({"garbage": false, "delay_ms": 3000}), "timed out"),
    ] {
        stack.tm_knobs(knobs.clone()).await.unwrap();
        let start = Instant::now();
        let r = mcp.tool("list_tasks", json!({})).await;
        assert_eq!(r["isError"], true, "{knobs}: {r}");
        assert!(text_of(&r).contains(expect), "{knobs}: {r}");
        assert!(start.elapsed() < Duration::from_secs(3), "{knobs}: no hang");
    }
}

#[tokio::test]
async fn a_lost_upstream_grant_asks_the_user_to_sign_in_again() {
    // TaskManager tokens that are always near expiry make every exchange refresh upstream.
    let stack = Stack::start().await.unwrap();
    stack
        .tm_knobs(json!({"access_token_ttl": 60}))
        .await
        .unwrap();
    let (_, tokens) = login(&stack, "alice", None).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let mcp = Mcp::connect(&rs, &access(&tokens), "2025-06-18").await;
    let status = mcp.tool("auth_status", json!({})).await;
    assert_eq!(
        status["structuredContent"]["upstream"]["state"], "refreshed",
        "{status}"
    );
    // A second MCP token of the same user, whose grant TaskManager then refuses to refresh.
    let (_, again) = login(&stack, "alice", None).await;
    stack
        .tm_knobs(json!({"refuse_refresh": true}))
        .await
        .unwrap();
    let mcp = Mcp::connect(&rs, &access(&again), "2025-06-18").await;
    let list = mcp.tool("list_tasks", json!({})).await;
    assert_eq!(list["isError"], true, "{list}");
    assert!(text_of(&list).contains("Sign in again"), "{list}");
    let status = mcp.tool("auth_status", json!({})).await;
    assert_eq!(status["isError"], false);
    assert_eq!(
        status["structuredContent"]["upstream"]["state"],
        "needs_reauthorization"
    );
    assert!(
        text_of(&status).contains("needs re-authorization"),
        "{status}"
    );
}

#[tokio::test]
async fn the_official_rust_sdk_client_works_and_sees_the_step_up() {
    use rmcp::ServiceExt;
    use rmcp::model::{CallToolRequestParams, ClientConfig};
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let stack = Stack::start().await.unwrap();
    let (_, full) = login(&stack, "alice", None).await;
    let (_, read) = login(&stack, "alice", Some("read")).await;
    let rs = Rs::for_stack(&stack, &[]).await;
    let connect = |token: String| {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(rs.endpoint()).auth_header(token),
        );
        ClientConfig::default().serve(transport)
    };

    let client = connect(access(&full)).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 6);
    let args = json!({"title": "From the Rust SDK"})
        .as_object()
        .unwrap()
        .clone();
    let created = client
        .call_tool(CallToolRequestParams::new("create_task").with_arguments(args))
        .await
        .unwrap();
    assert_eq!(created.is_error, Some(false), "{created:?}");
    let _ = client.cancel().await;

    let client = connect(access(&read)).await.unwrap();
    let listed = client
        .call_tool(CallToolRequestParams::new("list_tasks"))
        .await
        .unwrap();
    assert_eq!(listed.is_error, Some(false));
    let args = json!({"title": "nope"}).as_object().unwrap().clone();
    let refused = client
        .call_tool(CallToolRequestParams::new("create_task").with_arguments(args))
        .await
        .unwrap_err();
    let text = format!("{refused:?}");
    assert!(text.contains("insufficient_scope"), "{text}");
    assert!(text.contains(r#"scope=\"write\""#), "{text}");
    let _ = client.cancel().await;
}
