#!/usr/bin/env bash
# Hyperparameter sweep, one factor at a time: a base run with the preset's values, then one run
# per listed value of each parameter with every other setting at its base value; each run's folder
# is named after what changed (base, lr_3e-4, K_train_54, ...). Then a comparison report
# (tools/compare_runs.py). Parameters and their lists (a value equal to the base value is the base run):
#   LRS            --lr
#   K_TRAINS       --K_train, the training k-means' clusters; K_test stays: over-clustering
#                  (K_train > K_test) is scored by the many-to-one matching of the K_train clusters
#                  and by a fresh K_test clustering every epoch (both in metrics.jsonl), and finally
#                  by the fresh K_test clustering as always
#   KM_INITS       --num_init_batches, batches of the initial k-means of every epoch
#   KM_ITERS       --kmeans_n_iter, Lloyd iterations of that k-means
#   MIN_SCALES     --min_scale, smallest random crop (fraction of the image side)
#   BS_TRAINS      --batch_size_train
#   RES1S          --res1, the training views' size (--res2 = 2 x res1; evaluation stays at --res)
# PARAMS picks the parameters to sweep (default all: "lr K_train num_init_batches kmeans_n_iter
# min_scale batch_size_train res1").
#
# Scored on a hold-out, not on val: choosing settings by their val score and then reporting val
# reports the best of several noisy draws (docs/understanding_picie.md, "Tuning without touching
# val"). Unless DATA_ROOT already is a hold-out root (it holds HOLDOUT.json), every run trains on
# <data root>_holdout (HOLDOUT_ROOT), made by tools/make_holdout.py when missing: the data root's
# curated train images minus a labelled hold-out of them (HOLDOUT_N images, default 2000 for the
# paper preset; otherwise HOLDOUT_FRACTION, default 0.2), which is what every run is scored on.
# SCORE_ON_VAL=1 scores on the val split instead (and says so in the report's title).
# Results go to SAVE_ROOT (default results/sweep_hparams_<preset>_holdout, or _val), the report to
# REPORT_DIR (default: reports/ + SAVE_ROOT without its leading results/, or <SAVE_ROOT>_report),
# so that two sweeps with two SAVE_ROOTs write two reports.
#
#   PRESET=demo ./sh_files/sweep_hparams.sh                     # 21 runs; docs/homework.md times them
#   PRESET=demo PARAMS="K_train" ./sh_files/sweep_hparams.sh    # over-clustering only
#   PRESET=demo PARAMS=lr LRS=1e-3 SEED=2 SAVE_ROOT=results/sweep_seed2 ./sh_files/sweep_hparams.sh
#   DRY_RUN=1 ./sh_files/sweep_hparams.sh                       # print the commands (paper settings)
#   TINY=1 ./sh_files/sweep_hparams.sh                          # seconds a run, on a tiny demo set
#
# Presets, DRY_RUN, TINY and the other environment settings: sh_files/experiment_common.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PASS_THROUGH=("$@")

SCRIPT_VARS="PARAMS LRS K_TRAINS KM_INITS KM_ITERS MIN_SCALES BS_TRAINS RES1S HOLDOUT_ROOT HOLDOUT_N
  HOLDOUT_FRACTION SCORE_ON_VAL"
# shellcheck source=sh_files/experiment_common.sh
source sh_files/experiment_common.sh
SCORED_ON=holdout
[ "${SCORE_ON_VAL:-0}" = 1 ] && SCORED_ON=val
SAVE_ROOT=${SAVE_ROOT:-results/sweep_hparams_${PRESET}_${SCORED_ON}}
default_report_dir
# The preset's base values of the swept parameters (with the environment's overrides).
read -r -d '' LR K_TRAIN KM_INIT KM_ITER MIN_SCALE BS_TRAIN RES1 SEED EPOCHS \
  < <(preset_values lr K_train num_init_batches kmeans_n_iter min_scale batch_size_train res1 seed num_epoch) || true

case "${PRESET}" in
  paper)
    : "${LRS:=3e-5 1e-4 3e-4 1e-3}" "${K_TRAINS:=27 54 100}" "${KM_INITS:=5 20 40}" "${KM_ITERS:=5 20 50}"
    : "${MIN_SCALES:=0.25 0.5 0.75}" "${BS_TRAINS:=64 128 256}" "${RES1S:=224 320 448}"
    ;;
  demo)
    : "${LRS:=3e-5 1e-4 3e-4 1e-3}" "${K_TRAINS:=15 30 60}" "${KM_INITS:=1 2 4}" "${KM_ITERS:=5 20 50}"
    : "${MIN_SCALES:=0.25 0.5 0.75}" "${BS_TRAINS:=8 16 32}" "${RES1S:=64 96 128}"
    ;;
  tiny)
    : "${LRS:=1e-3}" "${K_TRAINS:=30}" "${KM_INITS:=2}" "${KM_ITERS:=10}"
    : "${MIN_SCALES:=0.75}" "${BS_TRAINS:=6}" "${RES1S:=48}"
    ;;
esac
ALL_PARAMS="lr K_train num_init_batches kmeans_n_iter min_scale batch_size_train res1"
PARAMS=${PARAMS:-${ALL_PARAMS}}
for param in ${PARAMS}; do
  if [[ " ${ALL_PARAMS} " != *" ${param} "* ]]; then
    echo "error: PARAMS: unknown parameter '${param}'; choose from: ${ALL_PARAMS}" >&2
    exit 2
  fi
done

# sweep PARAM VARIABLE BASE_VALUE VALUES...: one run per value that differs from the base.
sweep() {
  local param=$1 variable=$2 base=$3
  shift 3
  [[ " ${PARAMS} " == *" ${param} "* ]] || return 0
  for value in "$@"; do
    awk -v a="${value}" -v b="${base}" 'BEGIN { exit !(a + 0 == b + 0) }' && continue  # 1e-4 == 0.0001
    if [ "${variable}" = RES1 ]; then
      run_one "${param}_${value}" "RES1=${value}" "RES2=$((2 * value))"
    else
      run_one "${param}_${value}" "${variable}=${value}"
    fi
  done
}

prepare_data
if [ "${SCORED_ON}" = holdout ]; then
  use_holdout
  SCORED="scored on the hold-out ${DATA_ROOT}"
else
  SCORED="scored on the val split (SCORE_ON_VAL=1)"
fi
echo "hyperparameter sweep (${PRESET} preset, seed ${SEED}, ${EPOCHS} epochs, ${SCORED}) into ${SAVE_ROOT}"
run_one base
# shellcheck disable=SC2086  # the value lists are space separated on purpose
{
  sweep lr LR "${LR}" ${LRS}
  sweep K_train K_TRAIN "${K_TRAIN}" ${K_TRAINS}
  sweep num_init_batches KM_INIT "${KM_INIT}" ${KM_INITS}
  sweep kmeans_n_iter KM_ITER "${KM_ITER}" ${KM_ITERS}
  sweep min_scale MIN_SCALE "${MIN_SCALE}" ${MIN_SCALES}
  sweep batch_size_train BS_TRAIN "${BS_TRAIN}" ${BS_TRAINS}
  sweep res1 RES1 "${RES1}" ${RES1S}
}
compare_all "Hyperparameter sweep (${PRESET} preset, seed ${SEED}, ${SCORED})"
