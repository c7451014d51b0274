#!/usr/bin/env bash
# Train PiCIE with the paper's hyperparameters (the original sh_files/train_picie.sh).
#   nohup ./sh_files/train_picie.sh > logs/picie_train.out &
# Paths and a few knobs come from the environment; extra flags are passed through:
#   DATA_ROOT=/data/coco SAVE_ROOT=/scratch/results ./sh_files/train_picie.sh --restart
#   DRY_RUN=1 ./sh_files/train_picie.sh               # print the command
# The other training scripts (train_picie_h.sh, train_mdc.sh, train_picie_cityscapes.sh,
# train_picie_2aug.sh) run this one with ENTRY, DATASET_FLAGS, LR or TRANSFORMS changed, so the
# paper's settings are written down once, here.
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
LR=${LR:-1e-4}
ENTRY=${ENTRY:-train_picie.py}                  # train_mdc.py for the MDC baseline
DATASET_FLAGS=${DATASET_FLAGS:---stuff --thing}  # all 27 COCO-Stuff classes; --cityscapes for Cityscapes
TRANSFORMS=${TRANSFORMS:---augment --jitter --blur --grey --equiv --random_crop --h_flip}
# ImageNet init as in the paper; PRETRAIN="" trains from scratch, PRETRAIN="--pretrain_path FILE" uses a local file.
PRETRAIN=${PRETRAIN---pretrain}

CMD=($PYTHON "${ENTRY}"
  ${DATASET_FLAGS}
  --data_root "${DATA_ROOT}"
  --save_root "${SAVE_ROOT}"
  --run_name "${RUN_NAME}"
  ${PRETRAIN}
  --repeats 1
  --lr ${LR}
  --seed ${SEED}
  --num_init_batches ${KM_INIT}
  --num_batches ${KM_NUM}
  --kmeans_n_iter ${KM_ITER}
  --K_train ${K_train} --K_test ${K_test}
  --batch_size_cluster ${bsize}
  --batch_size_train 128
  --batch_size_test 128
  --num_epoch ${num_epoch}
  --res 320 --res1 320 --res2 640
  ${TRANSFORMS}
  "$@")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
mkdir -p "${SAVE_ROOT}" logs
"${CMD[@]}"
