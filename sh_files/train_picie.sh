#!/usr/bin/env bash
# Train PiCIE with the paper's settings (--preset paper: the original sh_files/train_picie.sh's
# values, written once in config/presets.py).
#   nohup ./sh_files/train_picie.sh > logs/picie_train.out &
# Paths and a few knobs come from the environment; extra flags are passed through and win:
#   DATA_ROOT=/data/coco SAVE_ROOT=/scratch/results ./sh_files/train_picie.sh --restart
#   PRETRAIN=--no-pretrain ./sh_files/train_picie.sh   # from scratch; PRETRAIN="--pretrain_path FILE": a local file
#   DRY_RUN=1 ./sh_files/train_picie.sh               # print the command
# The other training scripts (train_picie_h.sh, train_mdc.sh, train_picie_cityscapes.sh, train_picie_dino.sh,
# train_picie_2aug.sh, train_picie_ddp.sh) run this one with ENTRY, DATASET_FLAGS, LR, TRANSFORMS
# or PYTHON changed, or with extra flags.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}  # may be a launcher with flags (train_picie_ddp.sh)

DATA_ROOT=${DATA_ROOT:-datasets/coco/}
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie}
SEED=${SEED:-1}
LR=${LR:-1e-4}
ENTRY=${ENTRY:-train_picie.py}   # train_mdc.py for the MDC baseline
DATASET_FLAGS=${DATASET_FLAGS:-} # --cityscapes for Cityscapes (the preset evaluates all 27 COCO-Stuff classes)
TRANSFORMS=${TRANSFORMS:-}       # the preset's (all photometric, crop + h-flip); e.g. "--inv_list blur --eqv_list h_flip"
PRETRAIN=${PRETRAIN:-}           # the preset's ImageNet init; --no-pretrain or "--pretrain_path FILE"

CMD=($PYTHON "${ENTRY}" --preset paper
  ${DATASET_FLAGS}
  --data_root "${DATA_ROOT}"
  --save_root "${SAVE_ROOT}"
  --run_name "${RUN_NAME}"
  --seed "${SEED}"
  --lr "${LR}"
  ${PRETRAIN}
  ${TRANSFORMS}
  "$@")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
if [ ! -d "${DATA_ROOT}" ]; then
  echo "error: DATA_ROOT=${DATA_ROOT} is not a folder; set DATA_ROOT to the dataset root (docs/datasets.md), e.g. DATA_ROOT=/data/coco ./sh_files/train_picie.sh" >&2
  exit 2
fi
mkdir -p logs
"${CMD[@]}"
