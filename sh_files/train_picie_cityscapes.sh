#!/usr/bin/env bash
# Train PiCIE on Cityscapes-27 with the original's Cityscapes settings: those of
# sh_files/train_picie.sh (it runs it) with --cityscapes and lr 1e-3. Trains on the leftImg8bit
# train_extra + test frames (no labels needed), evaluates on val + train (gtFine labelIds
# 7..33 -> 27 classes).
#   nohup ./sh_files/train_picie_cityscapes.sh > logs/picie_cityscapes.out &
# Paths come from the environment; extra flags are passed through (e.g. --restart, or
# --cityscapes_train_splits train when only the fine-annotated splits are on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_cityscapes.sh ${TRAIN_SCRIPT_VARS}
export DATA_ROOT=${DATA_ROOT:-datasets/cityscapes/}
export RUN_NAME=${RUN_NAME:-picie_cityscapes}
export LR=${LR:-1e-3}
export DATASET_FLAGS=--cityscapes
exec ./sh_files/train_picie.sh "$@"
