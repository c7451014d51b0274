#!/usr/bin/env bash
# Train PiCIE with the paper's settings (--preset paper: the original sh_files/train_picie.sh's
# values, written once in config/presets.py).
#   nohup ./sh_files/train_picie.sh > logs/picie_train.out &
# Paths and a few knobs come from the environment; extra flags are passed through and win:
#   DATA_ROOT=/data/coco SAVE_ROOT=/scratch/results ./sh_files/train_picie.sh --restart
#   PRETRAIN=--no-pretrain ./sh_files/train_picie.sh   # from scratch; PRETRAIN="--pretrain_path FILE": a local file
#   DRY_RUN=1 ./sh_files/train_picie.sh               # print the command
#   PRESET=demo ./sh_files/train_picie.sh             # the demo preset's settings on the generated demo set
#   PRESET=demo EPOCHS=1 SEED=2 ./sh_files/train_picie.sh   # one epoch of the demo preset, training seed 2
# PRESET (paper, demo or tiny; TINY=1 is PRESET=tiny) is train_picie.py's --preset. With demo or tiny, DATA_ROOT
# defaults to the preset's generated set (made when missing) and LR to the preset's; with paper, to datasets/coco/
# and 1e-4. SEED (default 1), EPOCHS, LR, K_TRAIN, K_TEST, KM_INIT, KM_NUM, KM_ITER, MIN_SCALE, BS_CLUSTER, BS_TRAIN,
# BS_TEST, RES, RES1, RES2 and REPEATS override the preset's value of one flag each (sh_files/script_env.sh maps
# them); a variable of another script (or a misspelt one, EPOCH=1) is named in a warning.
# The other training scripts (train_picie_h.sh, train_mdc.sh, train_picie_cityscapes.sh, train_picie_coco171.sh,
# train_picie_dino.sh, train_picie_2aug.sh, train_picie_ddp.sh) run this one with ENTRY, DATASET_FLAGS, LR,
# TRANSFORMS or PYTHON changed, or with extra flags.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}  # may be a launcher with flags (train_picie_ddp.sh)
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie.sh ${TRAIN_SCRIPT_VARS}

[ "${TINY:-0}" = 1 ] && PRESET=tiny
PRESET=${PRESET:-paper}
case "${PRESET}" in
  paper) DATA_ROOT=${DATA_ROOT:-datasets/coco/}; LR=${LR:-1e-4} ;;
  demo|tiny) DATA_ROOT=${DATA_ROOT:-}; LR=${LR:-} ;;   # empty: the preset's (and its data made below)
  *) echo "error: PRESET=${PRESET}: choose paper, demo or tiny" >&2; exit 2 ;;
esac
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie}
SEED=${SEED:-1}
ENTRY=${ENTRY:-train_picie.py}   # train_mdc.py for the MDC baseline
DATASET_FLAGS=${DATASET_FLAGS:-} # --cityscapes for Cityscapes, --coco_classes 171 for COCO-Stuff-171 (preset: all 27)
TRANSFORMS=${TRANSFORMS:-}       # the preset's (all photometric, crop + h-flip); e.g. "--inv_list blur --eqv_list h_flip"
PRETRAIN=${PRETRAIN:-}           # the preset's ImageNet init; --no-pretrain or "--pretrain_path FILE"

env_flags ${OVERRIDABLE}   # SEED, LR (when set), EPOCHS, ... as flags

CMD=($PYTHON "${ENTRY}" --preset "${PRESET}"
  ${DATASET_FLAGS}
  ${DATA_ROOT:+--data_root "${DATA_ROOT}"}
  --save_root "${SAVE_ROOT}"
  --run_name "${RUN_NAME}"
  "${ENV_FLAGS[@]}"
  ${PRETRAIN}
  ${TRANSFORMS}
  "$@")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
if [ -z "${DATA_ROOT}" ]; then
  "$PYTHON" -m tools.make_demo --preset "${PRESET}" > /dev/null  # the preset's generated set; a no-op when there
elif [ ! -d "${DATA_ROOT}" ]; then
  echo "error: DATA_ROOT=${DATA_ROOT} is not a folder; set DATA_ROOT to the dataset root (docs/datasets.md), e.g. DATA_ROOT=/data/coco ./sh_files/train_picie.sh" >&2
  exit 2
fi
mkdir -p logs
"${CMD[@]}"
