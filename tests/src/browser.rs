//! The real browser: Debian's chromium, driven headless by `tests/js/browser-login.mjs`
//! (playwright-core). Used where a person would click: our consent page, TaskManager's login
//! and consent, another OpenID provider's pages.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The folder of the JS tooling (`E2E_JS_DIR`, else `tests/js` of this crate).
pub fn js_dir() -> PathBuf {
    std::env::var_os("E2E_JS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js"))
}

/// The node executable (`E2E_NODE`, else `node`).
pub fn node() -> PathBuf {
    std::env::var_os("E2E_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// Where screenshots go: `tests/artifacts/screenshots` (ignored by git; README links one).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join("screenshots")
}

#[derive(Deserialize)]
struct Outcome {
    url: String,
}

/// Options of one browser run.
pub struct RealLogin<'a> {
    pub url: &'a Url,
    pub username: &'a str,
    pub password: &'a str,
    pub deny: bool,
    pub expect_prefix: &'a str,
    /// `KIND=FILE.png` screenshots to keep (kinds: consent, tm-login, tm-consent, error).
    pub screenshots: &'a [(&'a str, &'a str)],
}

/// Runs the browser from `url` until it is sent to `expect_prefix`; returns that URL.
pub async fn real_login(opts: RealLogin<'_>) -> Result<Url> {
    let script = js_dir().join("browser-login.mjs");
    let mut cmd = tokio::process::Command::new(node());
    cmd.arg(&script)
        .arg("--url")
        .arg(opts.url.as_str())
        .arg("--username")
        .arg(opts.username)
        .arg("--password")
        .arg(opts.password)
        .arg("--expect-redirect-prefix")
        .arg(opts.expect_prefix)
        .arg("--timeout-ms")
        .arg("45000")
        .kill_on_drop(true);
    if opts.deny {
        cmd.arg("--deny");
    }
    // The script saves `error.png` into --screenshot-dir when a run fails (e.g. on an error
    // page); it is copied to the requested name below.
    let failure_dir = tempfile::tempdir()?;
    cmd.arg("--screenshot-dir").arg(failure_dir.path());
    let dir = screenshot_dir();
    if !opts.screenshots.is_empty() {
        std::fs::create_dir_all(&dir)?;
        for (kind, file) in opts.screenshots.iter().filter(|(k, _)| *k != "error") {
            cmd.arg("--screenshot")
                .arg(format!("{kind}={}", dir.join(file).display()));
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .context("browser run exceeded 60 s")?
        .context("could not start node; install Node and run `npm ci` in tests/js")?;
    if !out.status.success() {
        if let Some((_, file)) = opts.screenshots.iter().find(|(k, _)| *k == "error") {
            std::fs::copy(failure_dir.path().join("error.png"), dir.join(file))
                .context("the failed run left no error.png")?;
        }
        bail!(
            "browser-login failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON from browser-login")?;
    let outcome: Outcome = serde_json::from_str(line)?;
    Ok(Url::parse(&outcome.url)?)
}
