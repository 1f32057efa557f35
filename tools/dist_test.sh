#!/usr/bin/env bash
# tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]   (torchrun; see tools/_launch.sh)
set -euo pipefail
source "$(dirname "$0")/_launch.sh"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
torchrun_tool test.py "$NPROC" "$CONFIG" "$CHECKPOINT" "$@"
