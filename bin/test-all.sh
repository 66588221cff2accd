#!/usr/bin/env bash
# Runs every test of tachyon: lints (including the determinism bans in clippy.toml), unit,
# property, fuzz-corpus and integration tests with real processes on loopback.
# Installs and starts whatever the tests need; safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

echo "== clippy (deny warnings; determinism bans from clippy.toml)"
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --all-targets --no-fail-fast
cargo test --doc --quiet
