#!/usr/bin/env python3
"""The whole MCP authorization flow driven by the official Python SDK (`mcp` 2.x from PyPI).

Same steps, flags and JSON summary as tests/js/mcp-client.mjs, with the Python SDK's pieces:
`mcp.client.auth.OAuthClientProvider` (an httpx2 auth flow) with an in-memory `TokenStorage`, a
redirect handler that runs `node tests/js/browser-login.mjs` (headless Chromium) as a
subprocess, a callback handler that returns the code, state and RFC 9207 `iss` from the loopback
redirect, and the streamable HTTP client transport under `mcp.Client`.

    python tests/py/mcp_client.py --server-url http://127.0.0.1:PORT/mcp
        [--client-type public|confidential] [--username alice] [--password password]
        [--screenshot-dir DIR] [--timeout-ms 180000] [--revoke-wait-ms 30000]
        [--mode legacy|auto] [--tool-args NAME=JSON]... [--bypass-csp]

Steps: login (401, discovery, dynamic registration, browser login, code exchange: all inside
the first request of the session), initialize, tools_list, auth_status, list_tasks, refresh,
revoke, after_revoke, refresh_after_revoke. The refresh step makes the stored access token
worthless *and* expired: the Python SDK refreshes ahead of a request when its token has expired
(on a plain 401 it would start a new browser login instead), so this is how it is made to use
its refresh token; the step fails if a browser login happens instead.

Environment: E2E_NODE (default `node`), E2E_JS_DIR (default ../js beside this file), and
E2E_CHROMIUM, passed on to browser-login.mjs.

Output: progress on stderr; exactly one JSON document on stdout at the end:
  {"ok": bool, "sdk": "python", "client_type": "...", "steps": [{"step", "ok", ...}], "error"?}
Exit code 0 when every step passed, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[mcp_client.py] {msg}", file=sys.stderr, flush=True)


class MemoryStorage(TokenStorage):
    """Keeps tokens and client information in memory, exactly as the SDK hands them over."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class CallbackListener:
    """The client's loopback redirect URI (RFC 8252 §7.3): a small HTTP listener on 127.0.0.1
    that records each request to /callback and answers the browser with a plain page."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.arrivals: asyncio.Queue[str] = asyncio.Queue()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            if urlparse(target).path == "/callback":
                await self.arrivals.put(f"http://127.0.0.1:{self.port}{target}")
                body, status = b"<!doctype html><title>Signed in</title><p>Signed in. You can close this window.</p>", "200 OK"
            else:
                body, status = b"not found", "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    async def next_arrival(self, timeout: float) -> str:
        return await asyncio.wait_for(self.arrivals.get(), timeout=timeout)

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()


class BrowserLogin:
    """Redirect and callback handlers: the 'browser' is browser-login.mjs in headless Chromium,
    which delivers the final redirect to the real loopback listener."""

    def __init__(
        self,
        listener: CallbackListener,
        username: str,
        password: str,
        screenshot_dir: str | None,
        bypass_csp: bool = False,
    ) -> None:
        self.listener = listener
        self.redirect_uri = listener.redirect_uri
        self.bypass_csp = bypass_csp
        self.username = username
        self.password = password
        self.screenshot_dir = screenshot_dir
        self.final_url: str | None = None
        self.callback_received = False
        self.pages: list[str] = []
        self.logins = 0
        self.authorization_url: str | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        self.logins += 1
        self.authorization_url = authorization_url
        log(f"authorization URL {authorization_url}")
        node = os.environ.get("E2E_NODE", "node")
        js_dir = Path(os.environ.get("E2E_JS_DIR", HERE.parent / "js"))
        cmd = [
            node,
            str(js_dir / "browser-login.mjs"),
            "--url",
            authorization_url,
            "--username",
            self.username,
            "--password",
            self.password,
            "--expect-redirect-prefix",
            self.redirect_uri,
            "--timeout-ms",
            "60000",
            "--deliver",
        ]
        if self.screenshot_dir:
            cmd += ["--screenshot-dir", self.screenshot_dir]
        if self.bypass_csp:
            cmd.append("--bypass-csp")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=None
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("browser-login.mjs did not finish within 90 s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"browser-login.mjs failed with exit code {proc.returncode}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        # What the listener received is authoritative; the browser's view must agree with it.
        received = await self.listener.next_arrival(timeout=10)
        if received != result["url"]:
            raise RuntimeError(f"the listener received {received}, the browser went to {result['url']}")
        self.final_url = received
        self.callback_received = True
        self.pages = result.get("pages", [])

    async def callback_handler(self) -> AuthorizationCodeResult:
        if not self.final_url:
            raise RuntimeError("no redirect captured")
        query = parse_qs(urlparse(self.final_url).query)
        if "error" in query:
            raise RuntimeError(f"authorization failed: {query['error'][0]} {query.get('error_description', [''])[0]}")
        if "code" not in query:
            raise RuntimeError(f"no code in redirect {self.final_url}")
        return AuthorizationCodeResult(
            code=query["code"][0],
            state=query.get("state", [None])[0],
            iss=query.get("iss", [None])[0],
        )


def tool_text(result: Any) -> str:
    parts = []
    for c in getattr(result, "content", None) or []:
        if getattr(c, "type", None) == "text":
            parts.append(c.text)
    return "\n".join(parts)


async def call_tool(client: Client, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
    result = await client.call_tool(name, args or {})
    text = tool_text(result)
    if getattr(result, "is_error", False):
        raise RuntimeError(f"tool {name} returned an error: {text[:500]}")
    return {"text": text[:2000]}


def client_auth(info: OAuthClientInformationFull, data: dict[str, str], headers: dict[str, str]) -> None:
    method = info.token_endpoint_auth_method or ("client_secret_basic" if info.client_secret else "none")
    if method == "client_secret_basic":
        raw = f"{quote(info.client_id or '', safe='')}:{quote(info.client_secret or '', safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    elif method == "client_secret_post":
        data["client_id"] = info.client_id or ""
        data["client_secret"] = info.client_secret or ""
    else:
        data["client_id"] = info.client_id or ""




def authorize_params(url: str) -> dict[str, Any]:
    """What the SDK put in its authorization request (RFC 7636 PKCE, RFC 8707 resource)."""
    q = parse_qs(urlparse(url).query)
    return {
        "resource": q.get("resource", [None])[0],
        "code_challenge_method": q.get("code_challenge_method", [None])[0],
        "has_code_challenge": bool(q.get("code_challenge")),
        "has_state": bool(q.get("state")),
    }


class Steps:
    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    async def run(self, name: str, fn: Any) -> Any:
        started = time.monotonic()
        log(f"step {name}")
        try:
            details = await fn() or {}
        except BaseException as e:
            self.summary["steps"].append(
                {"step": name, "ok": False, "ms": int((time.monotonic() - started) * 1000), "error": describe(e)}
            )
            raise
        self.summary["steps"].append(
            {"step": name, "ok": True, "ms": int((time.monotonic() - started) * 1000), **details}
        )
        return details


def describe(e: BaseException) -> str:
    # anyio task groups wrap the real failure in exception groups.
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def flow(o: argparse.Namespace, summary: dict[str, Any]) -> None:
    steps = Steps(summary)
    listener = CallbackListener()
    await listener.start()
    try:
        await flow_with_listener(o, steps, listener)
    finally:
        await listener.close()


async def flow_with_listener(o: argparse.Namespace, steps: Steps, listener: CallbackListener) -> None:
    redirect_uri = listener.redirect_uri
    browser = BrowserLogin(listener, o.username, o.password, o.screenshot_dir, o.bypass_csp)
    storage = MemoryStorage()
    metadata = OAuthClientMetadata(
        client_name=f"MCP SDK e2e (python, {o.client_type})",
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_basic" if o.client_type == "confidential" else "none",
    )
    oauth = OAuthClientProvider(
        server_url=o.server_url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    tool_args: dict[str, Any] = o.tool_args
    http = httpx2.AsyncClient(auth=oauth, timeout=httpx2.Timeout(30.0, read=60.0))
    client = Client(streamable_http_client(o.server_url, http_client=http), mode=o.mode)

    async with http:
        entered = False
        try:

            async def login() -> dict[str, Any]:
                nonlocal entered
                await client.__aenter__()
                entered = True
                info = storage.client_info
                tokens = storage.tokens
                if browser.logins != 1:
                    raise RuntimeError(f"expected exactly one browser login, saw {browser.logins}")
                if not tokens or not tokens.access_token:
                    raise RuntimeError("no access token after the login")
                asm = oauth.context.oauth_metadata
                return {
                    "issuer": str(asm.issuer) if asm else None,
                    "client_id": info.client_id if info else None,
                    "token_endpoint_auth_method": info.token_endpoint_auth_method if info else None,
                    "has_client_secret": bool(info and info.client_secret),
                    "pages": browser.pages,
                    "redirect_has_iss": "iss" in parse_qs(urlparse(browser.final_url or "").query),
                    "callback_received": browser.callback_received,
                    "authorize": authorize_params(browser.authorization_url or ""),
                    "token_type": tokens.token_type,
                    "scope": tokens.scope,
                    "expires_in": tokens.expires_in,
                    "has_refresh_token": bool(tokens.refresh_token),
                }

            await steps.run("login", login)

            async def initialize() -> dict[str, Any]:
                si = client.server_info
                return {
                    "server": {"name": si.name, "version": si.version} if si else None,
                    "protocol_version": client.protocol_version,
                }

            await steps.run("initialize", initialize)

            async def tools_list() -> dict[str, Any]:
                result = await client.list_tools()
                names = [t.name for t in result.tools]
                for needed in ("auth_status", "list_tasks"):
                    if needed not in names:
                        raise RuntimeError(f"tool {needed} missing from tools/list: {', '.join(names)}")
                return {"tools": names}

            await steps.run("tools_list", tools_list)
            await steps.run("auth_status", lambda: call_tool(client, "auth_status", tool_args.get("auth_status")))
            await steps.run("list_tasks", lambda: call_tool(client, "list_tasks", tool_args.get("list_tasks")))

            async def refresh() -> dict[str, Any]:
                before = storage.tokens
                if not before or not before.refresh_token:
                    raise RuntimeError("no refresh token to refresh with")
                bogus = before.model_copy(update={"access_token": "invalidated-" + secrets.token_hex(8)})
                await storage.set_tokens(bogus)
                oauth.context.current_tokens = bogus
                oauth.context.token_expiry_time = time.time() - 1
                result = await call_tool(client, "auth_status", tool_args.get("auth_status"))
                after = storage.tokens
                if browser.logins != 1:
                    raise RuntimeError("the SDK started a new browser login instead of refreshing")
                if not after or after.access_token.startswith("invalidated-"):
                    raise RuntimeError("no new access token")
                if after.access_token == before.access_token:
                    raise RuntimeError("the access token did not change")
                return {
                    "new_access_token": True,
                    "refresh_token_rotated": bool(after.refresh_token) and after.refresh_token != before.refresh_token,
                    "tool_text": result["text"][:300],
                }

            await steps.run("refresh", refresh)
        finally:
            if entered:
                try:
                    await client.__aexit__(None, None, None)
                except BaseException as e:  # closing must not hide the real outcome
                    log(f"closing the session: {describe(e)}")

    asm = oauth.context.oauth_metadata
    info = storage.client_info
    revoked = storage.tokens
    assert asm is not None and info is not None and revoked is not None

    async with httpx2.AsyncClient(timeout=10.0) as raw:

        async def revoke() -> dict[str, Any]:
            if not asm.revocation_endpoint:
                raise RuntimeError("the AS metadata has no revocation_endpoint")
            status: dict[str, int] = {}
            for hint, token in (("refresh_token", revoked.refresh_token), ("access_token", revoked.access_token)):
                if not token:
                    raise RuntimeError(f"no {hint} to revoke")
                data = {"token": token, "token_type_hint": hint}
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                client_auth(info, data, headers)
                r = await raw.post(str(asm.revocation_endpoint), data=data, headers=headers)
                status[hint] = r.status_code
                if r.status_code != 200:
                    raise RuntimeError(f"revoking the {hint} answered {r.status_code}: {r.text[:300]}")
            return {"revocation_endpoint": str(asm.revocation_endpoint), "status": status}

        await steps.run("revoke", revoke)

        async def after_revoke() -> dict[str, Any]:
            started = time.monotonic()
            last = None
            while True:
                r = await raw.post(
                    o.server_url,
                    headers={
                        "Authorization": f"Bearer {revoked.access_token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream",
                    },
                    content=json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "initialize",
                            "params": {
                                "protocolVersion": "2025-06-18",
                                "capabilities": {},
                                "clientInfo": {"name": "mcp-auth-e2e-python", "version": "0.0.0"},
                            },
                        }
                    ),
                )
                last = r.status_code
                if r.status_code == 401:
                    return {
                        "status": 401,
                        "www_authenticate": r.headers.get("www-authenticate"),
                        "waited_ms": int((time.monotonic() - started) * 1000),
                    }
                if (time.monotonic() - started) * 1000 > o.revoke_wait_ms:
                    raise RuntimeError(
                        f"the resource server still answers {last} to the revoked access token after {o.revoke_wait_ms} ms"
                    )
                await asyncio.sleep(0.5)

        await steps.run("after_revoke", after_revoke)

        async def refresh_after_revoke() -> dict[str, Any]:
            data = {"grant_type": "refresh_token", "refresh_token": revoked.refresh_token or ""}
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            client_auth(info, data, headers)
            r = await raw.post(str(asm.token_endpoint), data=data, headers=headers)
            try:
                body = r.json()
            except ValueError:
                body = {}
            if r.status_code != 400 or body.get("error") != "invalid_grant":
                raise RuntimeError(f"refresh with the revoked refresh token answered {r.status_code} {r.text[:300]}")
            return {"status": r.status_code, "error": body.get("error")}

        await steps.run("refresh_after_revoke", refresh_after_revoke)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server_url_pos", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--server-url")
    p.add_argument("--client-type", choices=["public", "confidential"], default="public")
    p.add_argument("--username", default="alice")
    p.add_argument("--password", default="password")
    p.add_argument("--screenshot-dir")
    p.add_argument("--timeout-ms", type=int, default=180_000)
    p.add_argument("--revoke-wait-ms", type=int, default=30_000)
    p.add_argument("--mode", default="legacy", help="mcp.Client mode: legacy (initialize handshake) or auto")
    p.add_argument("--tool-args", action="append", default=[], metavar="NAME=JSON")
    p.add_argument("--bypass-csp", action="store_true", help="diagnosis only (see tests/js/browser-login.mjs)")
    o = p.parse_args(argv)
    o.server_url = o.server_url or o.server_url_pos
    if not o.server_url:
        p.error("--server-url is required")
    args: dict[str, Any] = {}
    for item in o.tool_args:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            p.error("--tool-args wants NAME=JSON")
        args[name] = json.loads(raw)
    o.tool_args = args
    return o


def main() -> int:
    o = parse_args(sys.argv[1:])
    summary: dict[str, Any] = {
        "ok": False,
        "sdk": "python",
        "client_type": o.client_type,
        "server_url": o.server_url,
        "steps": [],
    }

    async def bounded() -> None:
        await asyncio.wait_for(flow(o, summary), timeout=o.timeout_ms / 1000)

    try:
        asyncio.run(bounded())
        summary["ok"] = bool(summary["steps"]) and all(s["ok"] for s in summary["steps"])
    except TimeoutError:
        summary["error"] = f"timed out after {o.timeout_ms} ms"
    except BaseException as e:  # report every failure in the summary
        summary["error"] = describe(e)
        log("failed:\n" + "".join(traceback.format_exception(e)))
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
