//! `bench`: measures the stack under load and prints figures (DESIGN §7: performance is
//! measured by a command, never by timed tests). It starts the mock TaskManager, the auth
//! server (sled in a temporary data dir) and the resource server from the same target folder,
//! on loopback ports, then runs fixed-size phases, each bounded in count and in time:
//!
//! registration, full logins (consent + TaskManager login + callback + code redemption),
//! refresh rotation, introspection, token exchange, and MCP `tools/call` through the resource
//! server. It prints throughput and latency percentiles per phase and the servers' memory.
//!
//! Run it with `scripts/bench.sh` (release build); `bench --help` lists the knobs. It exits
//! non-zero when any request failed, so a figure is never printed for broken behaviour.

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use harness::stack::{Client, Stack, StackOptions};
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Load figures for the auth server and the resource server.
#[derive(Debug, Parser)]
#[command(name = "bench", about)]
struct Args {
    /// Requests per phase (registration, refresh, introspection, exchange, MCP calls).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Full browser logins (each one a login family used by the later phases).
    #[arg(long, default_value_t = 200)]
    logins: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A phase stops issuing requests after this many seconds.
    #[arg(long, default_value_t = 60)]
    phase_seconds: u64,
}

/// One login's current tokens (refresh rotates them).
struct Family {
    refresh: String,
    access: String,
}

/// What one phase measured.
struct Report {
    name: &'static str,
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
}

impl Report {
    fn print(&self) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| -> String {
            if l.is_empty() {
                return "-".into();
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            ms(l[i])
        };
        let done = l.len() + self.errors;
        let rate = done as f64 / self.wall.as_secs_f64().max(1e-9);
        println!(
            "{:<34} {:>6} {:>6} {:>8.2}s {:>9.0} {:>9} {:>9} {:>9} {:>9}",
            self.name,
            done,
            self.errors,
            self.wall.as_secs_f64(),
            rate,
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0),
        );
        if let Some(e) = &self.first_error {
            println!("{:<34} first error: {e}", "");
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1000.0)
}

