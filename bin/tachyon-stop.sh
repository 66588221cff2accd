#!/usr/bin/env bash
# Stops tachyon processes started by tachyon-start.sh.
#   tachyon-stop.sh [all]            workers and masters on every host of conf/workers and
#                                    conf/masters (via ssh), then all left on this machine
#   tachyon-stop.sh local            every S3 gateway, master and worker started on this machine
#   tachyon-stop.sh master|worker|proxy  the masters (workers, S3 gateways) on this machine
#   tachyon-stop.sh masters|workers  on every host of conf/masters (conf/workers), via ssh
# Processes get SIGTERM (a master completes its journal segment), then SIGKILL after 15 s.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tachyon-config.sh"

mode=${1:-all}

stop_pidfile() {
  local pidfile=$1 name pid
  name=$(basename "$pidfile" .pid)
  pid=$(tachyon_pidfile_pid "$pidfile")
  [[ -n "$pid" ]] || return 0 # written on another host sharing TACHYON_HOME, or empty
  if tachyon_pid_running "$pid" "${name%%-*}"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      tachyon_pid_running "$pid" "${name%%-*}" || break
      sleep 0.1
    done
    if tachyon_pid_running "$pid" "${name%%-*}"; then
      echo "$name did not stop in 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      # Gone means exited (a zombie's socket and files are already released).
      for _ in $(seq 1 100); do
        tachyon_pid_running "$pid" "${name%%-*}" || break
        sleep 0.1
      done
    fi
    echo "Stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# stop_role ROLE: with TACHYON_LAUNCH_HOSTNAME (one host of conf/masters or conf/workers)
# only that host's process, else every ROLE process started on this machine.
stop_role() {
  local role=$1 f
  shopt -s nullglob
  if [[ -n "${TACHYON_LAUNCH_HOSTNAME:-}" ]]; then
    f="$TACHYON_RUN_DIR/$role-$TACHYON_LAUNCH_HOSTNAME.pid"
    [[ ! -f "$f" ]] || stop_pidfile "$f"
    return 0
  fi
  for f in "$TACHYON_RUN_DIR"/"$role"-*.pid; do stop_pidfile "$f"; done
}

stop_hosts() {
  local role=$1 list=$2 h
  for h in $(tachyon_hosts "$list"); do
    if tachyon_is_local_host "$h"; then
      TACHYON_LAUNCH_HOSTNAME=$h stop_role "$role"
    else
      tachyon_ssh "$h" "TACHYON_LAUNCH_HOSTNAME=$(printf %q "$h") $(printf %q "$TACHYON_HOME/bin/tachyon-stop.sh") $role"
    fi
  done
}

case "$mode" in
  all)
    stop_hosts worker "$TACHYON_CONF_DIR/workers"
    stop_hosts master "$TACHYON_CONF_DIR/masters"
    stop_role proxy
    stop_role worker
    stop_role master
    ;;
  local) stop_role proxy; stop_role worker; stop_role master ;;
  master|worker|proxy) stop_role "$mode" ;;
  masters) stop_hosts master "$TACHYON_CONF_DIR/masters" ;;
  workers) stop_hosts worker "$TACHYON_CONF_DIR/workers" ;;
  *) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 1 ;;
esac
