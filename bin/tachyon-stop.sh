#!/usr/bin/env bash
# Stops tachyon processes started by tachyon-start.sh.
#   tachyon-stop.sh [all|local]   every master and worker started from this installation
#   tachyon-stop.sh master|worker the masters (or workers) on this machine
#   tachyon-stop.sh masters|workers  on every host of conf/masters (conf/workers), via ssh
# Processes get SIGTERM (a master completes its journal segment), then SIGKILL after 15 s.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tachyon-config.sh"

mode=${1:-all}

stop_pidfile() {
  local pidfile=$1 pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$(basename "$pidfile" .pid) did not stop in 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "Stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
}

stop_role() {
  local role=$1 f
  shopt -s nullglob
  for f in "$TACHYON_RUN_DIR"/"$role"-*.pid; do stop_pidfile "$f"; done
}

stop_remote() {
  local role=$1 list=$2 h
  for h in $(tachyon_hosts "$list"); do
    if ! tachyon_is_local_host "$h"; then
      ssh -o StrictHostKeyChecking=no "$h" "$TACHYON_HOME/bin/tachyon-stop.sh $role"
    fi
  done
  stop_role "$role"
}

case "$mode" in
  all|local) stop_role worker; stop_role master ;;
  master|worker) stop_role "$mode" ;;
  masters) stop_remote master "$TACHYON_CONF_DIR/masters" ;;
  workers) stop_remote worker "$TACHYON_CONF_DIR/workers" ;;
  *) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 1 ;;
esac
