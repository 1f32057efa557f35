# Sourced by the launch scripts: the project's python, and the torchrun / srun calls.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"

# torchrun_tool TOOL NPROC ARGS...: tools/TOOL under torchrun (CPU processes use gloo).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as in the OpenMMLab scripts.
torchrun_tool() {
  local tool=$1 nproc=$2
  shift 2
  exec "$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --nproc_per_node="$nproc" \
    --master_port="${PORT:-29500}" "$ROOT/tools/$tool" "$@" --launcher pytorch
}

# srun_tool PARTITION JOB_NAME TOOL ARGS...: tools/TOOL under srun.
# GPUS (default 8) tasks with GPUS_PER_NODE GPUs per node, as in the OpenMMLab scripts;
# GPUS=0: a CPU run of TASKS tasks (default 2), TASKS_PER_NODE per node, no --gres.
srun_tool() {
  local partition=$1 job=$2 tool=$3 resources
  shift 3
  local gpus=${GPUS:-8}
  if [ "$gpus" -gt 0 ]; then
    local per_node=${GPUS_PER_NODE:-$(( gpus < 8 ? gpus : 8 ))}
    resources=(--ntasks="$gpus" --ntasks-per-node="$per_node" --gres=gpu:"$per_node")
  else
    resources=(--ntasks="${TASKS:-2}" --ntasks-per-node="${TASKS_PER_NODE:-${TASKS:-2}}")
  fi
  # shellcheck disable=SC2086
  exec srun -p "$partition" --job-name="$job" "${resources[@]}" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/tools/$tool" "$@" --launcher=slurm
}
