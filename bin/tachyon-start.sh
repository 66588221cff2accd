#!/usr/bin/env bash
# Starts tachyon processes.
#   tachyon-start.sh local     one master + one worker on this machine (embedded default:
#                              local journal folder, no ZooKeeper); formats a new journal
#   tachyon-start.sh master    a master on this machine
#   tachyon-start.sh worker    a worker on this machine
#   tachyon-start.sh masters   a master on every host of conf/masters
#   tachyon-start.sh workers   a worker on every host of conf/workers
#   tachyon-start.sh all       masters, then workers
#   tachyon-start.sh proxy     the S3 gateway on this machine (port 39999)
# Loopback hosts (localhost, 127.x) start locally; other hosts through ssh ($TACHYON_SSH).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tachyon-config.sh"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 1; }
mode=${1:-}
[[ -n "$mode" ]] || usage
tachyon_find_binary --build
mkdir -p "$TACHYON_LOGS_DIR" "$TACHYON_RUN_DIR"

# Asks the cluster with a short retry budget, so readiness polls stay quick.
quick() { "$TACHYON_BIN" -Dtachyon.user.rpc.retry.max.duration=200ms "$@"; }

# start_process ROLE: starts ROLE on this machine; no-op if it is already running. The pid
# file and log are named after the host the process advertises (TACHYON_MASTER_ADDRESS,
# tachyon.master.hostname, ...), so several masters on one machine, or hosts sharing
# TACHYON_HOME, keep apart. Nothing here overrides the configuration.
start_process() {
  local role=$1 host pid key="tachyon.$1.hostname" conf_role=$1
  # The gateway is a client of the cluster with a host name of its own.
  [[ $role == proxy ]] && key=tachyon.proxy.web.hostname conf_role=client
  host=$("$TACHYON_BIN" getConf --role "$conf_role" "$key") || return 1
  local pidfile="$TACHYON_RUN_DIR/$role-$host.pid" log="$TACHYON_LOGS_DIR/$role-$host.log"
  pid=$(tachyon_pidfile_pid "$pidfile" 2>/dev/null)
  if [[ -n "$pid" ]] && tachyon_pid_running "$pid" "$role"; then
    echo "$role on $host is already running (pid $pid)"
    return 0
  fi
  nohup setsid "$TACHYON_BIN" "$role" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(tachyon_boot_id)" >"$pidfile"
  sleep 0.3
  if ! tachyon_pid_running "$pid" "$role"; then
    echo "Error: $role on $host exited at start; the end of $log says:" >&2
    tail -n 5 "$log" >&2
    rm -f "$pidfile"
    return 1
  fi
  echo "Started $role on $host (pid $pid, log $log)"
}

# start_on ROLE HOST: a host of conf/masters or conf/workers. Loopback hosts start here,
# others through ssh; either way the process advertises HOST unless configured otherwise.
start_on() {
  local role=$1 host=$2
  if tachyon_is_local_host "$host"; then
    TACHYON_LAUNCH_HOSTNAME=$host start_process "$role"
  else
    tachyon_ssh "$host" "TACHYON_LAUNCH_HOSTNAME=$(printf %q "$host") $(printf %q "$TACHYON_HOME/bin/tachyon-start.sh") $role"
  fi
}

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.3
  done
  echo "Error: timed out waiting for $what (see $TACHYON_LOGS_DIR)" >&2
  return 1
}

live_workers_at_least() {
  local n
  n=$(quick fs report 2>/dev/null | sed -n 's/^ *Live workers: *//p')
  [[ -n "$n" && "$n" -ge "$1" ]]
}

format_local_journal_if_new() {
  local folder
  folder=$("$TACHYON_BIN" getConf tachyon.master.journal.folder)
  folder=${folder#file://}
  if [[ "$folder" == /* && ! -f "$folder/FORMAT" ]]; then
    "$TACHYON_BIN" format
  fi
}

case "$mode" in
  local)
    format_local_journal_if_new
    start_process master
    wait_for "the master" quick fs leader
    start_process worker
    wait_for "the worker to register" live_workers_at_least 1
    echo
    quick fs report
    echo
    echo "Tachyon is running. Try: bin/tachyon fs ls /    bin/tachyon runTests    bin/tachyon-stop.sh"
    ;;
  master|worker|proxy) start_process "$mode" ;;
  masters) for h in $(tachyon_hosts "$TACHYON_CONF_DIR/masters"); do start_on master "$h"; done ;;
  workers) for h in $(tachyon_hosts "$TACHYON_CONF_DIR/workers"); do start_on worker "$h"; done ;;
  all)
    "$0" masters
    "$0" workers
    ;;
  *) usage ;;
esac
