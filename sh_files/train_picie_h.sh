#!/usr/bin/env bash
# Train PiCIE+H: PiCIE with an auxiliary over-clustering head (K_aux = 100 clusters per view,
# clustered on the same features, its within/cross-view loss summed with the K_train loss),
# evaluated on the K_test = 27 head. Every other setting is sh_files/train_picie.sh's (it runs it).
#   nohup ./sh_files/train_picie_h.sh > logs/picie_h_train.out &
#   K_AUX=54 ./sh_files/train_picie_h.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_h.sh K_AUX ${TRAIN_SCRIPT_VARS}
export RUN_NAME=${RUN_NAME:-picie_h}
exec ./sh_files/train_picie.sh --overcluster --K_aux "${K_AUX:-100}" "$@"
