#!/usr/bin/env bash
# Sourced by the other bin/ scripts: locates TACHYON_HOME and the conf folder, sources
# conf/tachyon-env.sh (creating it from the template the first time) and finds the binary.

TACHYON_BIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export TACHYON_HOME=${TACHYON_HOME:-$(cd "$TACHYON_BIN_DIR/.." && pwd)}
export TACHYON_CONF_DIR=${TACHYON_CONF_DIR:-$TACHYON_HOME/conf}
export TACHYON_LOGS_DIR=${TACHYON_LOGS_DIR:-$TACHYON_HOME/logs}
export TACHYON_RUN_DIR=${TACHYON_RUN_DIR:-$TACHYON_HOME/run}

if [[ ! -f "$TACHYON_CONF_DIR/tachyon-env.sh" && -f "$TACHYON_CONF_DIR/tachyon-env.sh.template" ]]; then
  cp "$TACHYON_CONF_DIR/tachyon-env.sh.template" "$TACHYON_CONF_DIR/tachyon-env.sh"
fi
if [[ -f "$TACHYON_CONF_DIR/tachyon-env.sh" ]]; then
  # shellcheck source=/dev/null
  . "$TACHYON_CONF_DIR/tachyon-env.sh"
fi

# The binary: $TACHYON_BIN if set, else the release build (built on first use).
tachyon_find_binary() {
  if [[ -n "${TACHYON_BIN:-}" ]]; then
    return 0
  fi
  local target=${CARGO_TARGET_DIR:-$TACHYON_HOME/target}
  TACHYON_BIN=$target/release/tachyon
  if [[ "${1:-}" == "--build" || ! -x "$TACHYON_BIN" ]]; then
    if ! command -v cargo >/dev/null 2>&1; then
      echo "tachyon: no binary at $TACHYON_BIN and no cargo to build it" >&2
      exit 1
    fi
    if [[ ! -x "$TACHYON_BIN" ]]; then
      echo "Building tachyon (release; the first build takes a few minutes)..." >&2
    fi
    (cd "$TACHYON_HOME" && cargo build --release --quiet --features s3,hdfs --bin tachyon) || exit 1
  fi
  export TACHYON_BIN
}

# True for addresses on this machine, which are started locally instead of through ssh.
tachyon_is_local_host() {
  case "$1" in
    localhost|127.*|"$(hostname 2>/dev/null)"|"$(hostname -f 2>/dev/null)") return 0 ;;
    *) return 1 ;;
  esac
}

# Hosts listed in a conf file, without comments and blank lines.
tachyon_hosts() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$' || true
}
