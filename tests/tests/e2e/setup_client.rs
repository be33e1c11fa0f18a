//! Black-box tests of the `setup-client` CLI against the mock TaskManager: registration (env
//! lines, JSON, the 0600 `--output` file), `--list-only`, one exit code per kind of failure
//! (docs/CONTRACTS.md), and a round trip proving the printed credentials work at TaskManager's
//! token endpoint.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use harness::{Server, bin_path};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A run of the CLI may take this long before the test calls it hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The mock's pre-registered client, as the local stack seeds it.
const SEEDED: &str = "mcp-auth-server-local:local-dev-secret:http://127.0.0.1:9000/oauth/callback,http://localhost:9000/oauth/callback";

async fn mock(extra: &[&str]) -> Server {
    let mut args = vec!["--port".to_owned(), "0".to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server::start("mock-taskmanager", &args, &[]).await.unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// Signs in at the mock and returns the bare value of the `session` cookie.
async fn login(tm: &Server, username: &str, password: &str) -> String {
    let response = http()
        .post(format!("{}/login", tm.url))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "login as {username}"
    );
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    let pair = set_cookie.split(';').next().unwrap();
    pair.strip_prefix("session=").unwrap().to_owned()
}

async fn set_knobs(tm: &Server, knobs: Value) {
    let response = http()
        .post(format!("{}/__knobs", tm.url))
        .json(&knobs)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The clients TaskManager lists to the administrator, read directly from the mock.
async fn listed_clients(tm: &Server, admin: &str) -> Vec<Value> {
    http()
        .get(format!("{}/api/oauth/clients", tm.url))
        .header(COOKIE, format!("session={admin}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What one run of the CLI did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exactly one line `error: …` on stderr, nothing on stdout, and exit code `code`.
    fn assert_error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        self.stderr
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("{self:#?}"))
    }

    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{self:#?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

/// Runs `setup-client` with a clean environment plus `env`, feeding `stdin` if given.
async fn setup_client(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(bin_path("setup-client").unwrap());
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("setup-client hung")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `setup-client --taskmanager-url <mock> --session-cookie <cookie> <args>`.
async fn run_with(tm: &Server, cookie: &str, args: &[&str]) -> Run {
    let mut all = vec![
        "--taskmanager-url",
        tm.url.as_str(),
        "--session-cookie",
        cookie,
    ];
    all.extend_from_slice(args);
    setup_client(&all, &[], None).await
}

/// The three env lines, as a map.
fn env_lines(stdout: &str) -> std::collections::BTreeMap<String, String> {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    lines
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn registers_a_client_and_prints_env_lines_with_the_secret_only_on_stdout() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let run = run_with(&tm, &admin, &["--client-name", "MCP Server"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");

    let env = env_lines(&run.stdout);
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        [
            "TASKMANAGER_BASE_URL",
            "TASKMANAGER_CLIENT_ID",
            "TASKMANAGER_CLIENT_SECRET"
        ]
    );
    assert_eq!(env["TASKMANAGER_BASE_URL"], tm.url);
    let (id, secret) = (
        &env["TASKMANAGER_CLIENT_ID"],
        &env["TASKMANAGER_CLIENT_SECRET"],
    );
    assert!(!secret.is_empty());
    assert!(run.stderr.contains(id.as_str()), "{}", run.stderr);
    assert!(
        !run.stderr.contains(secret.as_str()),
        "secret on stderr: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&admin),
        "cookie on stderr: {}",
        run.stderr
    );

    // What TaskManager registered: the auth server's default callback, both grants, the scopes.
    let clients = listed_clients(&tm, &admin).await;
    let client = clients
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap();
    assert_eq!(client["name"], "MCP Server");
    assert_eq!(
        client["redirect_uris"],
        json!(["http://localhost:9000/oauth/callback"])
    );
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(client["scope"], "read write");

    // The lines can be sourced by a shell as they are.
    let script = format!(
        "set -a\n{}printf %s \"$TASKMANAGER_CLIENT_SECRET\"",
        run.stdout
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), *secret);
}

#[tokio::test]
async fn json_prints_the_registered_client_for_the_given_auth_server_and_scopes() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let run = run_with(
        &tm,
        &admin,
        &[
            "--json",
            "--client-name",
            "Staging MCP",
            "--auth-server-url",
            "https://mcp-auth.example.com/",
            "--scopes",
            "openid,read write",
        ],
    )
    .await;
    let client = run.json();
    assert_eq!(client["name"], "Staging MCP");
    assert_eq!(
        client["redirect_uris"],
        json!(["https://mcp-auth.example.com/oauth/callback"])
    );
    assert_eq!(client["scope"], "openid read write");
    let secret = client["client_secret"].as_str().unwrap();
    assert!(!secret.is_empty());
    assert!(!run.stderr.contains(secret), "{}", run.stderr);

    // Repeated --redirect-uri replaces the derived callback.
    let run = run_with(
        &tm,
        &admin,
        &[
            "--json",
            "--redirect-uri",
            "http://127.0.0.1:9000/oauth/callback",
            "--redirect-uri",
            "http://localhost:9000/oauth/callback",
        ],
    )
    .await;
    assert_eq!(
        run.json()["redirect_uris"],
        json!([
            "http://127.0.0.1:9000/oauth/callback",
            "http://localhost:9000/oauth/callback"
        ])
    );
}

#[tokio::test]
async fn list_only_prints_a_table_and_json_without_secrets() {
    let tm = mock(&["--client", SEEDED]).await;
    let admin = login(&tm, "admin", "admin").await;
    let registered = run_with(&tm, &admin, &["--json", "--client-name", "Second"])
        .await
        .json();
    let secret = registered["client_secret"].as_str().unwrap();
    let id = registered["client_id"].as_str().unwrap();

    let run = run_with(&tm, &admin, &["--list-only"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["CLIENT ID", "NAME", "REDIRECT URIS", "CREATED"]);
    assert!(
        lines[1].starts_with("mcp-auth-server-local "),
        "{}",
        run.stdout
    );
    assert!(
        lines[1]
            .contains("http://127.0.0.1:9000/oauth/callback, http://localhost:9000/oauth/callback"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with(id) && lines[2].contains("Second"),
        "{}",
        run.stdout
    );
    // Columns line up: every row has its name where the header has NAME.
    let name_col = lines[0].find("NAME").unwrap();
    assert_eq!(lines[2].find("Second"), Some(name_col), "{}", run.stdout);
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("local-dev-secret") && !text.contains(secret),
            "{text}"
        );
    }
    assert!(run.stderr.contains("2 OAuth clients"), "{}", run.stderr);

    let run = run_with(&tm, &admin, &["--list-only", "--json"]).await;
    let list = run.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c.get("client_secret").is_none()));
    assert_eq!(list[0]["client_id"], "mcp-auth-server-local");
    assert!(!run.stdout.contains("local-dev-secret") && !run.stdout.contains(secret));
}

#[tokio::test]
async fn output_file_is_0600_and_never_overwritten_without_force() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth-server.env");
    let file = path.to_str().unwrap();

    let run = run_with(&tm, &admin, &["--output", file]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, "", "the credentials go to the file only");
    let env = env_lines(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(env["TASKMANAGER_BASE_URL"], tm.url);
    assert!(
        !run.stderr.contains(&env["TASKMANAGER_CLIENT_SECRET"]),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(file), "{}", run.stderr);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // An existing file is refused before anything is registered, and left as it was.
    let before = std::fs::read_to_string(&path).unwrap();
    let message = run_with(&tm, &admin, &["--output", file])
        .await
        .assert_error(6)
        .to_owned();
    assert!(
        message.contains("already exists") && message.contains("--force"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    assert_eq!(listed_clients(&tm, &admin).await.len(), 1);

    // --force replaces it, and the result is 0600 whatever mode the old file had.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = run_with(&tm, &admin, &["--output", file, "--force"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let after = std::fs::read_to_string(&path).unwrap();
    assert_ne!(after, before);
    assert_eq!(env_lines(&after).len(), 3);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );

    // A failed registration leaves no file behind.
    let missing = dir.path().join("never.env");
    run_with(&tm, "expired", &["--output", missing.to_str().unwrap()])
        .await
        .assert_error(4);
    assert!(!missing.exists());
}

#[tokio::test]
async fn url_and_cookie_come_from_env_and_the_cookie_in_any_pasted_form() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let pair = format!("session={admin}");
    let header = format!("Cookie: theme=dark; session={admin}; lang=en");
    for cookie in [admin.as_str(), pair.as_str(), header.as_str()] {
        let env = [
            ("TASKMANAGER_BASE_URL", tm.url.as_str()),
            ("TASKMANAGER_SESSION_COOKIE", cookie),
        ];
        let run = setup_client(&["--list-only"], &env, None).await;
        assert_eq!(run.code, Some(0), "{cookie}: {run:#?}");
    }
    // `-` reads the cookie from stdin, keeping it off the command line.
    let run = setup_client(
        &[
            "--taskmanager-url",
            &tm.url,
            "--session-cookie",
            "-",
            "--list-only",
        ],
        &[],
        Some(&format!("{admin}\n")),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    // A bare value under another cookie name is sent under that name (and so refused here).
    run_with(&tm, &admin, &["--list-only", "--cookie-name", "sid"])
        .await
        .assert_error(4);
}

#[tokio::test]
async fn help_explains_openid_and_never_shows_the_cookie_from_env() {
    let run = setup_client(
        &["--help"],
        &[("TASKMANAGER_SESSION_COOKIE", "hunter2-cookie")],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.contains("openid") && run.stdout.contains("id_token"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("TASKMANAGER_SESSION_COOKIE"));
    assert!(!run.stdout.contains("hunter2-cookie"));
}

#[tokio::test]
async fn unreachable_taskmanager_exits_3() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let run = setup_client(
        &["--taskmanager-url", &url, "--session-cookie", "abc"],
        &[],
        None,
    )
    .await;
    let message = run.assert_error(3);
    assert!(
        message.starts_with("cannot reach TaskManager at "),
        "{message}"
    );
    assert!(!message.contains("abc"), "{message}");
}

#[tokio::test]
async fn slow_taskmanager_times_out_with_3() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    set_knobs(&tm, json!({"delay_ms": 10_000})).await;
    let started = Instant::now();
    let run = run_with(&tm, &admin, &["--list-only", "--timeout", "1"]).await;
    let message = run.assert_error(3);
    assert!(
        message.contains("did not answer within 1 second;"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn missing_unknown_or_logged_out_cookie_exits_4_with_how_to_get_one() {
    let tm = mock(&[]).await;
    let message = setup_client(&["--taskmanager-url", &tm.url], &[], None)
        .await
        .assert_error(4)
        .to_owned();
    assert!(message.starts_with("no session cookie given"), "{message}");
    assert!(
        message.contains("administrator") && message.contains("developer tools"),
        "{message}"
    );

    let message = run_with(&tm, "no-such-session", &[])
        .await
        .assert_error(4)
        .to_owned();
    assert!(
        message.contains("HTTP 401") && message.contains("developer tools"),
        "{message}"
    );
    assert!(!message.contains("no-such-session"), "{message}");

    // A session that ended (logged out) is refused the same way.
    let admin = login(&tm, "admin", "admin").await;
    http()
        .post(format!("{}/logout", tm.url))
        .header(COOKIE, format!("session={admin}"))
        .send()
        .await
        .unwrap();
    run_with(&tm, &admin, &["--list-only"])
        .await
        .assert_error(4);
}

#[tokio::test]
async fn a_non_administrators_cookie_exits_4_and_registers_nothing() {
    let tm = mock(&[]).await;
    let alice = login(&tm, "alice", "password").await;
    for args in [&[][..], &["--list-only"]] {
        let run = run_with(&tm, &alice, args).await;
        let message = run.assert_error(4);
        assert!(
            message.contains("HTTP 403") && message.contains("not an administrator"),
            "{message}"
        );
        assert!(
            message.contains("log into TaskManager as an administrator"),
            "{message}"
        );
        assert!(!message.contains(&alice), "{message}");
    }
    let admin = login(&tm, "admin", "admin").await;
    assert!(listed_clients(&tm, &admin).await.is_empty());
}

#[tokio::test]
async fn an_answer_that_is_not_the_expected_json_exits_5() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    set_knobs(&tm, json!({"garbage": true})).await;
    for args in [&[][..], &["--list-only"]] {
        let message = run_with(&tm, &admin, args).await.assert_error(5).to_owned();
        assert!(
            message.contains("not JSON") && message.contains("text/html"),
            "{message}"
        );
    }
    set_knobs(&tm, json!({"garbage": false, "fail_status": 500})).await;
    let message = run_with(&tm, &admin, &["--list-only"])
        .await
        .assert_error(5)
        .to_owned();
    assert!(message.contains("HTTP 500"), "{message}");
    // TaskManager refusing the registration itself (a scope it does not know) is also 5.
    set_knobs(&tm, json!({"fail_status": null})).await;
    let message = run_with(&tm, &admin, &["--scopes", "admin"])
        .await
        .assert_error(5)
        .to_owned();
    assert!(message.contains("HTTP 400"), "{message}");
}

#[tokio::test]
async fn invalid_urls_and_arguments_exit_2() {
    for url in [
        "not a url",
        "localhost:4321",
        "ftp://localhost:4321",
        "http://admin:pw@localhost:4321",
    ] {
        let run = setup_client(
            &["--taskmanager-url", url, "--session-cookie", "abc"],
            &[],
            None,
        )
        .await;
        let message = run.assert_error(2);
        assert!(
            message.starts_with("invalid --taskmanager-url"),
            "{message}"
        );
        assert!(!message.contains("pw@"), "{message}");
    }
    let base = [
        "--taskmanager-url",
        "http://127.0.0.1:1",
        "--session-cookie",
        "abc",
    ];
    for extra in [
        &["--redirect-uri", "http://mcp.example.com/oauth/callback"][..],
        &["--auth-server-url", "not a url"],
        &["--scopes", ""],
        &["--list-only", "--output", "x.env"],
        &["--timeout", "0"],
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let run = setup_client(&args, &[], None).await;
        assert_eq!(run.code, Some(2), "{extra:?}: {run:#?}");
        assert!(run.stderr.starts_with("error:"), "{extra:?}: {run:#?}");
    }
    // No --taskmanager-url at all.
    let run = setup_client(&["--session-cookie", "abc"], &[], None).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
}

/// The value of hidden input `name` in an HTML form.
fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

fn query_param(location: &str, name: &str) -> Option<String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// RFC 6749 §2.3.1: id and secret form-urlencoded, then Base64, in HTTP Basic.
fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

#[tokio::test]
async fn registered_credentials_work_for_the_authorization_code_flow() {
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let env = env_lines(&run_with(&tm, &admin, &[]).await.stdout);
    let (id, secret) = (
        &env["TASKMANAGER_CLIENT_ID"],
        &env["TASKMANAGER_CLIENT_SECRET"],
    );
    let redirect_uri = "http://localhost:9000/oauth/callback";

    // Alice authorizes the client at TaskManager, as the auth server will send her to.
    let alice = login(&tm, "alice", "password").await;
    let (verifier, challenge) = shared::pkce::new_pair();
    let consent = http()
        .get(format!("{}/api/oauth/authorize", tm.url))
        .query(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", redirect_uri),
            ("scope", "read write"),
            ("state", "st-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .header(COOKIE, format!("session={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let html = consent.text().await.unwrap();
    assert!(html.contains("MCP Server"), "{html}");
    let decision = http()
        .post(format!("{}/api/oauth/authorize/decision", tm.url))
        .header(COOKIE, format!("session={alice}"))
        .form(&[
            ("request_id", hidden_input(&html, "request_id")),
            ("csrf", hidden_input(&html, "csrf")),
            ("decision", "approve".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert!(decision.status().is_redirection(), "{}", decision.status());
    let location = decision.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(redirect_uri), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
    let code = query_param(&location, "code").unwrap();

    let token = |auth: String, form: Vec<(&'static str, String)>| {
        http()
            .post(format!("{}/api/oauth/token", tm.url))
            .header(AUTHORIZATION, auth)
            .form(&form)
            .send()
    };
    // The secret matters: a wrong one is invalid_client.
    let wrong = token(
        basic(id, "not-the-secret"),
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", "whatever".into()),
            ("redirect_uri", redirect_uri.into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let response = token(
        basic(id, secret),
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", redirect_uri.into()),
            ("code_verifier", verifier),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    let tasks: Value = http()
        .get(format!("{}/api/tasks", tm.url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");

    // The refresh_token grant was registered too.
    let refreshed = token(
        basic(id, secret),
        vec![
            ("grant_type", "refresh_token".into()),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().unwrap().to_owned(),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
}

/// The round trip: what setup-client prints, used as the auth server's environment as is,
/// carries a full login through TaskManager.
#[tokio::test]
async fn printed_env_lines_configure_the_auth_server_for_a_full_login() {
    use harness::stack::{Browser, Client, Pkce, authorize_url, free_port, redirect_prefix};
    let tm = mock(&[]).await;
    let admin = login(&tm, "admin", "admin").await;
    let auth_port = free_port().unwrap();
    let issuer = format!("http://127.0.0.1:{auth_port}");
    let run = run_with(
        &tm,
        &admin,
        &["--client-name", "MCP Server", "--auth-server-url", &issuer],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let env: Vec<(String, String)> = env_lines(&run.stdout).into_iter().collect();
    assert!(env.iter().any(|(k, _)| k == "TASKMANAGER_CLIENT_SECRET"));
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--port",
        &auth_port.to_string(),
        "--issuer",
        &issuer,
        "--data-dir",
        &data.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _auth = Server::start("auth-server", &args, &env).await.unwrap();

    let http = http();
    let reg: Value = http
        .post(format!("{issuer}/oauth/register"))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1:41234/cb"], "token_endpoint_auth_method": "none"}))
        .send().await.unwrap().json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let pkce = Pkce::s256();
    let client = Client {
        client_id: client_id.to_owned(),
        client_secret: None,
        redirect_uri: "http://127.0.0.1:41234/cb".to_owned(),
    };
    let url = authorize_url(&issuer, &client, &pkce, &[]).unwrap();
    let back = Browser::new()
        .login(
            url,
            "alice",
            "approve",
            &redirect_prefix("http://127.0.0.1:41234/cb"),
        )
        .await
        .unwrap();
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", back.code()),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:41234/cb"),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
