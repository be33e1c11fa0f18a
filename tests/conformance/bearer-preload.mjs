// Preloaded (`node --import ./bearer-preload.mjs`) into the conformance CLI for the server
// scenarios: the suite has no option for credentials, and our MCP server is a protected
// resource (every request needs `Authorization: Bearer`). Every HTTP request the CLI sends to
// CONFORMANCE_BEARER_ORIGIN gets the access token that run.mjs obtained through the real login,
// as any authorized MCP client would send it. Nothing else about the request changes (Host,
// Origin, Mcp-Session-Id and the body stay exactly as the scenario wrote them), and requests to
// other origins are left alone.
//
// How: the CLI talks HTTP through undici, both Node's built-in fetch (the MCP SDK's transport,
// raw fetch in the session-lifecycle scenario) and the `undici` package's request() (the
// DNS-rebinding scenario). Both go through undici's process-wide global dispatcher, which this
// module replaces by one with an interceptor that adds the header.
//
// Environment: CONFORMANCE_BEARER_TOKEN (the access token), CONFORMANCE_BEARER_ORIGIN
// (e.g. http://127.0.0.1:8001).

import { Agent, setGlobalDispatcher } from 'undici';

const token = process.env.CONFORMANCE_BEARER_TOKEN;
const origin = process.env.CONFORMANCE_BEARER_ORIGIN;
if (!token || !origin) {
  process.stderr.write('bearer-preload: CONFORMANCE_BEARER_TOKEN and CONFORMANCE_BEARER_ORIGIN are required\n');
  process.exit(2);
}
const wanted = new URL(origin).origin;
const value = `Bearer ${token}`;

function hasAuthorization(headers) {
  if (!headers) return false;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      return headers.some(([k]) => String(k).toLowerCase() === 'authorization');
    }
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === 'authorization') return true;
    }
    return false;
  }
  if (typeof headers[Symbol.iterator] === 'function' && typeof headers !== 'string') {
    for (const [k] of headers) if (String(k).toLowerCase() === 'authorization') return true;
    return false;
  }
  return Object.keys(headers).some((k) => k.toLowerCase() === 'authorization');
}

/** The same headers, in the same shape, plus Authorization. */
function withAuthorization(headers) {
  if (!headers) return { authorization: value };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) return [...headers, ['authorization', value]];
    return [...headers, 'authorization', value];
  }
  if (typeof headers[Symbol.iterator] === 'function') return [...headers, ['authorization', value]];
  return { ...headers, authorization: value };
}

function originOf(o) {
  try {
    return new URL(String(o)).origin;
  } catch {
    return '';
  }
}

const addBearer = (dispatch) => (opts, handler) => {
  if (originOf(opts.origin) === wanted && !hasAuthorization(opts.headers)) {
    return dispatch({ ...opts, headers: withAuthorization(opts.headers) }, handler);
  }
  return dispatch(opts, handler);
};

setGlobalDispatcher(new Agent().compose(addBearer));
