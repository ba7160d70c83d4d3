# A throwaway single-node Slurm cluster on loopback for tests (sourced by slurm_cluster_test.sh).
#   slurm_start DIR   writes DIR/slurm.conf, a munge key, starts munged, slurmctld and slurmd
#                     (as root, on free ports, state under DIR), exports SLURM_CONF and waits
#                     until the node is idle. Needs root and Debian's slurm-wlm + munge.
#   slurm_stop        stops the daemons it started (by their pid files) and kills what is
#                     left of jobs run under DIR.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

slurm_start() {
  SLURM_DIR="$1"
  mkdir -p "$SLURM_DIR"/{state,spool,munge,log}
  chmod 700 "$SLURM_DIR/munge"
  local node mem ctld_port slurmd_port
  node=$(hostname -s)
  mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.8)}')
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  dd if=/dev/urandom of="$SLURM_DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
  chmod 400 "$SLURM_DIR/munge/munge.key"
  MUNGE_SOCKET="$SLURM_DIR/munge/munge.sock"
  munged --force --key-file="$SLURM_DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$SLURM_DIR/munge/munged.pid" --log-file="$SLURM_DIR/log/munged.log" \
    --seed-file="$SLURM_DIR/munge/munge.seed" || { echo "slurm_start: munged failed"; return 1; }
  cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=grpotest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s;
# starting it earlier fails with "Job credential revoked").
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
KillWait=20
MinJobAge=3600
JobRequeue=1
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$SLURM_DIR/slurm.conf"
  slurmctld -f "$SLURM_CONF" || { echo "slurm_start: slurmctld failed"; cat "$SLURM_DIR/log/slurmctld.log"; return 1; }
  slurmd -f "$SLURM_CONF" -N "$node" || { echo "slurm_start: slurmd failed"; cat "$SLURM_DIR/log/slurmd.log"; return 1; }
  local i state
  for i in $(seq 1 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    [ "$state" = idle ] && return 0
    sleep 1
  done
  echo "slurm_start: node not idle after 60 s (state '$state')"
  tail -20 "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log"
  return 1
}

slurm_stop() {
  [ -n "${SLURM_DIR:-}" ] || return 0
  local f pid
  if [ -n "${SLURM_CONF:-}" ]; then scancel --user=root --full >/dev/null 2>&1 || true; fi
  for f in slurmd slurmctld munge/munged; do
    pid=$(cat "$SLURM_DIR/$f.pid" 2>/dev/null) || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Job processes slurmstepd left behind (they all run binaries from under SLURM_DIR or the
  # test's job directory, recorded in GRPO_TEST_JOBS_ROOT).
  if [ -n "${GRPO_TEST_JOBS_ROOT:-}" ]; then
    for pid in $(pgrep -f "$GRPO_TEST_JOBS_ROOT" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  fi
}
