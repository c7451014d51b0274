#!/usr/bin/env bash
# Train PiCIE on Cityscapes-27 with the original's Cityscapes settings: those of
# sh_files/train_picie.sh with --cityscapes and lr 1e-3. Trains on the leftImg8bit train_extra +
# test frames (no labels needed), evaluates on val + train (gtFine labelIds 7..33 -> 27 classes).
#   nohup ./sh_files/train_picie_cityscapes.sh > logs/picie_cityscapes.out &
# Paths come from the environment; extra flags are passed through (e.g. --restart, or
# --cityscapes_train_splits train when only the fine-annotated splits are on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

DATA_ROOT=${DATA_ROOT:-datasets/cityscapes/}
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie_cityscapes}
K_train=27
K_test=27
bsize=256
num_epoch=10
KM_INIT=20
KM_NUM=1
KM_ITER=20
SEED=${SEED:-1}
LR=1e-3

mkdir -p "${SAVE_ROOT}" logs

"$PYTHON" train_picie.py \
  --cityscapes \
  --data_root "${DATA_ROOT}" \
  --save_root "${SAVE_ROOT}" \
  --run_name "${RUN_NAME}" \
  --pretrain \
  --repeats 1 \
  --lr ${LR} \
  --seed ${SEED} \
  --num_init_batches ${KM_INIT} \
  --num_batches ${KM_NUM} \
  --kmeans_n_iter ${KM_ITER} \
  --K_train ${K_train} --K_test ${K_test} \
  --batch_size_cluster ${bsize} \
  --batch_size_train 128 \
  --batch_size_test 128 \
  --num_epoch ${num_epoch} \
  --res 320 --res1 320 --res2 640 \
  --augment --jitter --blur --grey --equiv --random_crop --h_flip \
  "$@"
