#!/usr/bin/env bash
# tools/dist_train.sh CONFIG NPROC [train.py args...]   (torchrun; CPU processes use gloo)
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as in the OpenMMLab scripts.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
source "$(dirname "$0")/_python.sh"
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
exec "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
