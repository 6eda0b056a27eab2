#!/bin/bash
# Epilog for cluster admins: stops gym-apptainer sandboxes that a job left
# running on this node. Install on every compute node and set in slurm.conf:
#
#   Epilog=/etc/slurm/epilog.d/gym-apptainer.sh
#
# slurmd runs it as root when a job ends, with SLURM_JOB_ID set. A sandbox's
# holder stops its instance on SIGTERM, and SLURM kills what is left in the
# job's cgroups (with proctrack/cgroup that includes the instance's host
# process, even with enforce: apptainer, where only the container's own
# processes move to a cgroup of their own). But an instance whose holder was
# SIGKILLed on a node where SLURM does not track processes by cgroup
# (proctrack/linuxproc: the instance is a daemon, outside the job's process
# tree), or whose host process was moved out of the job (a systemd scope),
# outlives the job.
#
# How an instance is tied to its job: apptainer scrubs the environment of the
# instance's host process (the starter, titled "Apptainer instance: USER
# [NAME]") down to APPTAINER_MESSAGELEVEL, _WRAPPER_ARG0 and ENGINE_CONFIG1..n:
# the instance's configuration as JSON, split in ENGINE_CONFIG_CHUNKS chunks.
# That configuration holds the container's environment. gym-apptainer starts
# instances with --cleanenv (the job's environment must not reach the
# sandbox), and the holder passes exactly one variable into it,
# GYM_SLURM_JOB_ID=<the job (or allocation) that started it>, which the
# configuration shows as "apptainerEnv":{"GYM_SLURM_JOB_ID":"<job>"}. This
# kills exactly the gym instances of the ending job, and nothing else.
#
# Standing pools (gym-host pool up; see pool.md): a pool's sandboxes are
# steps of the pool's job, so their holders pass the pool's job id, and
# this epilog, run when the pool's job ends on each of its nodes (its time
# limit, scancel, or a pool that ended abruptly), stops every sandbox of the
# pool left on that node. Nothing else is needed for pools.
set -u
job=${SLURM_JOB_ID:-}
[ -n "$job" ] || exit 0
case $job in *[!0-9]*) exit 0 ;; esac
proc=${GYM_EPILOG_PROC:-/proc}     # for tests

# engine_config PID: the instance configuration in the starter's environment,
# its chunks joined in order.
engine_config() {
  local env n i
  env=$(tr '\0' '\n' 2>/dev/null < "$proc/$1/environ") || return 1
  n=$(printf '%s\n' "$env" | sed -n 's/^ENGINE_CONFIG_CHUNKS=//p')
  case $n in '' | *[!0-9]*) n=1 ;; esac
  for i in $(seq 1 "$n"); do
    printf '%s\n' "$env" | sed -n "s/^ENGINE_CONFIG$i=//p" | tr -d '\n'
  done
}

killed=0
for dir in "$proc"/[0-9]*; do
  pid=${dir##*/}
  cmd=$(tr '\0' ' ' 2>/dev/null < "$dir/cmdline") || continue
  case $cmd in "Apptainer instance: "*"[gym-"*"]"*) ;; *) continue ;; esac
  # A member of the apptainerEnv JSON object: "GYM_SLURM_JOB_ID":"J"
  engine_config "$pid" | grep -qE "[{,]\"GYM_SLURM_JOB_ID\":\"$job\"[},]" || continue
  # Kill the instance's processes first (its PID namespace dies with its
  # init), then the starter itself.
  for child in $(cat "$dir"/task/*/children 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
  kill -KILL "$pid" 2>/dev/null || true
  killed=$((killed + 1))
  logger -t gym-apptainer-epilog "job $job: killed leftover sandbox instance pid $pid ($cmd)" 2>/dev/null || true
done
[ "$killed" -eq 0 ] || echo "gym-apptainer epilog: job $job: killed $killed leftover sandbox instance(s)" >&2
exit 0
