//! The official MCP client SDKs, end to end: TypeScript (`@modelcontextprotocol/sdk`, driver
//! `tests/js/mcp-client.mjs`) and Python (`mcp` from PyPI, driver `tests/py/mcp_client.py`),
//! each starting from nothing but the resource server's URL: 401 → RFC 9728 → RFC 8414 →
//! registration → authorization with PKCE and `resource` → consent and TaskManager's login in
//! chromium → code delivered to the client's own loopback listener → tokens → initialize,
//! tools/list, tools/call → a forced refresh without a browser → revocation, after which the
//! resource server refuses. (The TS SDK refreshes on a 401; the Python SDK starts a new login
//! on a 401, so its driver marks the token expired, and the SDK refreshes before the call.)
//! Each as a public client (`none`) and as a confidential one (`client_secret_basic`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use harness::browser::{js_dir, node};
use harness::stack::{Stack, StackOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The Python of the project's virtual environment (`E2E_PYTHON`, set by scripts/test.sh).
fn python() -> PathBuf {
    std::env::var_os("E2E_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("py")
                .join(".venv")
                .join("bin")
                .join("python")
        })
}

async fn run_driver(
    program: PathBuf,
    script: PathBuf,
    server_url: &str,
    client_type: &str,
    extra: &[&str],
) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&program)
            .arg(&script)
            .args([
                "--server-url",
                server_url,
                "--client-type",
                client_type,
                "--timeout-ms",
                "180000",
            ])
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("driver exceeded 240 s")
    .unwrap_or_else(|e| {
        panic!(
            "cannot start {}: {e} (run scripts/test.sh to install it)",
            program.display()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary from {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                script.display()
            )
        });
    assert_eq!(
        summary["ok"],
        true,
        "{}\nstderr:\n{stderr}",
        serde_json::to_string_pretty(&summary).unwrap()
    );
    assert!(out.status.success());
    summary
}

fn steps(summary: &Value) -> Vec<String> {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == true)
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect()
}

/// The details a driver recorded for `step`.
fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {summary}"))
}

/// Runs one SDK's driver against a fresh stack and checks what it did, not just that each
/// step ran: discovery found our issuer, the client registered with the method asked for,
/// the authorization request carried S256 PKCE and the resource, the redirect carried `iss`,
/// the refresh rotated the refresh token. Returns the driver's summary.
async fn flow_with(sdk: &str, client_type: &str, extra: &[&str]) -> Value {
    let stack = Stack::start_with(StackOptions {
        resource_server: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let summary = match sdk {
        "typescript" => {
            run_driver(
                node(),
                js_dir().join("mcp-client.mjs"),
                &stack.resource,
                client_type,
                extra,
            )
            .await
        }
        _ => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("py")
                .join("mcp_client.py");
            run_driver(python(), script, &stack.resource, client_type, extra).await
        }
    };
    let done = steps(&summary);
    for step in [
        "login",
        "initialize",
        "tools_list",
        "auth_status",
        "list_tasks",
        "refresh",
        "revoke",
        "after_revoke",
    ] {
        assert!(
            done.iter().any(|s| s == step),
            "{sdk}/{client_type}: step {step} missing in {done:?}"
        );
    }
    assert_eq!(summary["client_type"], client_type);
    let who = format!("{sdk}/{client_type}");
    let login = step(&summary, "login");
    assert_eq!(login["issuer"], stack.issuer(), "{who}: {login}");
    let (method, secret) = match client_type {
        "confidential" => ("client_secret_basic", true),
        _ => ("none", false),
    };
    assert_eq!(
        login["token_endpoint_auth_method"], method,
        "{who}: {login}"
    );
    assert_eq!(login["has_client_secret"], secret, "{who}: {login}");
    assert_eq!(login["redirect_has_iss"], true, "{who}: RFC 9207");
    assert_eq!(
        login["callback_received"], true,
        "{who}: the code reached the client's own loopback listener"
    );
    assert_eq!(login["has_refresh_token"], true, "{who}: {login}");
    let authorize = &login["authorize"];
    assert_eq!(
        authorize["resource"],
        stack.resource.as_str(),
        "{who}: {authorize}"
    );
    assert_eq!(authorize["code_challenge_method"], "S256", "{who}");
    assert_eq!(authorize["has_code_challenge"], true, "{who}");
    assert_eq!(authorize["has_state"], true, "{who}");
    let refresh = step(&summary, "refresh");
    assert_eq!(refresh["new_access_token"], true, "{who}: {refresh}");
    assert_eq!(refresh["refresh_token_rotated"], true, "{who}: {refresh}");
    summary
}

async fn flow(sdk: &str, client_type: &str) {
    let summary = flow_with(sdk, client_type, &[]).await;
    let initialize = step(&summary, "initialize");
    assert!(
        ["2025-06-18", "2025-11-25"]
            .contains(&initialize["protocol_version"].as_str().unwrap_or("")),
        "{sdk}/{client_type}: {initialize}"
    );
}

#[tokio::test]
async fn typescript_sdk_public_client() {
    flow("typescript", "public").await;
}

#[tokio::test]
async fn typescript_sdk_confidential_client() {
    flow("typescript", "confidential").await;
}

#[tokio::test]
async fn python_sdk_public_client() {
    flow("python", "public").await;
}

#[tokio::test]
async fn python_sdk_confidential_client() {
    flow("python", "confidential").await;
}

/// The Python SDK's default mode negotiates the newest revision it speaks (2026-07-28, no
/// initialize handshake): the same whole flow must work there too.
#[tokio::test]
async fn python_sdk_in_its_default_mode_speaks_the_newest_revision() {
    let summary = flow_with("python", "public", &["--mode", "auto"]).await;
    let initialize = step(&summary, "initialize");
    assert_eq!(initialize["protocol_version"], "2026-07-28", "{initialize}");
}
