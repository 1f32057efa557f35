#!/usr/bin/env bash
# tools/dist_train.sh CONFIG NPROC [train.py args...]   (torchrun; see tools/_launch.sh)
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
CONFIG=$1
NPROC=$2
shift 2
torchrun_tool train.py "$NPROC" "$CONFIG" "$@"
