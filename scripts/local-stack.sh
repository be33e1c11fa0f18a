#!/usr/bin/env bash
# The local stack on its embedded defaults: the mock TaskManager (:4321), the auth server
# (:9000, sled store in ./data) and the resource server (:8001), all on 127.0.0.1.
#
#   scripts/local-stack.sh            build, start all three, print an MCP client configuration
#
# Ctrl-C stops everything. Logs: ./data/logs/*.log. Override ports with TM_PORT, AS_PORT,
# RS_PORT. One spelling of the host is used everywhere (127.0.0.1): localhost is a different
# origin and a different issuer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TM_PORT="${TM_PORT:-4321}"
AS_PORT="${AS_PORT:-9000}"
RS_PORT="${RS_PORT:-8001}"
HOST=127.0.0.1
TM="http://$HOST:$TM_PORT"
AS="http://$HOST:$AS_PORT"
RESOURCE="http://$HOST:$RS_PORT/mcp"
DATA="$ROOT/data"
LOGS="$DATA/logs"
# Local-demo credentials only; a real deployment registers its client with setup-client.
TM_CLIENT_ID=mcp-auth-server-local
TM_CLIENT_SECRET=local-dev-secret
RS_ID=mcp-resource-server-local
RS_SECRET="${MCP_RS_CLIENT_SECRET:-local-rs-secret}"

for port in "$TM_PORT" "$AS_PORT" "$RS_PORT"; do
  if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
    echo "local-stack: port $port on $HOST is already in use; stop what runs there or set TM_PORT/AS_PORT/RS_PORT" >&2
    exit 1
  fi
done

echo "==> building (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet
BIN="$ROOT/target/debug"
mkdir -p "$LOGS"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

wait_for() { # URL NAME LOG
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "local-stack: $2 did not become ready; see $3" >&2
  tail -n 20 "$3" >&2 || true
  exit 1
}

echo "==> mock TaskManager on $TM"
"$BIN/mock-taskmanager" --host "$HOST" --port "$TM_PORT" \
  --client "$TM_CLIENT_ID:$TM_CLIENT_SECRET:$AS/oauth/callback" \
  >"$LOGS/taskmanager.out" 2>"$LOGS/taskmanager.log" &
pids+=($!)
wait_for "$TM/api/oauth/jwks" "mock TaskManager" "$LOGS/taskmanager.log"

echo "==> auth server on $AS (data in $DATA)"
"$BIN/auth-server" --port "$AS_PORT" --issuer "$AS" \
  --taskmanager-url "$TM" --client-id "$TM_CLIENT_ID" --client-secret "$TM_CLIENT_SECRET" \
  --upstream-scope "openid read write" \
  --resource "$RESOURCE" \
  --rs-client-id "$RS_ID" --rs-client-secret "$RS_SECRET" \
  --data-dir "$DATA" \
  >"$LOGS/auth-server.out" 2>"$LOGS/auth-server.log" &
pids+=($!)
wait_for "$AS/healthz" "auth server" "$LOGS/auth-server.log"

echo "==> resource server on $RESOURCE"
"$BIN/resource-server" --port "$RS_PORT" --auth-server "$AS" \
  --resource "$RESOURCE" \
  --rs-client-id "$RS_ID" --rs-client-secret "$RS_SECRET" \
  --taskmanager-url "$TM" \
  >"$LOGS/resource-server.out" 2>"$LOGS/resource-server.log" &
pids+=($!)
wait_for "http://$HOST:$RS_PORT/healthz" "resource server" "$LOGS/resource-server.log"

cat <<MSG

Local stack is up.
  TaskManager (mock)  $TM          users alice/password, bob/password, admin/admin
  Auth server         $AS          metadata: $AS/.well-known/oauth-authorization-server
  MCP server          $RESOURCE    metadata: http://$HOST:$RS_PORT/.well-known/oauth-protected-resource/mcp

Connect an MCP client to $RESOURCE. For example:
  Claude Code:     claude mcp add --transport http taskmanager $RESOURCE
  MCP Inspector:   npx @modelcontextprotocol/inspector   (Transport: Streamable HTTP, URL: $RESOURCE)
  VS Code (.vscode/mcp.json):
    { "servers": { "taskmanager": { "type": "http", "url": "$RESOURCE" } } }

The client discovers the auth server by itself, registers, and opens a browser: approve the
consent page, log in to TaskManager as alice/password, approve TaskManager's consent.
README.md ("Walk through the flow with curl") shows every step by hand.
Logs: $LOGS. Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "local-stack: a server exited; see $LOGS" >&2
