#!/usr/bin/env node
// A second, independent upstream for the auth server: panva's certified OpenID provider
// (`oidc-provider`), so the federation code is proven against a real OP and not only against
// our own mock TaskManager.
//
//   node oidc-op.mjs [--port 0] [--host 127.0.0.1] [--client-id ID] [--client-secret SECRET]
//        [--redirect-uri URI]... [--auth-method client_secret_basic|client_secret_post]
//        [--id-token-alg RS256|ES256|EdDSA] [--access-token-ttl SECONDS] [--users alice,bob]
//
// Environment fallbacks: OIDC_OP_PORT, OIDC_OP_HOST, OIDC_OP_CLIENT_ID, OIDC_OP_CLIENT_SECRET,
// OIDC_OP_REDIRECT_URIS (comma-separated), OIDC_OP_AUTH_METHOD, OIDC_OP_ID_TOKEN_ALG,
// OIDC_OP_ACCESS_TOKEN_TTL, OIDC_OP_USERS. Defaults: client `mcp-auth-server` /
// `op-secret`, redirect URI http://127.0.0.1:9000/oauth/callback, client_secret_basic, RS256,
// users `alice`.
//
// Once bound it prints exactly one line `listening on http://127.0.0.1:PORT` on stdout (the
// convention of every server in the workspace, docs/CONTRACTS.md); logs go to stderr. Port 0
// binds an ephemeral port; the issuer is then the URL printed.
//
// What it serves (issuer = the printed URL; discovery at /.well-known/openid-configuration):
//   GET  /auth                    authorization endpoint (code flow, PKCE S256 required)
//   POST /token                   token endpoint: authorization_code, refresh_token (rotated)
//   GET  /jwks                    signing keys (id tokens signed with --id-token-alg)
//   GET  /me                      userinfo
//   POST /token/revocation        RFC 7009;  POST /token/introspection  RFC 7662
//   GET  /interaction/:uid        development login page (inputs `login`, `password`; any
//                                 password) then consent page ("Continue" button)
//   GET  /api/tasks               a tiny stand-in for TaskManager's tasks API, Bearer access
//                                 token of this OP (scope `read`); two tasks per user
// Scopes: openid, offline_access, read, write. Users: those of --users (default alice), any
// password, `sub` = the user name. A refresh token is issued with every code grant (whether or
// not offline_access was asked for) and rotated on every use.
//
// How the Rust end-to-end test points the auth server at it (upstream configured by base URL
// plus endpoint paths, DESIGN.md §5; flag names as in `auth-server --help`):
//   auth-server --taskmanager-url <printed URL> \
//       --client-id <this OP's --client-id> --client-secret <its --client-secret> \
//       --upstream-authorize-path /auth --upstream-token-path /token \
//       --upstream-jwks-path /jwks [--upstream-userinfo-path /me] \
//       --upstream-scope "openid read write" \
//       --upstream-auth-method client-secret-basic   (or client-secret-post, as --auth-method)
// with this OP started with `--redirect-uri <auth server URL>/oauth/callback`. The user's identity
// comes from the id_token: verified against /jwks, iss = the printed URL (the auth server's
// default --upstream-issuer is its --taskmanager-url, which is exactly that), aud = client id,
// sub = the user name (`alice`). The resource server's tools can use GET /api/tasks here with
// `--taskmanager-url <printed URL>`.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { forEachFlag } from './cli.mjs';

