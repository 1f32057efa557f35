#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS (default 8) tasks with GPUS_PER_NODE GPUs each node, as in the OpenMMLab scripts.
# GPUS=0: a CPU run of TASKS tasks (default 2), TASKS_PER_NODE per node, no --gres.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
source "$(dirname "$0")/_python.sh"
GPUS=${GPUS:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
if [ "$GPUS" -gt 0 ]; then
  GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
  RESOURCES=(--ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --gres=gpu:"$GPUS_PER_NODE")
else
  TASKS=${TASKS:-2}
  RESOURCES=(--ntasks="$TASKS" --ntasks-per-node="${TASKS_PER_NODE:-$TASKS}")
fi
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${RESOURCES[@]}" \
  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
  "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "$@"
