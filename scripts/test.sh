#!/usr/bin/env bash
# The one test command of the project (README names it; .ci/run calls exactly it).
#
#   scripts/test.sh
#
# Idempotent: it installs only what is missing, then runs everything, and exits non-zero on the
# first failure:
#   1. cargo fmt --check, cargo clippy -D warnings          (fast fail)
#   2. Debian's chromium (apt-get, only when /usr/bin/chromium is missing; needs root)
#   3. tests/js: npm ci when node_modules is missing or older than package-lock.json
#   4. tests/py: a virtualenv at tests/py/.venv with requirements.txt, when missing or stale
#   5. syntax checks of the JS and Python drivers, and the JS tooling's self-test
#      (oidc-op + browser-login in headless chromium)
#   6. cargo build --workspace --all-targets (the binaries the black-box tests spawn, and the tests)
#   7. the MCP conformance suite (tests/conformance: npm ci when stale, then run.mjs against the
#      built stack, browser login included)
#   8. cargo test --workspace
#   9. a smoke run of the benchmark command (debug build, a few requests per phase: it must
#      complete every phase without an error; figures come from scripts/bench.sh)
# Every step is bounded in time; the whole run stays well under 30 minutes on 2 cores.
#
# Environment for the Rust end-to-end tests (exported here; override from outside if needed):
#   E2E_NODE      node executable                        (default: node)
#   E2E_JS_DIR    absolute path of tests/js
#   E2E_PYTHON    absolute path of the venv's python
#   E2E_CHROMIUM  Debian's chromium                      (default: /usr/bin/chromium)
# Knobs: SKIP_LINT=1 skips step 1 (local iteration only; CI always lints).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START=$SECONDS
section() {
  printf '\n==== %s  (t=%ss) ====\n' "$*" "$((SECONDS - START))"
}
die() {
  printf '\nscripts/test.sh: FAILED: %s\n' "$*" >&2
  exit 1
}
# run LIMIT_SECONDS CMD...: a step with a hard time limit and a clear message when it fails.
run() {
  local limit=$1
  shift
  local rc=0
  timeout --kill-after=30 "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    die "'$*' did not finish within ${limit}s"
  elif [ "$rc" -ne 0 ]; then
    die "'$*' exited with $rc"
  fi
}

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export E2E_NODE="${E2E_NODE:-node}"
export E2E_JS_DIR="${E2E_JS_DIR:-$ROOT/tests/js}"
export E2E_PYTHON="${E2E_PYTHON:-$ROOT/tests/py/.venv/bin/python}"
export E2E_CHROMIUM="${E2E_CHROMIUM:-/usr/bin/chromium}"
# playwright-core never downloads a browser; say so anyway for any tool that looks at it.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

section "toolchain"
cargo --version
rustc --version
node --version || die "node is missing"
npm --version 2>/dev/null || die "npm is missing"
python3 --version || die "python3 is missing"

if [ "${SKIP_LINT:-0}" != "1" ]; then
  section "cargo fmt --check"
  run 300 cargo fmt --all -- --check

  section "cargo clippy -D warnings"
  run 1200 cargo clippy --workspace --all-targets -- -D warnings
fi

# apt_install PKG...: Debian packages the tests need (root; the package index is read once).
APT_UPDATED=
apt_install() {
  [ "$(id -u)" -eq 0 ] || die "$* missing and installing needs root (apt-get install $*)"
  command -v apt-get >/dev/null || die "$* missing and there is no apt-get to install it"
  echo "installing Debian's $*"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$APT_UPDATED" ]; then
    run 600 apt-get update -q
    APT_UPDATED=1
  fi
  run 1200 apt-get install -y -q "$@"
}

section "chromium"
if [ ! -x "$E2E_CHROMIUM" ]; then
  if [ "$E2E_CHROMIUM" != "/usr/bin/chromium" ]; then
    die "E2E_CHROMIUM=$E2E_CHROMIUM does not exist"
  fi
  apt_install chromium
  [ -x /usr/bin/chromium ] || die "apt-get installed chromium but /usr/bin/chromium is still missing"
fi
run 60 "$E2E_CHROMIUM" --version

# npm_ci DIR: installs DIR's node packages from its lockfile unless they are already current.
npm_ci() {
  local dir=$1 stamp="$1/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ]; then
    (cd "$dir" && run 900 npm ci --no-audit --no-fund)
  else
    echo "node_modules is up to date"
  fi
}

section "tests/js: npm ci"
JS="$ROOT/tests/js"
npm_ci "$JS"

section "tests/py: virtualenv"
PY="$ROOT/tests/py"
STAMP="$PY/.venv/.requirements.installed"
if [ ! -x "$PY/.venv/bin/python" ]; then
  # Debian ships venv's pip bootstrap separately (python3-venv).
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  rm -rf "$PY/.venv"
  run 300 python3 -m venv "$PY/.venv"
fi
if [ ! -f "$STAMP" ] || [ "$PY/requirements.txt" -nt "$STAMP" ]; then
  run 900 "$PY/.venv/bin/python" -m pip install --disable-pip-version-check -q -r "$PY/requirements.txt"
  touch "$STAMP"
else
  echo "virtualenv is up to date"
fi
[ -x "$E2E_PYTHON" ] || die "E2E_PYTHON=$E2E_PYTHON is not executable"

section "drivers: syntax checks"
for f in "$JS"/*.mjs; do
  run 60 "$E2E_NODE" --check "$f"
done
run 60 "$E2E_PYTHON" -m py_compile "$PY/mcp_client.py"
run 60 "$E2E_PYTHON" -c "import mcp.client.auth, mcp.client.streamable_http, httpx2"
echo "ok"

section "tests/js: self-test (oidc-op + browser-login in headless chromium)"
run 300 "$E2E_NODE" --test --test-reporter=spec "$JS/selftest.test.mjs"

section "cargo build (binaries and tests)"
run 1200 cargo build --workspace --bins --all-targets

section "tests/conformance: MCP conformance suite (server + authorization-server scenarios)"
CONF="$ROOT/tests/conformance"
npm_ci "$CONF"
run 720 "$E2E_NODE" "$CONF/run.mjs"

section "cargo test"
run 1200 cargo test --workspace --no-fail-fast

section "benchmark command: smoke run"
run 180 target/debug/bench --requests 50 --logins 5 --phase-seconds 30

section "all tests passed in $((SECONDS - START))s"
