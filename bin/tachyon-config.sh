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
# Alluxio's name for the same file is read too (after tachyon-env.sh, so it wins).
for env_file in tachyon-env.sh alluxio-env.sh; do
  if [[ -f "$TACHYON_CONF_DIR/$env_file" ]]; then
    # shellcheck source=/dev/null
    . "$TACHYON_CONF_DIR/$env_file"
  fi
done
unset env_file

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
    (cd "$TACHYON_HOME" && cargo build --release --quiet --features s3,hdfs,proxy --bin tachyon) || exit 1
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
  [[ -f "$1" ]] || return 0
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$' || true
}

# Runs a command on another host: `tachyon_ssh HOST COMMAND`. $TACHYON_SSH replaces the
# ssh command line (word-split), e.g. to pass a key or a port.
tachyon_ssh() {
  local host=$1; shift
  # shellcheck disable=SC2086
  ${TACHYON_SSH:-ssh -o StrictHostKeyChecking=no} "$host" "$@"
}

# The ID of this machine's current boot: a pid in a pid file means something only on the
# machine and boot that wrote it (TACHYON_HOME may be shared by several hosts over NFS).
tachyon_boot_id() {
  cat /proc/sys/kernel/random/boot_id 2>/dev/null || hostname
}

# tachyon_pid_running PID ROLE: true while PID is a live tachyon ROLE process. A zombie
# (killed, not yet reaped) or a pid since reused by another program is not.
tachyon_pid_running() {
  local pid=$1 role=$2 state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  if [[ -d /proc/$pid ]]; then
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != Z && "$state" != X ]] || return 1
    # argv is the tachyon binary and the role.
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | awk -v role="$role" '
      NR == 1 && $0 !~ /tachyon[^\/]*$/ { exit 1 }
      NR > 1 && $0 == role { found = 1 }
      END { exit !found }'
  else
    [[ ! -d /proc/self ]] && kill -0 "$pid" 2>/dev/null
  fi
}

# tachyon_pidfile_pid FILE: the pid a pid file holds if it was written on this machine's
# current boot (else nothing).
tachyon_pidfile_pid() {
  local pid="" boot=""
  [[ -f "$1" ]] && read -r pid boot <"$1"
  if [[ -n "$pid" && ( -z "$boot" || "$boot" == "$(tachyon_boot_id)" ) ]]; then
    echo "$pid"
  fi
  return 0
}
