#!/usr/bin/env bash
# A real single-node Slurm cluster (with accounting) on localhost, for the `slurm` tests and for
# trying cluster sweeps on one machine.
#
#   scripts/slurm-local.sh up       install what is missing (Debian, as root), configure, start
#   scripts/slurm-local.sh down     stop only the daemons this script started, purge its state
#   scripts/slurm-local.sh status   print what runs and the node state
#
# Daemons: munged, mariadbd (127.0.0.1, own datadir), slurmdbd, slurmctld, slurmd. Accounting is
# not optional: submitit reads job states through `sacct`, and without slurmdbd a job killed
# before it writes its result (scancel, hard time limit) never looks finished to it.
# Everything lives under $ALIGNMENT_SLURM_DIR (default /var/lib/alignment-slurm) except
# /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf, which Slurm's clients read from there; both
# carry a marker line, and an existing unmarked (someone else's) slurm.conf is never replaced.
set -euo pipefail

PATH=$PATH:/usr/sbin:/sbin
STATE=${ALIGNMENT_SLURM_DIR:-/var/lib/alignment-slurm}
CLUSTER=${ALIGNMENT_SLURM_CLUSTER:-alignment-local}
NODE=localhost
CTLD_PORT=${ALIGNMENT_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${ALIGNMENT_SLURMD_PORT:-6818}
DBD_PORT=${ALIGNMENT_SLURMDBD_PORT:-6819}
DB_PORT=${ALIGNMENT_SLURM_DB_PORT:-13306}   # not 3306: leave a system MariaDB alone
# not plain nproc: it honours OMP_NUM_THREADS, which the tests set to 1 (a 1-CPU node never
# starts a 2-task job: it pends for ever with reason PartitionConfig)
CPUS=${ALIGNMENT_SLURM_NODE_CPUS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
CONF_DIR=/etc/slurm
MARKER="# Managed by alignment-lab scripts/slurm-local.sh; removed by its 'down'."
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
DB_PASS=slurm-local   # a test database on 127.0.0.1 only

RUN=$STATE/run
LOG=$STATE/log
MUNGE=$STATE/munge
DBDIR=$STATE/mariadb

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "error: line $LINENO: $BASH_COMMAND failed (logs: $LOG)"' ERR

# --- processes -----------------------------------------------------------------------------

# pid_alive NAME: the PID in $RUN/NAME.pid runs a program called NAME (guards against reuse).
pid_alive() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

# stop_daemons NAME...: SIGTERM those of them this script started, wait (SIGKILL after 15 s).
stop_daemons() {
  local name pid pids=() names=() i
  for name in "$@"; do
    if pid_alive "$name"; then
      pid=$(cat "$RUN/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
    rm -f "$RUN/$name.pid"
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    local deadline=$((SECONDS + 15))
    while [[ -d /proc/${pids[i]} ]] && ((SECONDS < deadline)); do sleep 0.1; done
    if [[ -d /proc/${pids[i]} ]]; then
      log "${names[i]} (${pids[i]}) ignored SIGTERM; killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    log "stopped ${names[i]} (${pids[i]})"
  done
}

# wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds (probes carry own timeouts).
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up in time (logs: $LOG)"
    sleep 0.2
  done
}

# --- install -------------------------------------------------------------------------------

install_packages() {
  local missing=0 bin
  for bin in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mungekey mariadbd \
    mariadb-install-db mariadb; do
    command -v "$bin" >/dev/null || missing=1
  done
  ((missing)) || return 0
  [[ $(id -u) == 0 ]] || die "Slurm is not installed and installing it needs root: apt-get install ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "Slurm is not installed and this is not a Debian-like system"
  log "installing ${PACKAGES[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start the system-wide services: this script starts its own.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; } || rc=$?
  ((added_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install failed ($rc)"
}

# --- configuration -------------------------------------------------------------------------

write_if_changed() { # write_if_changed PATH MODE < content; returns 0 if the file changed
  local path=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    return 1
  fi
  install -m "$mode" "$tmp" "$path"
  rm -f "$tmp"
}

check_conf_is_ours() {
  local f
  for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/slurmdbd.conf"; do
    if [[ -e $f ]] && ! grep -qxF "$MARKER" "$f"; then
      die "$f exists and was not written by this script; not touching a real cluster's config"
    fi
  done
}

slurm_conf() {
  local mem_mb
  mem_mb=$(awk '/MemTotal/ {print int($2 / 1024) - 512}' /proc/meminfo)
  cat <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job restarts ~11 s later instead of ~150 s.
AuthInfo=socket=$MUNGE/munge.socket.2,cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
# Cores only: memory is not a consumable, so jobs without --mem do not each take the whole node.
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# A submitted job starts at once; a requeued one is picked up within seconds.
SchedulerParameters=sched_interval=5,bf_interval=5,batch_sched_delay=0
ReturnToService=2
MailProg=/bin/true
KillWait=5
InactiveLimit=0
MinJobAge=300
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# With slurmdbd this names the munge socket that clients use to reach it (ours, not /run/munge).
AccountingStoragePass=$MUNGE/munge.socket.2
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf() {
  cat <<EOF
$MARKER
AuthType=auth/munge
AuthInfo=socket=$MUNGE/munge.socket.2
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

# write_configs: prints "changed" if slurm.conf or slurmdbd.conf changed.
write_configs() {
  check_conf_is_ours
  mkdir -p "$CONF_DIR"
  local changed=0
  slurm_conf | write_if_changed "$CONF_DIR/slurm.conf" 644 && changed=1
  slurmdbd_conf | write_if_changed "$CONF_DIR/slurmdbd.conf" 600 && changed=1
  ((changed)) && echo changed
  return 0
}

# --- daemons -------------------------------------------------------------------------------

munge_ok() { timeout 5 munge -S "$MUNGE/munge.socket.2" -n | timeout 5 unmunge -S "$MUNGE/munge.socket.2"; }

start_munge() {
  pid_alive munged && return 0
  mkdir -p "$MUNGE"
  if [[ ! -s $MUNGE/munge.key ]]; then
    mungekey --create --keyfile="$MUNGE/munge.key" 2>/dev/null ||
      dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
  fi
  chown -R munge:munge "$MUNGE"
  chmod 755 "$MUNGE"   # munged wants its socket directory searchable by all
  chmod 400 "$MUNGE/munge.key"
  runuser -u munge -- munged --key-file="$MUNGE/munge.key" --socket="$MUNGE/munge.socket.2" \
    --pid-file="$MUNGE/munged.pid" --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" \
    </dev/null >>"$LOG/munged.out" 2>&1
  wait_for 10 munged munge_ok
  cp "$MUNGE/munged.pid" "$RUN/munged.pid"
  log "started munged ($(cat "$RUN/munged.pid"))"
}

# shellcheck disable=SC2120  # wait_for passes arguments to db
db() { timeout 20 mariadb --no-defaults --protocol=socket -S "$DBDIR/mariadbd.sock" -u root "$@"; }

start_mariadb() {
  pid_alive mariadbd && return 0
  mkdir -p "$DBDIR"
  chown mysql:mysql "$DBDIR" # mariadbd runs as mysql: datadir, socket, PID file and log are here
  if [[ ! -d $DBDIR/data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$DBDIR/data" --skip-test-db \
      --auth-root-authentication-method=socket >>"$LOG/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
  fi
  setsid mariadbd --no-defaults --user=mysql --datadir="$DBDIR/data" \
    --socket="$DBDIR/mariadbd.sock" --pid-file="$DBDIR/mariadbd.pid" \
    --log-error="$DBDIR/mariadbd.log" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --skip-log-bin --innodb-buffer-pool-size=64M </dev/null >>"$LOG/mariadbd.out" 2>&1 &
  wait_for 30 mariadbd db -e 'SELECT 1'
  cp "$DBDIR/mariadbd.pid" "$RUN/mariadbd.pid"
  log "started mariadbd ($(cat "$RUN/mariadbd.pid"), 127.0.0.1:$DB_PORT)"
  db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
  pid_alive slurmdbd && return 0
  slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1
  wait_for 30 slurmdbd timeout 10 sacctmgr -n list cluster
  log "started slurmdbd ($(cat "$RUN/slurmdbd.pid"))"
  if ! timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qxF "$CLUSTER"; then
    timeout 10 sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

node_state() { timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null; }
node_idle() { [[ $(node_state) == idle ]]; }

start_slurm() {
  mkdir -p "$STATE/slurmctld" "$STATE/slurmd"
  if ! pid_alive slurmctld; then
    slurmctld </dev/null >>"$LOG/slurmctld.log" 2>&1
    wait_for 30 slurmctld timeout 10 scontrol ping
    log "started slurmctld ($(cat "$RUN/slurmctld.pid"))"
  fi
  if ! pid_alive slurmd; then
    slurmd -N "$NODE" </dev/null >>"$LOG/slurmd.log" 2>&1
    wait_for 10 slurmd pid_alive slurmd
    log "started slurmd ($(cat "$RUN/slurmd.pid"))"
  fi
  local i
  for ((i = 0; i < 150; i++)); do
    node_idle && return 0
    case $(node_state) in
      down* | drain* | fail*) timeout 10 scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.2
  done
  die "node $NODE is '$(node_state)', not idle, after 30 s (logs: $LOG)"
}

all_running() {
  local d
  for d in munged mariadbd slurmdbd slurmctld slurmd; do pid_alive "$d" || return 1; done
  node_idle
}

# --- commands ------------------------------------------------------------------------------

cmd_up() {
  if all_running; then
    log "already up (cluster $CLUSTER, node $NODE idle)"
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "must run as root (daemons run as root on this test cluster)"
  install_packages
  mkdir -p "$RUN" "$LOG"
  chmod 755 "$STATE"
  if [[ -n $(write_configs) ]]; then
    # Slurm daemons only read their config at start: restart the ones already running.
    stop_daemons slurmd slurmctld slurmdbd
  fi
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurm
  timeout 10 sacct -n -X -S now >/dev/null || die "sacct does not answer"
  log "up: cluster $CLUSTER, node $NODE idle ($CPUS CPUs), state in $STATE"
}

cmd_down() {
  if [[ -d $RUN ]] && pid_alive slurmctld; then
    # Cancel what is still queued or running, so no job step outlives the cluster.
    timeout 10 squeue -h -o %i 2>/dev/null | xargs -r timeout 10 scancel 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      [[ -z $(timeout 10 squeue -h 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  # Slurm daemons first (they may still talk to munged and the database while stopping).
  stop_daemons slurmd slurmctld slurmdbd
  stop_daemons mariadbd munged
  local f
  for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/slurmdbd.conf"; do
    if [[ -f $f ]] && grep -qxF "$MARKER" "$f"; then rm -f "$f"; fi
  done
  rm -rf "$STATE"
  log "down (state in $STATE purged)"
}

cmd_status() {
  local d
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid_alive "$d"; then echo "$d: running ($(cat "$RUN/$d.pid"))"; else echo "$d: not running"; fi
  done
  echo "node $NODE: $(node_state || echo unknown)"
  all_running
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
