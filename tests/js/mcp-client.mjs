#!/usr/bin/env node
// The whole MCP authorization flow driven by the official TypeScript SDK
// (`@modelcontextprotocol/sdk`: Client + StreamableHTTPClientTransport + an OAuthClientProvider),
// with a real headless Chromium for the browser part (browser-login.mjs).
//
//   node mcp-client.mjs --server-url http://127.0.0.1:PORT/mcp
//        [--client-type public|confidential] [--username alice] [--password password]
//        [--screenshot-dir DIR] [--timeout-ms 180000] [--revoke-wait-ms 30000]
//        [--tool-args NAME=JSON]... [--bypass-csp (diagnosis only, see browser-login.mjs)]
//
// public       registers dynamically (RFC 7591) with token_endpoint_auth_method "none"
// confidential registers with "client_secret_basic" and authenticates with it
//
// Steps (each one recorded in the summary; the first failure ends the run):
//   login              401 -> RFC 9728 + RFC 8414 discovery -> registration -> browser login
//                      (consent + TaskManager) -> code at a loopback redirect URI (state and
//                      RFC 9207 iss checked) -> transport.finishAuth(code)
//   initialize         connect again with the tokens; server info and protocol version
//   tools_list         tools/list
//   auth_status        tools/call auth_status
//   list_tasks         tools/call list_tasks
//   refresh            the stored access token is replaced by a bogus one, so the next call gets
//                      401 and the SDK refreshes with the refresh token (no browser); the tool
//                      call then succeeds, with a new access token and a rotated refresh token
//   revoke             RFC 7009 revocation (endpoint from the AS metadata) of the refresh token
//                      and the access token
//   after_revoke       the resource server refuses the revoked access token with 401 (polled up
//                      to --revoke-wait-ms, since the resource server may cache introspection)
//   refresh_after_revoke  the revoked refresh token is refused (invalid_grant) by the token endpoint
//
// Output: progress on stderr; exactly one JSON document on stdout at the end:
//   {"ok": true|false, "sdk": "typescript", "client_type": "...", "steps": [{"step", "ok", ...}],
//    "error"?: "..."}
// Exit code 0 when every step passed, 1 otherwise, 2 for bad arguments.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { browserLogin } from './browser-login.mjs';
import { forEachFlag } from './cli.mjs';

// What the SDK put in its authorization request (RFC 7636 PKCE, RFC 8707 resource).
function authorizeParams(href) {
  const q = new URL(href).searchParams;
  return {
    resource: q.get('resource'),
    code_challenge_method: q.get('code_challenge_method'),
    has_code_challenge: Boolean(q.get('code_challenge')),
    has_state: Boolean(q.get('state')),
  };
}

function log(msg) {
  process.stderr.write(`[mcp-client.mjs] ${msg}\n`);
}

function parseArgs(argv) {
  const o = {
    serverUrl: undefined,
    clientType: 'public',
    username: 'alice',
    password: 'password',
    screenshotDir: undefined,
    timeoutMs: 180_000,
    revokeWaitMs: 30_000,
    bypassCsp: false,
    toolArgs: {},
  };
  forEachFlag(argv, (flag, value, a) => {
    switch (flag) {
      case '--server-url': o.serverUrl = value(); break;
      case '--client-type': o.clientType = value(); break;
      case '--public': o.clientType = 'public'; break;
      case '--confidential': o.clientType = 'confidential'; break;
      case '--username': o.username = value(); break;
      case '--password': o.password = value(); break;
      case '--screenshot-dir': o.screenshotDir = value(); break;
      case '--timeout-ms': o.timeoutMs = Number(value()); break;
      case '--revoke-wait-ms': o.revokeWaitMs = Number(value()); break;
      case '--bypass-csp': o.bypassCsp = true; break;
      case '--tool-args': {
        const v = value();
        const k = v.indexOf('=');
        if (k < 1) throw new Error('--tool-args wants NAME=JSON');
        o.toolArgs[v.slice(0, k)] = JSON.parse(v.slice(k + 1));
        break;
      }
      default:
        if (!a.startsWith('--') && !o.serverUrl) o.serverUrl = a;
        else throw new Error(`unknown argument ${a}`);
    }
  });
  if (!o.serverUrl) throw new Error('--server-url is required');
  if (!['public', 'confidential'].includes(o.clientType)) throw new Error('--client-type must be public or confidential');
  return o;
}

