#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NPROC [train.py options]
# Without GPUs the processes use the gloo backend on CPU (tools/train.py sets it).
set -euo pipefail
CONFIG=$1
NPROC=$2
PORT=${PORT:-29500}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$PY -m torch.distributed.run --nnodes=1 --node_rank=0 --master_addr=127.0.0.1 --master_port=$PORT \
    --nproc_per_node=$NPROC "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"
