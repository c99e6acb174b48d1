#!/usr/bin/env bash
# A one-node Slurm on this machine (slurmctld and slurmd on localhost), to try `covshift sweep --engine slurm` and to
# test it. Needs root: it installs packages and starts system daemons.
#
#   scripts/slurm-local.sh start    install Debian's slurm-wlm and munge when missing, write a one-node
#                                   /etc/slurm/slurm.conf (no accounting database), start munged, slurmctld and
#                                   slurmd, and wait until sinfo shows the node idle
#   scripts/slurm-local.sh stop     stop the daemons that `start` started (a daemon that was already running stays)
#   scripts/slurm-local.sh status   which daemons run, and sinfo
#
# The machines this targets have no systemd and no usable cgroup plugin, hence proctrack/linuxproc and task/none.
# An /etc/slurm/slurm.conf that this script did not write is never replaced. Exit codes: 0 done, 1 failed, 77 not root.
set -euo pipefail

conf=/etc/slurm/slurm.conf
marker="# Written by covshift scripts/slurm-local.sh (one-node cluster on localhost)"
state=/run/covshift-slurm            # one file per daemon this script started, holding its pid file's path
munge_pid=/run/munge/munged.pid
ctld_pid=/run/slurmctld.pid
slurmd_pid=/run/slurmd.pid

log() { echo "[slurm-local] $*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "needs root (it installs slurm-wlm and munge and starts munged, slurmctld and slurmd); run it as root."
    exit 77
  fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return
  fi
  log "installing slurm-wlm and munge (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
  fi
}

write_conf() {
  if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    log "$conf exists and was not written by this script; not replacing it (this machine has its own Slurm set-up)."
    exit 1
  fi
  local cpus mem
  cpus=$(nproc)
  # 90% of the memory, in MB: a RealMemory above what slurmd measures would drain the node.
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  cat >"$conf.tmp" <<EOF
$marker
ClusterName=covshift-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$ctld_pid
SlurmdPidFile=$slurmd_pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=30
MinJobAge=300
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
}

# started NAME PIDFILE: remember that this script started NAME.
started() { mkdir -p "$state"; echo "$2" >"$state/$1"; }

start_munged() {
  if alive "$munge_pid"; then log "munged already runs (pid $(cat "$munge_pid")); using it"; return; fi
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do alive "$munge_pid" && break; sleep 0.1; done
  alive "$munge_pid" || { log "munged did not start (see /var/log/munge/munged.log)"; exit 1; }
  started munged "$munge_pid"
}

start_daemon() {   # NAME PIDFILE COMMAND...
  local name=$1 pidfile=$2
  shift 2
  if alive "$pidfile"; then log "$name already runs (pid $(cat "$pidfile")); using it"; return; fi
  "$@"
  for _ in $(seq 100); do alive "$pidfile" && break; sleep 0.1; done
  alive "$pidfile" || { log "$name did not start (see /var/log/slurm/$name.log)"; exit 1; }
  started "$name" "$pidfile"
}

wait_idle() {
  local s=""
  for i in $(seq 120); do
    s=$(sinfo -h -N -n localhost -o %t 2>/dev/null | head -n 1 || true)
    case "$s" in
      idle | mix | alloc) log "node localhost is $s"; return ;;
      down* | drain* | inval*) [ "$i" -gt 5 ] && scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  log "the node did not become idle within 60 s (sinfo: '${s:-no answer}'); see /var/log/slurm/"
  exit 1
}

stop_all() {
  [ -d "$state" ] || { log "nothing to stop (this script started no daemon)"; return; }
  for name in slurmd slurmctld munged; do
    [ -f "$state/$name" ] || continue
    local pidfile pid
    pidfile=$(cat "$state/$name")
    if alive "$pidfile"; then
      pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      log "stopped $name (pid $pid)"
    fi
    rm -f "$state/$name"
  done
  rmdir "$state" 2>/dev/null || true
}

status() {
  local name pidfile
  for name in munged slurmctld slurmd; do
    case $name in munged) pidfile=$munge_pid ;; slurmctld) pidfile=$ctld_pid ;; slurmd) pidfile=$slurmd_pid ;; esac
    if alive "$pidfile"; then
      echo "$name: running (pid $(cat "$pidfile"))$([ -f "$state/$name" ] && echo ", started by slurm-local.sh")"
    else
      echo "$name: not running"
    fi
  done
  if command -v sinfo >/dev/null && alive "$ctld_pid"; then sinfo; fi
}

case "${1:-}" in
  start)
    need_root
    install_packages
    write_conf
    start_munged
    start_daemon slurmctld "$ctld_pid" slurmctld
    start_daemon slurmd "$slurmd_pid" slurmd -N localhost
    wait_idle
    ;;
  stop)
    need_root
    stop_all
    ;;
  status)
    status
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
