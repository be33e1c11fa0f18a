// Self-test of the browser tooling, independent of the Rust binaries (node's test runner):
// oidc-op.mjs runs a whole code flow with PKCE, browser-login.mjs gets a real headless Chromium
// through its login and consent pages to a redirect URI nothing listens on, and the code, the
// id_token, the refresh rotation and the little tasks API are checked.
//
//   node --test tests/js/selftest.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const REDIRECT = 'http://127.0.0.1:9/callback'; // discard port: nothing listens there

function startOp(args) {
  const child = spawn(process.execPath, [join(here, 'oidc-op.mjs'), '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`oidc-op did not start: ${stderr}`)), 20_000);
    child.stdout.on('data', (d) => {
      const m = /listening on (\S+)/.exec(String(d));
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`oidc-op exited with ${code}: ${stderr}`)));
  });
  return { child, url };
}

function runLogin(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'browser-login.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('browser-login hung')); }, 90_000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
}

function decode(jwt) {
  const [h, p] = jwt.split('.').slice(0, 2).map((s) => JSON.parse(Buffer.from(s, 'base64url')));
  return { header: h, payload: p };
}

for (const [method, alg] of [['client_secret_basic', 'RS256'], ['client_secret_post', 'EdDSA']]) {
  test(`oidc-op code flow through headless chromium (${method}, ${alg})`, { timeout: 120_000 }, async () => {
    const op = startOp(['--redirect-uri', REDIRECT, '--auth-method', method, '--id-token-alg', alg, '--client-id', 'c1', '--client-secret', 's1']);
    try {
      const issuer = await op.url;
      const verifier = randomBytes(32).toString('base64url');
      const auth = new URL(`${issuer}/auth`);
      const params = {
        response_type: 'code', client_id: 'c1', redirect_uri: REDIRECT, scope: 'openid read write',
        state: 'st-1', nonce: 'n-1', code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      };
      for (const [k, v] of Object.entries(params)) auth.searchParams.set(k, v);
      const shots = mkdtempSync(join(tmpdir(), 'selftest-shots-'));
      const login = await runLogin(['--url', auth.href, '--username', 'alice', '--password', 'any', '--screenshot-dir', shots]);
      assert.equal(login.code, 0, `browser-login failed:\n${login.err}`);
      const { url, pages } = JSON.parse(login.out.trim());
      assert.deepEqual(pages, ['op-login', 'op-consent']);
      assert.ok(existsSync(join(shots, 'op-login.png')));
      const back = new URL(url);
      assert.ok(url.startsWith(REDIRECT));
      assert.equal(back.searchParams.get('state'), 'st-1');
      assert.equal(back.searchParams.get('iss'), issuer);

      const headers = { 'content-type': 'application/x-www-form-urlencoded' };
      const withAuth = (body) => {
        if (method === 'client_secret_basic') headers.authorization = `Basic ${Buffer.from('c1:s1').toString('base64')}`;
        else { body.set('client_id', 'c1'); body.set('client_secret', 's1'); }
        return body;
      };
      let r = await fetch(`${issuer}/token`, {
        method: 'POST', headers,
        body: withAuth(new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier })),
      });
      const tokens = await r.json();
      assert.equal(r.status, 200, JSON.stringify(tokens));
      assert.ok(tokens.refresh_token, 'a refresh token without offline_access');
      const idt = decode(tokens.id_token);
      assert.equal(idt.header.alg, alg);
      assert.equal(idt.payload.sub, 'alice');
      assert.equal(idt.payload.iss, issuer);
      assert.equal(idt.payload.aud, 'c1');
      assert.equal(idt.payload.nonce, 'n-1');
      const jwks = await (await fetch(`${issuer}/jwks`)).json();
      assert.ok(jwks.keys.some((k) => k.kid === idt.header.kid));

      r = await fetch(`${issuer}/api/tasks`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      assert.equal(r.status, 200);
      assert.equal((await r.json()).length, 2);

      const refreshBody = () => withAuth(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }));
      r = await fetch(`${issuer}/token`, { method: 'POST', headers, body: refreshBody() });
      const next = await r.json();
      assert.equal(r.status, 200, JSON.stringify(next));
      assert.notEqual(next.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
      r = await fetch(`${issuer}/token`, { method: 'POST', headers, body: refreshBody() });
      assert.equal(r.status, 400, 'a rotated-away refresh token is refused');
    } finally {
      op.child.kill();
    }
  });
}

test('browser-login fails clearly on a page it does not know', { timeout: 120_000 }, async () => {
  const op = startOp(['--redirect-uri', REDIRECT]);
  try {
    const issuer = await op.url;
    const shots = mkdtempSync(join(tmpdir(), 'selftest-shots-'));
    // An unknown client: the OP shows an error page, which browser-login cannot get through.
    const login = await runLogin(['--url', `${issuer}/auth?client_id=nope&response_type=code&redirect_uri=${encodeURIComponent(REDIRECT)}`, '--screenshot-dir', shots, '--timeout-ms', '20000']);
    assert.equal(login.code, 1);
    assert.match(login.err, /stuck on a page it does not know/);
    assert.ok(existsSync(join(shots, 'error.png')));
  } finally {
    op.child.kill();
  }
});
