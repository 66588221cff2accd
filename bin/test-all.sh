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

# Real ZooKeeper for the fault-tolerance tests (its java also runs HDFS) (they start their own servers on loopback),
# headless Chromium with its WebDriver for the web UI test, and GlusterFS (a volume on 127.0.0.2,
# mounted with FUSE) for the under-storage tests, from Debian's packages.
missing=()
{ [ -e /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; } || missing+=(zookeeper)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v glusterd >/dev/null 2>&1 || missing+=(glusterfs-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# moto (S3) and HDFS for the under-storage tests, into a cache outside the clone.
bin/install-test-services.sh

echo "== rustfmt (rustfmt.toml)"
cargo fmt --all --check

echo "== clippy (deny warnings; determinism bans from clippy.toml)"
cargo clippy --all-targets --quiet --features s3,hdfs,proxy -- -D warnings

# The simulation build is another program: the library and the simulator under
# `--cfg madsim`, with the bans of sim/clippy-madsim/clippy.toml (madsim makes std's
# Instant virtual), into the target folder `cargo sim` uses.
echo "== clippy of the simulation build (--cfg madsim)"
madsim=(--config "target.'cfg(all())'.rustflags=['--cfg','madsim']" --target-dir target/sim)
CLIPPY_CONF_DIR=sim/clippy-madsim cargo clippy -p tachyon --lib --quiet "${madsim[@]}" -- -D warnings
CLIPPY_CONF_DIR=sim/clippy-madsim cargo clippy -p tachyon-sim --all-targets --quiet "${madsim[@]}" -- -D warnings

# The multi-host test builds its hosts from network namespaces: as root they must work, so
# the test fails instead of skipping if they do not.
if [ "$(id -u)" = 0 ]; then
  export TACHYON_REQUIRE_NETNS=1
fi

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --no-fail-fast --features sim,s3,hdfs,proxy 2>&1 | tee "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
