#!/usr/bin/env bash
# Train PiCIE with the paper's hyperparameters (the original sh_files/train_picie.sh).
#   nohup ./sh_files/train_picie.sh > logs/picie_train.out &
# Paths and a few knobs come from the environment; extra flags are passed through:
#   DATA_ROOT=/data/coco SAVE_ROOT=/scratch/results ./sh_files/train_picie.sh --restart
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}  # may be a launcher with flags (train_picie_ddp.sh)

DATA_ROOT=${DATA_ROOT:-datasets/coco/}
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie}
K_train=27
K_test=27
bsize=256
num_epoch=10
KM_INIT=20
KM_NUM=1
KM_ITER=20
SEED=${SEED:-1}
LR=1e-4
# ImageNet init as in the paper; PRETRAIN="" trains from scratch, PRETRAIN="--pretrain_path FILE" uses a local file.
PRETRAIN=${PRETRAIN---pretrain}

mkdir -p "${SAVE_ROOT}" logs

$PYTHON train_picie.py \
  --data_root "${DATA_ROOT}" \
  --save_root "${SAVE_ROOT}" \
  --run_name "${RUN_NAME}" \
  ${PRETRAIN} \
  --repeats 1 \
  --lr ${LR} \
  --seed ${SEED} \
  --num_init_batches ${KM_INIT} \
  --num_batches ${KM_NUM} \
  --kmeans_n_iter ${KM_ITER} \
  --K_train ${K_train} --K_test ${K_test} \
  --stuff --thing \
  --batch_size_cluster ${bsize} \
  --batch_size_train 128 \
  --batch_size_test 128 \
  --num_epoch ${num_epoch} \
  --res 320 --res1 320 --res2 640 \
  --augment --jitter --blur --grey --equiv --random_crop --h_flip \
  "$@"
