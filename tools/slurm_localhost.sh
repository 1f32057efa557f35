#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying tools/slurm_*.sh without
# a cluster (tests/test_slurm.py uses it). Needs root (daemons, and apt-get if missing).
#
#   bash tools/slurm_localhost.sh start [DIR]    # install if missing, configure, start
#   eval "$(bash tools/slurm_localhost.sh env [DIR])"   # SLURM_CONF for sinfo/srun
#   GPUS=0 TASKS=2 CPUS_PER_TASK=1 tools/slurm_train.sh sslreg job CONFIG WORK_DIR
#   bash tools/slurm_localhost.sh stop [DIR]
#
# start: installs Debian's slurmctld, slurmd, slurm-client (the parts of slurm-wlm, without
# its recommends) and munge with apt-get when slurmctld/slurmd/munged/srun are missing;
# writes a munge key and a minimal slurm.conf into DIR (default /tmp/sslreg-slurm): one
# node (this host, `hostname -s`, at 127.0.0.1) with CPUs=$(nproc) (OMP_* ignored), one partition
# (SLURM_LOCALHOST_PARTITION, default "sslreg"); no cgroups, no accounting, no task
# binding (proctrack/linuxproc, task/none), so it runs where systemd and cgroups are not
# available (containers, VMs without init). Starts munged (private socket in DIR),
# slurmctld and slurmd directly as daemons (pid files and logs in DIR), and waits until
# the node is idle. Ports: SLURM_LOCALHOST_PORT (slurmctld, default 16817) and +1
# (slurmd), away from a system Slurm's 6817/6818. SSLREG_SLURM_INSTALL=0: never apt-get
# (fail instead when the packages are missing).
# Exit status says which step failed: 2 not root, 3 install, 4 munged, 5 slurmctld,
# 6 slurmd, 7 node not idle; the last lines of the failing daemon's log are printed.
set -euo pipefail

CMD=${1:-}
DIR=${2:-${SLURM_LOCALHOST_DIR:-/tmp/sslreg-slurm}}
PARTITION=${SLURM_LOCALHOST_PARTITION:-sslreg}
PORT=${SLURM_LOCALHOST_PORT:-16817}
NODE=$(hostname -s)
# the CPUs this process may use; GNU nproc also obeys OMP_NUM_THREADS / OMP_THREAD_LIMIT,
# which a caller may have set to 1 (a 1-CPU node then cannot place a 2-task job, and srun
# waits "Requested partition configuration not available now")
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
CONF="$DIR/slurm.conf"

say() { printf '[slurm_localhost] %s\n' "$*" >&2; }
fail() {  # fail CODE MESSAGE [LOG]
  local code=$1 msg=$2 log=${3:-}
  say "FAILED: $msg"
  if [ -n "$log" ] && [ -f "$log" ]; then say "last lines of $log:"; tail -n 20 "$log" >&2; fi
  exit "$code"
}

