//! Spawning the workspace's binaries as child processes.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a binary may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a workspace binary. Test executables live in `target/<profile>/deps/`, the
/// binaries (built first by `cargo build --workspace --bins`) one folder up.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe
        .parent()
        .context("test exe has no parent")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build the binaries first: cargo build --workspace --bins",
            path.display()
        );
    }
    Ok(path)
}

/// A running server process; killed when dropped.
pub struct Server {
    /// Base URL read from the `listening on` line, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    child: Child,
    name: String,
}

impl Server {
    /// Starts workspace binary `name` with `args` and extra `env`, and waits for its
    /// `listening on` line.
    pub async fn start(name: &str, args: &[String], env: &[(String, String)]) -> Result<Server> {
        Self::start_program(name, &bin_path(name)?, args, env).await
    }

    /// Starts any program that follows the `listening on` convention (e.g. `node oidc-op.mjs`).
    pub async fn start_program(
        name: &str,
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Server> {
        Self::start_logged(name, program, args, env, None).await
    }

    /// As [`Server::start_program`], with stderr (the logs) appended to `log` if given.
    /// `RUST_LOG` comes from `env` if set there, else from `E2E_LOG` (default `warn`).
    pub async fn start_logged(
        name: &str,
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        log: Option<&std::path::Path>,
    ) -> Result<Server> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("open log {}", path.display()))?,
            ),
            None => Stdio::inherit(),
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_owned());
                }
            }
            bail!("{name} exited before it was listening")
        })
        .await
        .with_context(|| format!("{name} did not start within {START_TIMEOUT:?}"))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            url,
            child,
            name: name.to_owned(),
        })
    }

    /// The port the server bound.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the process and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The binary's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
