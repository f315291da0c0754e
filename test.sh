#!/usr/bin/env bash
# Runs every test of parley: formatting, lints, unit and integration tests, and the end-to-end tests in
# headless Chromium. Installs what a fresh machine lacks first (Debian packages, npm modules) and skips
# what is already there, so a warm machine starts testing at once.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)   # the recording tests read the files back
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # builds libopus for parley-client
command -v janus >/dev/null 2>&1 || need_apt+=(janus)   # the bench's Janus test (in a network namespace)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Janus must only ever run inside a test's network namespace: not as the service the package starts.
  if [[ " ${need_apt[*]} " == *" janus "* ]] && command -v systemctl >/dev/null 2>&1; then
    $sudo_cmd systemctl disable --now janus >/dev/null 2>&1 || true
  fi
fi

# Binaries for the end-to-end tests come from wherever cargo builds (CI keeps its target dir warm elsewhere).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export PARLEY_BIN="$CARGO_TARGET_DIR/release/parley"

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo build (release)"
cargo build --release --workspace --all-targets

echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --release --workspace

echo "== fuzz (cargo fuzz, ${FUZZ_SECONDS:-60} s per target)"
./fuzz/run.sh

echo "== end-to-end (headless Chromium)"
cd e2e
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
npm test