/// Runs `op(i)` for `i` in `0..n`, `concurrency` at a time, until done or `budget` is spent.
async fn phase<F, Fut>(
    name: &'static str,
    n: usize,
    concurrency: usize,
    budget: Duration,
    op: F,
) -> Report
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    let results: Vec<(Duration, Result<()>)> = futures::stream::iter(0..n)
        .take_while(|_| futures::future::ready(started.elapsed() < budget))
        .map(|i| {
            let op = &op;
            async move {
                let t = Instant::now();
                let r = op(i).await;
                (t.elapsed(), r)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let wall = started.elapsed();
    let mut report = Report {
        name,
        latencies: Vec::with_capacity(results.len()),
        errors: 0,
        first_error: None,
        wall,
    };
    for (took, r) in results {
        match r {
            Ok(()) => report.latencies.push(took),
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    report.print();
    report
}

/// Fails unless the answer is 2xx; returns its JSON body.
async fn json_ok(r: reqwest::Response) -> Result<Value> {
    let status = r.status();
    if !status.is_success() {
        bail!("HTTP {status}: {}", r.text().await.unwrap_or_default());
    }
    Ok(r.json().await?)
}

fn field(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no `{key}` in {v}"))
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB, from `/proc`.
fn memory_mib(pid: Option<u32>) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib = |key: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let budget = Duration::from_secs(args.phase_seconds.max(1));
    let c = args.concurrency.max(1);
    let mut errors = 0;
    let logins = args.logins.max(1);
    if cfg!(debug_assertions) {
        println!("note: a debug build; use scripts/bench.sh for release figures");
    }
    let stack = Stack::start_with(StackOptions {
        // Registration is rate limited per IP in production; the benchmark measures the work.
        auth_args: vec!["--registration-rate-per-minute".into(), "100000000".into()],
        resource_server: true,
        ..StackOptions::default()
    })
    .await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "stack: auth-server {} (sled), resource-server {}, mock TaskManager {}; {cores} cores; \
         {c} in flight",
        stack.issuer(),
        stack.resource,
        stack.tm.url
    );
    println!(
        "{:<34} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase", "n", "errors", "wall", "req/s", "p50", "p90", "p99", "max"
    );

    errors += phase("register (RFC 7591)", args.requests, c, budget, |i| {
        let stack = &stack;
        async move {
            let body = json!({
                "client_name": format!("bench {i}"),
                "redirect_uris": ["http://127.0.0.1:33418/callback"],
                "token_endpoint_auth_method": "none",
            });
            let (status, v) = stack.register_raw(&body).await?;
            if status != StatusCode::CREATED {
                bail!("HTTP {status}: {v}");
            }
            Ok(())
        }
    })
    .await
    .errors;

    let client: Client = stack.public_client().await?;
    let families: Vec<Mutex<Option<Family>>> = (0..logins).map(|_| Mutex::new(None)).collect();
    errors += phase("login (consent+TaskManager+code)", logins, c, budget, |i| {
        let (stack, client, families) = (&stack, &client, &families);
        async move {
            let tokens = stack.tokens(client).await?;
            *families[i].lock().await = Some(Family {
                refresh: field(&tokens, "refresh_token")?,
                access: field(&tokens, "access_token")?,
            });
            Ok(())
        }
    })
    .await
    .errors;
    let families: Vec<Mutex<Family>> = families
        .into_iter()
        .filter_map(|f| f.into_inner())
        .map(Mutex::new)
        .collect();
    if families.is_empty() {
        bail!("no login succeeded; nothing to measure further");
    }
    let family = |i: usize| &families[i % families.len()];

    errors += phase("refresh (rotation)", args.requests, c, budget, |i| {
        let (stack, client) = (&stack, &client);
        async move {
            // One family's chain is sequential (each token is used once); families overlap.
            let mut f = family(i).lock().await;
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", f.refresh.as_str()),
            ];
            let v = json_ok(stack.token(client, &form).await?).await?;
            f.refresh = field(&v, "refresh_token")?;
            f.access = field(&v, "access_token")?;
            Ok(())
        }
    })
    .await
    .errors;

    let mut accesses = Vec::with_capacity(families.len());
    for f in &families {
        accesses.push(f.lock().await.access.clone());
    }
    let access = |i: usize| accesses[i % accesses.len()].as_str();

    errors += phase("introspection (RFC 7662)", args.requests, c, budget, |i| {
        let stack = &stack;
        async move {
            let v = stack.introspect(access(i)).await?;
            if v["active"] != true {
                bail!("inactive: {v}");
            }
            Ok(())
        }
    })
    .await
    .errors;

    errors += phase("token exchange (RFC 8693)", args.requests, c, budget, |i| {
        let stack = &stack;
        async move { json_ok(stack.exchange(access(i)).await?).await.map(drop) }
    })
    .await
    .errors;

    // One MCP session (the official Rust SDK client) per login, shared by the calls.
    let mut sessions = Vec::new();
    for token in &accesses {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(stack.resource.clone())
                .auth_header(token.clone()),
        );
        sessions.push(ClientConfig::default().serve(transport).await?);
    }
    errors += phase("MCP tools/call list_tasks", args.requests, c, budget, |i| {
        let session = &sessions[i % sessions.len()];
        async move {
            let result = session
                .call_tool(CallToolRequestParams::new("list_tasks"))
                .await?;
            if result.is_error == Some(true) {
                bail!("tool error: {:?}", result.content);
            }
            Ok(())
        }
    })
    .await
    .errors;
    for s in sessions {
        let _ = s.cancel().await;
    }

    println!("memory (resident now / peak):");
    let servers = [Some(&stack.tm), stack.auth.as_ref(), stack.rs.as_ref()];
    for server in servers.into_iter().flatten() {
        match memory_mib(server.pid()) {
            Some((rss, peak)) => {
                println!("  {:<18} {rss:>7.1} MiB / {peak:>7.1} MiB", server.name())
            }
            None => println!("  {:<18} unavailable (no /proc)", server.name()),
        }
    }
    if errors > 0 {
        bail!("{errors} requests failed (first errors above)");
    }
    Ok(())
}