function parseArgs(argv) {
  const env = process.env;
  const o = {
    port: Number(env.OIDC_OP_PORT ?? 0),
    host: env.OIDC_OP_HOST ?? '127.0.0.1',
    clientId: env.OIDC_OP_CLIENT_ID ?? 'mcp-auth-server',
    clientSecret: env.OIDC_OP_CLIENT_SECRET ?? 'op-secret',
    redirectUris: env.OIDC_OP_REDIRECT_URIS ? env.OIDC_OP_REDIRECT_URIS.split(',').filter(Boolean) : [],
    authMethod: env.OIDC_OP_AUTH_METHOD ?? 'client_secret_basic',
    idTokenAlg: env.OIDC_OP_ID_TOKEN_ALG ?? 'RS256',
    accessTokenTtl: Number(env.OIDC_OP_ACCESS_TOKEN_TTL ?? 3600),
    users: (env.OIDC_OP_USERS ?? 'alice').split(',').filter(Boolean),
  };
  let cliRedirects = [];
  forEachFlag(argv, (flag, value, a) => {
    switch (flag) {
      case '--port': o.port = Number(value()); break;
      case '--host': o.host = value(); break;
      case '--client-id': o.clientId = value(); break;
      case '--client-secret': o.clientSecret = value(); break;
      case '--redirect-uri': case '--redirect-uris':
        cliRedirects = cliRedirects.concat(value().split(',').filter(Boolean)); break;
      case '--auth-method': o.authMethod = value(); break;
      case '--id-token-alg': o.idTokenAlg = value(); break;
      case '--access-token-ttl': o.accessTokenTtl = Number(value()); break;
      case '--users': o.users = value().split(',').filter(Boolean); break;
      case '--help': case '-h':
        process.stdout.write('see the header of oidc-op.mjs\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a}`);
    }
  });
  if (cliRedirects.length) o.redirectUris = cliRedirects;
  if (!o.redirectUris.length) o.redirectUris = ['http://127.0.0.1:9000/oauth/callback'];
  if (!['client_secret_basic', 'client_secret_post'].includes(o.authMethod)) {
    throw new Error(`--auth-method must be client_secret_basic or client_secret_post, not ${o.authMethod}`);
  }
  if (!['RS256', 'ES256', 'EdDSA'].includes(o.idTokenAlg)) throw new Error(`unsupported --id-token-alg ${o.idTokenAlg}`);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error('bad --port');
  return o;
}

async function signingKeys(preferred) {
  // The preferred algorithm's key comes first: oidc-provider signs with the first key that
  // fits the client's id_token_signed_response_alg.
  const keys = [];
  for (const alg of [preferred, ...['RS256', 'ES256', 'EdDSA'].filter((a) => a !== preferred)]) {
    const { privateKey } = alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    keys.push({ ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}` });
  }
  return { keys };
}

function log(msg) {
  process.stderr.write(`[oidc-op] ${msg}\n`);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const jwks = await signingKeys(o.idTokenAlg);

  // Bind first (port 0 = ephemeral), then build the provider for the issuer we actually got.
  let handler = (_req, res) => { res.statusCode = 503; res.end('starting'); };
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, resolve);
  });
  const { port } = server.address();
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  const issuer = `http://${hostForUrl}:${port}`;

  const users = new Set(o.users);
  const configuration = {
    clients: [{
      client_id: o.clientId,
      client_secret: o.clientSecret,
      client_name: 'MCP auth server (e2e)',
      redirect_uris: o.redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: o.authMethod,
      id_token_signed_response_alg: o.idTokenAlg,
      scope: 'openid offline_access read write',
    }],
    scopes: ['openid', 'offline_access', 'read', 'write'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    async findAccount(_ctx, sub) {
      if (!users.has(sub)) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            name: sub.charAt(0).toUpperCase() + sub.slice(1),
            preferred_username: sub,
            email: `${sub}@example.test`,
            email_verified: true,
          };
        },
      };
    },
    jwks,
    cookies: { keys: [randomUUID(), randomUUID()] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    // A refresh token with every code grant, offline_access or not, rotated on every use
    // (TaskManager's contract).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    ttl: {
      AccessToken: o.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 14 * 24 * 3600,
    },
    routes: {
      authorization: '/auth',
      token: '/token',
      jwks: '/jwks',
      userinfo: '/me',
      revocation: '/token/revocation',
      introspection: '/token/introspection',
      end_session: '/session/end',
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      ctx.body = `<!DOCTYPE html><html><head><title>oidc-op error</title></head><body><h1>oidc-op error</h1><pre>${esc(JSON.stringify(out, null, 2))}</pre></body></html>`;
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => log(`server_error: ${err?.stack || err}`));
  provider.on('grant.error', (_ctx, err) => log(`grant.error: ${err?.message} ${err?.error_description ?? ''}`));
  provider.on('authorization.error', (_ctx, err) => log(`authorization.error: ${err?.message} ${err?.error_description ?? ''}`));
  const callback = provider.callback();

  const tasksFor = (sub) => [
    { id: 1, title: `${sub}'s first task`, description: 'from oidc-op', completed: false, owner: sub },
    { id: 2, title: `${sub}'s second task`, description: 'from oidc-op', completed: true, owner: sub },
  ];
  const json = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

  handler = async (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/healthz') {
      json(res, 200, { status: 'ok' });
      return;
    }
    if (url.pathname === '/api/tasks' && req.method === 'GET') {
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization || '');
      const token = m && (await provider.AccessToken.find(m[1].trim()).catch(() => undefined));
      if (!token || token.isExpired) {
        json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
        return;
      }
      if (!token.scopes.has('read')) {
        json(res, 403, { error: 'insufficient_scope' }, { 'www-authenticate': 'Bearer error="insufficient_scope", scope="read"' });
        return;
      }
      json(res, 200, tasksFor(token.accountId));
      return;
    }
    callback(req, res);
  };

  process.stdout.write(`listening on ${issuer}\n`);
  log(`issuer ${issuer}; client ${o.clientId} (${o.authMethod}), redirect_uris ${o.redirectUris.join(' ')}, id tokens ${o.idTokenAlg}`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  process.stderr.write(`oidc-op failed: ${e?.stack || e}\n`);
  process.exit(1);
});
