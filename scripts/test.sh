#!/usr/bin/env bash
# spar's one test command:  ./scripts/test.sh
#
#   1. services  scripts/services.sh: local Redis, PostgreSQL, MariaDB,
#                RabbitMQ, Mosquitto, NATS up (installed when missing), and
#                cmake + protoc present
#   2. python    .venv with tests/python/requirements.txt (skipped when the
#                requirements are unchanged since the last install)
#   3. build     cargo build --workspace --bins
#   4. nextest   cargo nextest run --workspace --no-fail-fast
#   5. pytest    the Python SDK tests in tests/python against target/debug/spar
#   5b. js       the JavaScript SDK tests tests/js/*.test.js (node --test) against
#                target/debug/spar; `npm ci` first when tests/js/package-lock.json
#                changed since the last install
#   6. bench     bench/run.sh --smoke: the benchmark command still starts and
#                completes one short scenario (debug binaries; no timing is
#                asserted)
#
# Stops at the first step that fails, with a non-zero exit. Idempotent.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

# cargo from rustup when the environment has not put it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
STAMP="$VENV/.spar-requirements.sha256"
JS_DIR="$ROOT/tests/js"
JS_STAMP="$JS_DIR/node_modules/.spar-package-lock.sha256"

# ---------------------------------------------------------- step plumbing

STEP=""
STEP_START=$SECONDS
SUMMARY=()

begin() {
  STEP="$1"
  STEP_START=$SECONDS
  printf '\n==== [%s] %s ====\n' "$(date +%H:%M:%S)" "$STEP"
}

end() {
  local took=$((SECONDS - STEP_START))
  SUMMARY+=("$(printf '%-8s ok      %4ss' "$STEP" "$took")")
  printf '==== %s: ok (%ss)\n' "$STEP" "$took"
  STEP=""
}

on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$STEP" ]; then
    SUMMARY+=("$(printf '%-8s FAILED  %4ss  (exit %s)' "$STEP" "$((SECONDS - STEP_START))" "$rc")")
  fi
  if [ "${#SUMMARY[@]}" -gt 0 ]; then
    printf '\n==== summary (%ss in all) ====\n' "$SECONDS"
    printf '%s\n' "${SUMMARY[@]}"
  fi
  if [ "$rc" -ne 0 ]; then
    printf 'scripts/test.sh: FAILED in step %s (exit %s)\n' "${STEP:-?}" "$rc" >&2
  fi
}
trap on_exit EXIT

# ------------------------------------------------------------------ steps

setup_venv() {
  local want
  want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
      && "$VENV/bin/python" -c 'import dapr, pytest' >/dev/null 2>&1; then
    echo "python: $VENV is up to date with tests/python/requirements.txt"
    return 0
  fi

  # Debian's own python3 needs python3-venv for `-m venv` (pyenv's has it).
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "python: installing python3-venv"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
  fi

  # Requirements changed (or no/broken venv): build it afresh, so packages
  # dropped from the requirements do not linger.
  echo "python: creating $VENV ($(python3 --version 2>&1))"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
  printf '%s\n' "$want" >"$STAMP"
  "$VENV/bin/python" -m pip list --disable-pip-version-check --format=freeze \
    | grep -Ei '^(dapr|pytest|pytest-timeout|grpcio|protobuf)=' | tr '\n' ' '
  echo
}

setup_node_modules() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "js: node and npm are needed (node 20 or later)" >&2
    return 1
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    echo "js: node $(node --version) is too old, 20 or later is needed" >&2
    return 1
  fi
  local want
  want="$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$JS_STAMP" ] && [ "$(cat "$JS_STAMP")" = "$want" ]; then
    echo "js: tests/js/node_modules is up to date with package-lock.json (node $(node --version))"
    return 0
  fi
  # npm ci removes node_modules and installs exactly the lock file.
  echo "js: npm ci in tests/js (node $(node --version), npm $(npm --version))"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want" >"$JS_STAMP"
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "rust: cargo-nextest missing, installing it from crates.io"
    cargo install --locked cargo-nextest
  fi
}

# 1.
begin services
./scripts/services.sh
end

# 2.
begin python
setup_venv
end

# 3.
begin build
cargo --version
cargo build --workspace --bins
end

# 4.
begin nextest
ensure_nextest
cargo nextest run --workspace --no-fail-fast
end

# 5.
begin pytest
SPAR_BIN="$TARGET_DIR/debug/spar" "$VENV/bin/python" -m pytest -q tests/python
end

# 5b.
begin js
setup_node_modules
# Files named by the shell: node 20 searches a directory argument, node 21+
# takes it as a glob matching only the directory (nodejs/node#50219).
SPAR_BIN="$TARGET_DIR/debug/spar" node --test tests/js/*.test.js
end

# 6.
begin bench
./bench/run.sh --smoke
end
