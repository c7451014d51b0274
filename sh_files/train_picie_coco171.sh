#!/usr/bin/env bash
# Train PiCIE and score it on COCO-Stuff-171 (the 80 thing + 91 stuff fine classes) instead of the 27
# coarse classes: the settings of sh_files/train_picie.sh (it runs it) with --coco_classes 171, which
# also sets K_train = K_test = 171 (the preset's 27 is the 27-class count). Same images, labels and
# curated lists as COCO-Stuff-27; what 171 is and how long an epoch takes: docs/datasets.md.
#   nohup ./sh_files/train_picie_coco171.sh > logs/picie_coco171.out &
# Paths come from the environment as for train_picie.sh; extra flags are passed through and win
# (e.g. --K_train 300 to over-cluster, scored many-to-one beside the Hungarian matching).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_coco171.sh ${TRAIN_SCRIPT_VARS}
export RUN_NAME=${RUN_NAME:-picie_coco171}
export DATASET_FLAGS="--coco_classes 171"
exec ./sh_files/train_picie.sh "$@"