# a live process (a zombie left for init to reap does not count)
pid_alive() {
  local pid
  [ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null \
    && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

install_packages() {
  local missing=0 tool
  for tool in slurmctld slurmd munged srun sinfo scontrol; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing=1
  done
  [ "$missing" = 0 ] && return 0
  [ "${SSLREG_SLURM_INSTALL:-1}" != 0 ] || fail 3 "slurm/munge missing (SSLREG_SLURM_INSTALL=0: not installing)"
  command -v apt-get >/dev/null 2>&1 || fail 3 "slurm/munge missing and no apt-get to install them"
  local pkgs=(slurmctld slurmd slurm-client munge) log="$DIR/apt.log" t0=$SECONDS
  say "installing ${pkgs[*]} with apt-get (--no-install-recommends; log $log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
    say "apt-get install failed; apt-get update, then once more"
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >>"$log" 2>&1 \
      || fail 3 "apt-get install ${pkgs[*]} failed" "$log"
  fi
  say "installed in $(( SECONDS - t0 )) s"
}

write_config() {
  mkdir -p "$DIR"/{ctld,spool,munge}
  chmod 755 "$DIR" "$DIR/munge"  # key 0600; others may reach the socket (munged checks)
  if [ ! -s "$DIR/munge/munge.key" ]; then  # a key of this cluster's own
    ( umask 077; dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none )
  fi
  local mem
  mem=$(awk '/MemTotal/ {m = int($2 / 1024 / 2); print (m > 1024 ? 1024 : m)}' /proc/meminfo)
  cat >"$CONF" <<EOF
# Single-node SLURM on $NODE, written by tools/slurm_localhost.sh.
ClusterName=sslreg-localhost
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$(( PORT + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no binding, no accounting: runs without systemd and a writable cgroupfs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" = 0 ] || fail 2 "needs root (it starts slurmd/slurmctld as root, and may apt-get)"
  mkdir -p "$DIR"
  install_packages
  export PATH="$PATH:/usr/sbin:/sbin"
  stop quiet
  write_config
  export SLURM_CONF="$CONF"

  say "munged (socket $DIR/munge/munge.socket)"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munged.log" \
    --seed-file="$DIR/munge/munged.seed" >>"$DIR/munged.log" 2>&1 \
    || fail 4 "munged did not start" "$DIR/munged.log"
  munge -n -S "$DIR/munge/munge.socket" | unmunge -S "$DIR/munge/munge.socket" >/dev/null 2>&1 \
    || fail 4 "munge round trip through $DIR/munge/munge.socket failed" "$DIR/munged.log"

  say "slurmctld (port $PORT)"
  slurmctld -c -f "$CONF" >>"$DIR/slurmctld.log" 2>&1 || fail 5 "slurmctld did not start" "$DIR/slurmctld.log"
  local i
  for i in $(seq 1 30); do
    sleep 1
    pid_alive "$DIR/slurmctld.pid" || fail 5 "slurmctld exited" "$DIR/slurmctld.log"
    timeout 15 scontrol ping 2>/dev/null | grep -q UP && break
  done
  scontrol ping 2>/dev/null | grep -q UP || fail 5 "slurmctld does not answer scontrol ping" "$DIR/slurmctld.log"

  say "slurmd (node $NODE, port $(( PORT + 1 )))"
  slurmd -f "$CONF" -N "$NODE" >>"$DIR/slurmd.log" 2>&1 || fail 6 "slurmd did not start" "$DIR/slurmd.log"
  local state=""
  for i in $(seq 1 60); do
    state=$(sinfo -h -n "$NODE" -p "$PARTITION" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    pid_alive "$DIR/slurmd.pid" || fail 6 "slurmd exited" "$DIR/slurmd.log"
    sleep 1
  done
  [ "$state" = idle ] || fail 7 "node $NODE is '${state:-unknown}', not idle, after 60 s" "$DIR/slurmd.log"
  say "up: partition $PARTITION, node $NODE idle with $CPUS CPUs; export SLURM_CONF=$CONF"
}

stop() {
  local quiet=${1:-} name pidfile pid i
  if pid_alive "$DIR/slurmctld.pid"; then  # this cluster's jobs first
    SLURM_CONF="$CONF" timeout 10 scancel -p "$PARTITION" 2>/dev/null || true
  fi
  for name in slurmd slurmctld munge/munged; do
    pidfile="$DIR/$name.pid"
    if pid_alive "$pidfile" && pid=$(cat "$pidfile" 2>/dev/null); then
      echo "$pid" >"$pidfile.stopping"  # the daemon removes its own pid file on exit
      kill "$pid" 2>/dev/null || true
      for i in $(seq 1 20); do pid_alive "$pidfile.stopping" || break; sleep 0.5; done
      pid_alive "$pidfile.stopping" && kill -9 "$pid" 2>/dev/null || true
      [ -n "$quiet" ] || say "stopped ${name#munge/} ($pid)"
    fi
    rm -f "$pidfile" "$pidfile.stopping"
  done
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  status) export SLURM_CONF="$CONF" PATH="$PATH:/usr/sbin:/sbin"; sinfo -N -l ;;
  *) echo "usage: $0 start|stop|env|status [DIR]" >&2; exit 1 ;;
esac
