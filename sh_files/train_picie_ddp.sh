#!/usr/bin/env bash
# PiCIE with the paper's settings on several GPUs of one machine (DistributedDataParallel, one
# process per GPU). Batch sizes stay global: each GPU takes its share of every batch.
#   GPUS=0,1,2,3 nohup ./sh_files/train_picie_ddp.sh > logs/picie_ddp.out &
# Several machines: run this on each with NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT set.
# Other settings come from sh_files/train_picie.sh's variables (DATA_ROOT, SAVE_ROOT, RUN_NAME, SEED, EPOCHS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_ddp.sh GPUS NNODES NODE_RANK MASTER_ADDR MASTER_PORT TORCHRUN ${TRAIN_SCRIPT_VARS}
GPUS=${GPUS:-0,1}
NPROC=$(echo "${GPUS}" | tr ',' '\n' | grep -c .)
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
TORCHRUN=${TORCHRUN:-$([ -x .venv/bin/torchrun ] && echo .venv/bin/torchrun || echo torchrun)}
export CUDA_VISIBLE_DEVICES="${GPUS}"
# One DataLoader/CPU thread budget per process instead of every process using every core.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
# train_picie.sh builds the command; PYTHON is replaced by torchrun with its rendezvous flags.
PYTHON="${TORCHRUN} --nnodes ${NNODES} --node_rank ${NODE_RANK} --nproc_per_node ${NPROC} \
  --master_addr ${MASTER_ADDR} --master_port ${MASTER_PORT}" exec ./sh_files/train_picie.sh "$@"
