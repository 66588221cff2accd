#!/usr/bin/env bash
# Starts tachyon processes.
#   tachyon-start.sh local     one master + one worker on this machine (embedded default:
#                              local journal folder, no ZooKeeper); formats a new journal
#   tachyon-start.sh master    a master on this machine
#   tachyon-start.sh worker    a worker on this machine
#   tachyon-start.sh masters   a master on every host of conf/masters
#   tachyon-start.sh workers   a worker on every host of conf/workers
#   tachyon-start.sh all       masters, then workers
# Loopback hosts (localhost, 127.x) start locally; other hosts through ssh.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tachyon-config.sh"

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 1; }
mode=${1:-}
[[ -n "$mode" ]] || usage
tachyon_find_binary --build
mkdir -p "$TACHYON_LOGS_DIR" "$TACHYON_RUN_DIR"

# Asks the cluster with a short retry budget, so readiness polls stay quick.
quick() { "$TACHYON_BIN" -Dtachyon.user.rpc.retry.max.duration=200ms "$@"; }

# start_process ROLE HOST: starts ROLE locally as HOST; no-op if already running.
start_process() {
  local role=$1 host=$2
  local pidfile="$TACHYON_RUN_DIR/$role-$host.pid" log="$TACHYON_LOGS_DIR/$role-$host.log"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$role on $host is already running (pid $(cat "$pidfile"))"
    return 0
  fi
  local defines=()
  case "$role" in
    master) defines+=("-Dtachyon.master.hostname=$host") ;;
    worker) defines+=("-Dtachyon.worker.hostname=$host") ;;
  esac
  if [[ "$role" == master && -n "${TACHYON_MASTER_ADDRESS:-}" && "$host" == localhost ]]; then
    defines=("-Dtachyon.master.hostname=$TACHYON_MASTER_ADDRESS")
  fi
  nohup setsid "$TACHYON_BIN" "${defines[@]}" "$role" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  sleep 0.3
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "Error: $role on $host exited at start; the end of $log says:" >&2
    tail -n 5 "$log" >&2
    rm -f "$pidfile"
    return 1
  fi
  echo "Started $role on $host (pid $(cat "$pidfile"), log $log)"
}

# start_on ROLE HOST: locally for loopback hosts, else through ssh.
start_on() {
  local role=$1 host=$2
  if tachyon_is_local_host "$host"; then
    start_process "$role" "$host"
  else
    ssh -o StrictHostKeyChecking=no "$host" "$TACHYON_HOME/bin/tachyon-start.sh $role"
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
    start_process master localhost
    wait_for "the master" quick fs leader
    start_process worker localhost
    wait_for "the worker to register" live_workers_at_least 1
    echo
    quick fs report
    echo
    echo "Tachyon is running. Try: bin/tachyon fs ls /    bin/tachyon runTests    bin/tachyon-stop.sh"
    ;;
  master) start_process master localhost ;;
  worker) start_process worker localhost ;;
  masters) for h in $(tachyon_hosts "$TACHYON_CONF_DIR/masters"); do start_on master "$h"; done ;;
  workers) for h in $(tachyon_hosts "$TACHYON_CONF_DIR/workers"); do start_on worker "$h"; done ;;
  all)
    "$0" masters
    "$0" workers
    ;;
  *) usage ;;
esac
