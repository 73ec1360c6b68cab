#!/usr/bin/env bash
# A tracking server for one study: the single writer of the study's sqlite database, so that many
# Slurm tasks can log at once (tracking=server). sqlite files written by many jobs at once lock up.
#
#   scripts/mlflow-server.sh start STUDY_DIR   start in the background (or find the running one)
#                                              and print MLFLOW_TRACKING_URI=http://HOST:PORT
#   scripts/mlflow-server.sh stop STUDY_DIR    stop it
#
#   export "$(scripts/mlflow-server.sh start outputs/studies/grit)"
#   python train.py -m hydra/launcher=slurm tracking=server method=dpo,cita seed=0,1
#
# STUDY_DIR gets mlflow.db, mlartifacts/ (served through the server: jobs need no shared path),
# mlflow-server.{pid,uri,log}. Environment:
#   MLFLOW_SERVER_HOST   interface to bind (127.0.0.1). On a cluster whose tasks run on other
#                        nodes use 0.0.0.0: the URI then names this host (hostname -f).
#   MLFLOW_SERVER_PORT   port (default: a free one)
#   MLFLOW_SERVER_WORKERS  server worker processes (2)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -x $ROOT/.venv/bin/mlflow ]]; then BIN=$ROOT/.venv/bin; else BIN=$(dirname "$(command -v mlflow)"); fi
PY=$BIN/python
[[ -x $PY ]] || PY=$(command -v python3)

log() { echo "mlflow-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { echo "usage: $0 start|stop STUDY_DIR" >&2; exit 2; }
[[ $# == 2 ]] || usage
mkdir -p "$2"
STUDY=$(cd "$2" && pwd)
PIDFILE=$STUDY/mlflow-server.pid
URIFILE=$STUDY/mlflow-server.uri

running() { # the PID file names a live process of ours (an mlflow server for this study)
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mlflow.* server .*$STUDY"
}

answers() { # answers URL: GET URL/health gives 200
  "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' \
    "$1" 2>/dev/null
}

cmd_start() {
  if running; then
    log "already running ($(cat "$PIDFILE")) for $STUDY"
    echo "MLFLOW_TRACKING_URI=$(cat "$URIFILE")"
    return 0
  fi
  [[ -x $BIN/mlflow ]] || die "mlflow not found (install the project: pip install -e .)"
  local host=${MLFLOW_SERVER_HOST:-127.0.0.1} port=${MLFLOW_SERVER_PORT:-} name allowed=()
  if [[ -z $port ]]; then
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  name=127.0.0.1
  if [[ $host != 127.0.0.1 && $host != localhost ]]; then
    name=$(hostname -f 2>/dev/null || hostname)
    # mlflow rejects Host headers other than localhost and private IPs unless listed.
    allowed=(--allowed-hosts "localhost,localhost:$port,127.0.0.1:$port,$name,$name:$port")
  fi
  local uri=http://$name:$port
  # setsid: the server and its workers form one process group, stopped together. Server-side
  # jobs (GenAI evaluation; a pool of huey consumers) are off: they only slow the start.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    setsid "$BIN/mlflow" server --backend-store-uri "sqlite:///$STUDY/mlflow.db" \
      --artifacts-destination "$STUDY/mlartifacts" --host "$host" --port "$port" \
      --workers "${MLFLOW_SERVER_WORKERS:-2}" "${allowed[@]}" \
      </dev/null >>"$STUDY/mlflow-server.log" 2>&1 &
  echo $! >"$PIDFILE"
  echo "$uri" >"$URIFILE"
  local deadline=$((SECONDS + 120))
  until answers "http://127.0.0.1:$port"; do
    running || die "the server exited; see $STUDY/mlflow-server.log"
    ((SECONDS < deadline)) || { cmd_stop; die "no answer on $uri after 120 s; see $STUDY/mlflow-server.log"; }
    sleep 0.5
  done
  log "started ($(cat "$PIDFILE")) for $STUDY; stop: $0 stop $STUDY"
  echo "MLFLOW_TRACKING_URI=$uri"
}

cmd_stop() {
  if ! running; then
    log "not running for $STUDY"
    rm -f "$PIDFILE"
    return 0
  fi
  local pid i
  pid=$(cat "$PIDFILE")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  log "stopped ($pid)"
}

case $1 in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) usage ;;
esac
