//! The official MCP client SDKs, end to end: TypeScript (`@modelcontextprotocol/sdk`, driver
//! `tests/js/mcp-client.mjs`) and Python (`mcp` from PyPI, driver `tests/py/mcp_client.py`),
//! each starting from nothing but the resource server's URL: 401 → RFC 9728 → RFC 8414 →
//! registration → authorization with PKCE and `resource` → consent and TaskManager's login in
//! chromium → code at a loopback callback → tokens → initialize, tools/list, tools/call →
//! refresh on a 401 without a browser → revocation, after which the resource server refuses.
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

async fn flow(sdk: &str, client_type: &str) {
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
            )
            .await
        }
        _ => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("py")
                .join("mcp_client.py");
            run_driver(python(), script, &stack.resource, client_type).await
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
