#!/usr/bin/env bash
# Train the MDC baseline (modified DeepCluster) with the settings of sh_files/train_picie.sh (it
# runs it with train_mdc.py): one view z1 = f(G(P1(x))), k-means + labels as PiCIE, a classifier
# trained with the network (re-initialised every epoch, its own Adam). NONPARAMETRIC=1 trains
# against the frozen centroids instead (--nonparametric).
#   nohup ./sh_files/train_mdc.sh > logs/mdc_train.out &
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_mdc.sh NONPARAMETRIC ${TRAIN_SCRIPT_VARS}
NONPARAMETRIC=${NONPARAMETRIC:-0}
EXTRA=()
[ "${NONPARAMETRIC}" = 1 ] && EXTRA=(--nonparametric)
export RUN_NAME=${RUN_NAME:-$([ "${NONPARAMETRIC}" = 1 ] && echo mdc_nonparametric || echo mdc)}
export ENTRY=train_mdc.py
exec ./sh_files/train_picie.sh "${EXTRA[@]}" "$@"