/** In-memory OAuthClientProvider whose "browser" is headless Chromium. */
class TestOAuthProvider {
  constructor({ redirectUrl, clientType, login }) {
    this._redirectUrl = redirectUrl;
    this._clientType = clientType;
    this._login = login;
    this._clientInformation = undefined;
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this._discovery = undefined;
    this._state = undefined;
    this.pendingCode = undefined; // set by redirectToAuthorization
    this.lastRedirect = undefined;
    this.authorizationUrl = undefined;
    this.pages = [];
    this.events = [];
  }

  get redirectUrl() { return this._redirectUrl; }

  get clientMetadata() {
    return {
      client_name: `MCP SDK e2e (typescript, ${this._clientType})`,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: this._clientType === 'confidential' ? 'client_secret_basic' : 'none',
    };
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  clientInformation() { return this._clientInformation; }

  saveClientInformation(info) {
    this._clientInformation = info;
    this.events.push('saveClientInformation');
  }

  tokens() { return this._tokens; }

  saveTokens(tokens) {
    this._tokens = tokens;
    this.events.push('saveTokens');
  }

  saveCodeVerifier(v) { this._codeVerifier = v; }

  codeVerifier() {
    if (!this._codeVerifier) throw new Error('no code verifier saved');
    return this._codeVerifier;
  }

  saveDiscoveryState(s) { this._discovery = s; }

  discoveryState() { return this._discovery; }

  invalidateCredentials(scope) {
    this.events.push(`invalidateCredentials:${scope}`);
    if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._codeVerifier = undefined;
    if (scope === 'all' || scope === 'discovery') this._discovery = undefined;
  }

  async redirectToAuthorization(authorizationUrl) {
    this.authorizationUrl = authorizationUrl.href;
    log(`authorization URL ${authorizationUrl.href}`);
    const result = await this._login(authorizationUrl.href);
    this.pages = result.pages;
    this.callbackReceived = Boolean(result.callbackReceived);
    const back = new URL(result.url);
    this.lastRedirect = back.href;
    const err = back.searchParams.get('error');
    if (err) throw new Error(`authorization failed: ${err} ${back.searchParams.get('error_description') ?? ''}`);
    if (back.searchParams.get('state') !== this._state) {
      throw new Error(`state mismatch: sent ${this._state}, got ${back.searchParams.get('state')}`);
    }
    const issuer = this._discovery?.authorizationServerMetadata?.issuer;
    const iss = back.searchParams.get('iss');
    if (issuer && iss !== issuer) throw new Error(`RFC 9207 iss mismatch: metadata issuer ${issuer}, redirect iss ${iss}`);
    this.pendingCode = back.searchParams.get('code');
    if (!this.pendingCode) throw new Error(`no code in redirect ${back.href}`);
  }
}

function toolText(result) {
  return (result?.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

async function callTool(client, name, args) {
  const result = await client.callTool({ name, arguments: args ?? {} });
  if (result.isError) throw new Error(`tool ${name} returned an error: ${toolText(result).slice(0, 500)}`);
  return { text: toolText(result).slice(0, 2000), structured: result.structuredContent };
}

function clientAuth(info, params, headers) {
  const method = info.token_endpoint_auth_method ?? (info.client_secret ? 'client_secret_basic' : 'none');
  if (method === 'client_secret_basic') {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(info.client_id)}:${encodeURIComponent(info.client_secret)}`).toString('base64')}`;
  } else if (method === 'client_secret_post') {
    params.set('client_id', info.client_id);
    params.set('client_secret', info.client_secret);
  } else {
    params.set('client_id', info.client_id);
  }
}

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`mcp-client.mjs: ${e.message}\n`);
    process.exit(2);
  }
  const summary = { ok: false, sdk: 'typescript', client_type: o.clientType, server_url: o.serverUrl, steps: [] };
  const hard = setTimeout(() => {
    summary.error = `timed out after ${o.timeoutMs} ms`;
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    process.exit(1);
  }, o.timeoutMs);

  // A real loopback redirect URI (RFC 8252 §7.3): the browser is sent here at the end of the
  // login, and the code is read from what this listener receives, as a desktop client does.
  const callbacks = [];
  let callbackArrived;
  const callbackServer = createServer((req, res) => {
    const u = new URL(req.url, `http://${req.headers.host}`);
    if (u.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    callbacks.push(u.href);
    callbackArrived?.(u.href);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Signed in</title><p>Signed in. You can close this window.</p>');
  });
  await new Promise((r) => callbackServer.listen(0, '127.0.0.1', r));
  const redirectUrl = `http://127.0.0.1:${callbackServer.address().port}/callback`;
  // The next request at the listener (bounded).
  const nextCallback = (ms) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing arrived at ${redirectUrl} within ${ms} ms`)), ms);
    callbackArrived = (href) => { clearTimeout(timer); callbackArrived = undefined; resolve(href); };
  });

  const provider = new TestOAuthProvider({
    redirectUrl,
    clientType: o.clientType,
    login: async (url) => {
      const arrival = nextCallback(Math.min(90_000, o.timeoutMs));
      const result = await browserLogin({
        url,
        username: o.username,
        password: o.password,
        expectRedirectPrefix: redirectUrl,
        screenshotDir: o.screenshotDir,
        timeoutMs: Math.min(60_000, o.timeoutMs),
        bypassCsp: o.bypassCsp,
        deliver: true,
        log: (m) => process.stderr.write(`[browser-login] ${m}\n`),
      });
      // What the listener received is authoritative; the browser's view must agree with it.
      const received = await arrival;
      if (received !== result.url) throw new Error(`the listener received ${received}, the browser went to ${result.url}`);
      return { ...result, url: received, callbackReceived: true };
    },
  });

  const step = async (name, fn) => {
    const started = Date.now();
    log(`step ${name}`);
    try {
      const details = (await fn()) ?? {};
      summary.steps.push({ step: name, ok: true, ms: Date.now() - started, ...details });
    } catch (e) {
      summary.steps.push({ step: name, ok: false, ms: Date.now() - started, error: e?.message ?? String(e) });
      throw e;
    }
  };

  let client;
  let transport;
  const clientInfo = { name: 'mcp-auth-e2e-typescript', version: '0.0.0' };
  try {
    await step('login', async () => {
      const first = new StreamableHTTPClientTransport(new URL(o.serverUrl), { authProvider: provider });
      const c = new Client(clientInfo);
      let unauthorized = false;
      try {
        await c.connect(first);
      } catch (e) {
        if (!(e instanceof UnauthorizedError)) throw e;
        unauthorized = true;
      }
      if (!unauthorized) throw new Error('the resource server accepted a connection without a token');
      if (!provider.pendingCode) throw new Error('no authorization code captured');
      await first.finishAuth(provider.pendingCode);
      await first.close().catch(() => {});
      const info = provider.clientInformation();
      const meta = provider.discoveryState()?.authorizationServerMetadata;
      const tokens = provider.tokens();
      if (!tokens?.access_token) throw new Error('no access token after finishAuth');
      return {
        issuer: meta?.issuer,
        client_id: info?.client_id,
        token_endpoint_auth_method: info?.token_endpoint_auth_method ?? null,
        has_client_secret: Boolean(info?.client_secret),
        pages: provider.pages,
        redirect_has_iss: new URL(provider.lastRedirect).searchParams.has('iss'),
        callback_received: provider.callbackReceived,
        authorize: authorizeParams(provider.authorizationUrl),
        token_type: tokens.token_type,
        scope: tokens.scope ?? null,
        expires_in: tokens.expires_in ?? null,
        has_refresh_token: Boolean(tokens.refresh_token),
      };
    });

    await step('initialize', async () => {
      transport = new StreamableHTTPClientTransport(new URL(o.serverUrl), { authProvider: provider });
      client = new Client(clientInfo);
      await client.connect(transport);
      return {
        server: client.getServerVersion(),
        protocol_version: transport.protocolVersion ?? null,
        session_id: transport.sessionId ?? null,
      };
    });

    await step('tools_list', async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const needed of ['auth_status', 'list_tasks']) {
        if (!names.includes(needed)) throw new Error(`tool ${needed} missing from tools/list: ${names.join(', ')}`);
      }
      return { tools: names };
    });

    await step('auth_status', async () => callTool(client, 'auth_status', o.toolArgs.auth_status));
    await step('list_tasks', async () => callTool(client, 'list_tasks', o.toolArgs.list_tasks));

    await step('refresh', async () => {
      const before = provider.tokens();
      if (!before?.refresh_token) throw new Error('no refresh token to refresh with');
      // Make the stored access token worthless: the next request gets 401 and the SDK's auth()
      // takes the refresh_token branch (tokens?.refresh_token) without any browser.
      provider.saveTokens({ ...before, access_token: `invalidated-${randomBytes(8).toString('hex')}` });
      const login = provider.authorizationUrl;
      const result = await callTool(client, 'auth_status', o.toolArgs.auth_status);
      const after = provider.tokens();
      if (provider.authorizationUrl !== login) throw new Error('the SDK started a new browser login instead of refreshing');
      if (!after?.access_token || after.access_token.startsWith('invalidated-')) throw new Error('no new access token');
      if (after.access_token === before.access_token) throw new Error('the access token did not change');
      return {
        new_access_token: true,
        refresh_token_rotated: Boolean(after.refresh_token) && after.refresh_token !== before.refresh_token,
        tool_text: result.text.slice(0, 300),
      };
    });
    const meta = provider.discoveryState()?.authorizationServerMetadata;
    const info = provider.clientInformation();
    const revoked = { ...provider.tokens() };

    await step('revoke', async () => {
      if (!meta?.revocation_endpoint) throw new Error('the AS metadata has no revocation_endpoint');
      const out = {};
      for (const [hint, token] of [['refresh_token', revoked.refresh_token], ['access_token', revoked.access_token]]) {
        if (!token) throw new Error(`no ${hint} to revoke`);
        const params = new URLSearchParams({ token, token_type_hint: hint });
        const headers = { 'content-type': 'application/x-www-form-urlencoded' };
        clientAuth(info, params, headers);
        const r = await fetch(meta.revocation_endpoint, { method: 'POST', headers, body: params, signal: AbortSignal.timeout(10_000) });
        out[hint] = r.status;
        if (r.status !== 200) throw new Error(`revoking the ${hint} answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
      }
      return { revocation_endpoint: meta.revocation_endpoint, status: out };
    });
    await client.close().catch(() => {});
    client = undefined;

    await step('after_revoke', async () => {
      const started = Date.now();
      let last;
      for (;;) {
        const r = await fetch(o.serverUrl, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${revoked.access_token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo },
          }),
          signal: AbortSignal.timeout(10_000),
        });
        await r.body?.cancel().catch(() => {});
        last = r.status;
        if (r.status === 401) {
          return {
            status: 401,
            www_authenticate: r.headers.get('www-authenticate'),
            waited_ms: Date.now() - started,
          };
        }
        if (Date.now() - started > o.revokeWaitMs) break;
        await new Promise((res) => setTimeout(res, 500));
      }
      throw new Error(`the resource server still answers ${last} to the revoked access token after ${o.revokeWaitMs} ms`);
    });

    await step('refresh_after_revoke', async () => {
      const params = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: revoked.refresh_token });
      const headers = { 'content-type': 'application/x-www-form-urlencoded' };
      clientAuth(info, params, headers);
      const r = await fetch(meta.token_endpoint, { method: 'POST', headers, body: params, signal: AbortSignal.timeout(10_000) });
      const body = await r.json().catch(() => ({}));
      if (r.status !== 400 || body.error !== 'invalid_grant') {
        throw new Error(`refresh with the revoked refresh token answered ${r.status} ${JSON.stringify(body).slice(0, 300)}`);
      }
      return { status: r.status, error: body.error };
    });

    summary.ok = summary.steps.every((s) => s.ok);
  } catch (e) {
    summary.error = e?.stack ?? String(e);
    log(`failed: ${summary.error}`);
  } finally {
    clearTimeout(hard);
    await client?.close().catch(() => {});
    callbackServer.close();
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.ok ? 0 : 1);
}

main();
