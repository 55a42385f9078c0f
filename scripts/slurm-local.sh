#!/usr/bin/env bash
# A one-node SLURM cluster on localhost (munge + slurmctld + slurmd) for textlab's SLURM tests.
#
#   scripts/slurm-local.sh install   apt-get install slurm-wlm munge (needs root and Debian's registry)
#   scripts/slurm-local.sh start     write a config under $SLURM_LOCAL_DIR and start the daemons;
#                                    prints the SLURM_CONF to export
#   scripts/slurm-local.sh stop      stop the daemons started by `start`
#
# Exit code 3 means "SLURM cannot run here" (binaries missing, not root, daemons do not come up):
# the tests then skip with this script's message as the reason.
set -u
DIR=${SLURM_LOCAL_DIR:-/tmp/textlab-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

cannot() { echo "slurm-local: $*" >&2; exit 3; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    echo "slurm-local: slurm-wlm and munge are installed"; return 0
  fi
  [ "$(id -u)" = 0 ] || cannot "installing slurm-wlm needs root"
  command -v apt-get >/dev/null || cannot "no apt-get to install slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; } >"${TMPDIR:-/tmp}/slurm-local-apt.log" 2>&1 \
    || cannot "apt-get install slurm-wlm munge failed (see ${TMPDIR:-/tmp}/slurm-local-apt.log)"
}

stop() {
  for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  pkill -f "slurmctld -f $CONF" 2>/dev/null; pkill -f "slurmd -f $CONF" 2>/dev/null
  sleep 1
  return 0
}

start() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    || cannot "slurm-wlm/munge are not installed (run: scripts/slurm-local.sh install, or make test-slurm)"
  [ "$(id -u)" = 0 ] || cannot "slurmd needs root to start here"
  stop
  mkdir -p "$DIR/spool" "$DIR/state"
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
  cat >"$CONF" <<CONF
ClusterName=textlab-test
SlurmctldHost=$HOST
AuthType=auth/munge
# requeued jobs become eligible cred_expire seconds later (default 120): keep tests short
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=30
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  # munge: a key and a running daemon
  if [ ! -f /etc/munge/munge.key ]; then
    (mungekey -c >/dev/null 2>&1 || /usr/sbin/create-munge-key -f >/dev/null 2>&1) || cannot "cannot create /etc/munge/munge.key"
    chown munge:munge /etc/munge/munge.key 2>/dev/null
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    (su -s /bin/sh munge -c /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force) >/dev/null 2>&1
    sleep 1
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || cannot "munged does not start"
  fi
  slurmctld -f "$CONF" || cannot "slurmctld does not start (see $DIR/slurmctld.log)"
  slurmd -f "$CONF" || cannot "slurmd does not start (see $DIR/slurmd.log)"
  for _ in $(seq 1 30); do
    if SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 1
  done
  cannot "the node did not become idle in 30 s (see $DIR/slurmctld.log)"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
