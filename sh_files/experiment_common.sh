# Shared by sh_files/ablate_transforms.sh and sh_files/sweep_hparams.sh (sourced, not run): the
# presets, the one-run helper and the closing comparison report. Settings from the environment:
#
#   PRESET=paper  (default) sh_files/train_picie.sh's settings: COCO-Stuff at DATA_ROOT (default
#                 datasets/coco/), ImageNet init (--pretrain), res 320, 10 epochs, K 27
#   PRESET=demo   sh_files/demo.sh's settings: the generated demo set (480 train + 40 val images,
#                 written to datasets/demo if missing), res 96, 5 epochs, K 15, 3 final repeats,
#                 the untrained network scored too (--eval_init); 70-99 s a run on 2 CPU cores
#   PRESET=tiny   (or TINY=1) 12 + 6 generated images, res 64, 1 epoch, CPU fp32: seconds a run, to
#                 check a script end to end
#   DRY_RUN=1     print the commands instead of running them
#   DATA_ROOT, SAVE_ROOT, REPORT_DIR, PYTHON, and the base values SEED EPOCHS LR K_TRAIN K_TEST
#   KM_INIT KM_NUM KM_ITER MIN_SCALE BS_CLUSTER BS_TRAIN BS_TEST RES RES1 RES2 REPEATS override the preset.
#
# Every run of one script uses the same seed and budget. A run whose folder already holds
# final_metrics.json is kept (so an interrupted script can simply be started again); one with
# only a checkpoint is continued (--restart). Each run's console output goes to
# <run folder>/console.log; one line per run is printed. Extra arguments of the script are passed
# to every run (e.g. --num_workers 8).

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
[ "${TINY:-0}" = 1 ] && PRESET=tiny
PRESET=${PRESET:-paper}
DRY_RUN=${DRY_RUN:-0}
USER_DATA_ROOT=${DATA_ROOT:-}

case "${PRESET}" in
  paper)
    : "${DATA_ROOT:=datasets/coco/}"
    : "${EPOCHS:=10}" "${LR:=1e-4}" "${K_TRAIN:=27}" "${K_TEST:=27}" "${KM_INIT:=20}" "${KM_NUM:=1}" "${KM_ITER:=20}"
    : "${MIN_SCALE:=0.5}" "${BS_CLUSTER:=256}" "${BS_TRAIN:=128}" "${BS_TEST:=128}"
    : "${RES:=320}" "${RES1:=320}" "${RES2:=640}" "${REPEATS:=1}"
    PRESET_FLAGS=(--stuff --thing --pretrain)
    DEMO_SIZE=""
    ;;
  demo)
    : "${DATA_ROOT:=datasets/demo}"
    : "${EPOCHS:=5}" "${LR:=1e-4}" "${K_TRAIN:=15}" "${K_TEST:=15}" "${KM_INIT:=2}" "${KM_NUM:=1}" "${KM_ITER:=20}"
    : "${MIN_SCALE:=0.5}" "${BS_CLUSTER:=64}" "${BS_TRAIN:=16}" "${BS_TEST:=40}"
    : "${RES:=96}" "${RES1:=96}" "${RES2:=192}" "${REPEATS:=3}"
    PRESET_FLAGS=(--stuff --eval_init --num_workers 2)
    DEMO_SIZE="--n_train 480 --n_val 40"
    ;;
  tiny)
    : "${DATA_ROOT:=datasets/demo_tiny}"
    : "${EPOCHS:=1}" "${LR:=1e-4}" "${K_TRAIN:=15}" "${K_TEST:=15}" "${KM_INIT:=1}" "${KM_NUM:=1}" "${KM_ITER:=5}"
    : "${MIN_SCALE:=0.5}" "${BS_CLUSTER:=8}" "${BS_TRAIN:=4}" "${BS_TEST:=8}"
    : "${RES:=64}" "${RES1:=64}" "${RES2:=128}" "${REPEATS:=1}"
    PRESET_FLAGS=(--stuff --num_workers 0 --device cpu --precision fp32)
    DEMO_SIZE="--n_train 12 --n_val 6"
    ;;
  *)
    echo "error: PRESET=${PRESET}: choose paper, demo or tiny" >&2
    exit 2
    ;;
esac
: "${SEED:=1}"
# Names of the base values run_one accepts as NAME=value overrides.
OVERRIDABLE="EPOCHS LR K_TRAIN K_TEST KM_INIT KM_NUM KM_ITER MIN_SCALE BS_CLUSTER BS_TRAIN BS_TEST RES RES1 RES2 REPEATS SEED"
RUN_DIRS=()
FAILED=()

# Print a command (shell-quoted) instead of running it under DRY_RUN=1.
run_or_print() {
  if [ "${DRY_RUN}" = 1 ]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

# The demo presets make their data when DATA_ROOT was not given (a no-op when it exists).
prepare_data() {
  if [ -n "${DEMO_SIZE}" ] && [ -z "${USER_DATA_ROOT}" ]; then
    # shellcheck disable=SC2086  # DEMO_SIZE is a list of flags
    if [ "${DRY_RUN}" = 1 ]; then
      run_or_print "$PYTHON" -m data.make_demo --root "${DATA_ROOT}" ${DEMO_SIZE} --seed 0
    else
      "$PYTHON" -m data.make_demo --root "${DATA_ROOT}" ${DEMO_SIZE} --seed 0 > /dev/null
    fi
  fi
}

# The flags of one run from the (possibly overridden) base values.
base_flags() {
  FLAGS=(--data_root "${DATA_ROOT}" --save_root "${SAVE_ROOT}" --seed "${SEED}" --num_epoch "${EPOCHS}"
         --lr "${LR}" --K_train "${K_TRAIN}" --K_test "${K_TEST}"
         --num_init_batches "${KM_INIT}" --num_batches "${KM_NUM}" --kmeans_n_iter "${KM_ITER}"
         --min_scale "${MIN_SCALE}" --batch_size_cluster "${BS_CLUSTER}" --batch_size_train "${BS_TRAIN}"
         --batch_size_test "${BS_TEST}" --res "${RES}" --res1 "${RES1}" --res2 "${RES2}" --repeats "${REPEATS}"
         "${PRESET_FLAGS[@]}")
}

# run_one NAME [VAR=value ...] [-- train_picie flags ...]: one training run into SAVE_ROOT/NAME.
run_one() {
  local name=$1
  shift
  local EPOCHS=$EPOCHS LR=$LR K_TRAIN=$K_TRAIN K_TEST=$K_TEST KM_INIT=$KM_INIT KM_NUM=$KM_NUM KM_ITER=$KM_ITER
  local MIN_SCALE=$MIN_SCALE BS_CLUSTER=$BS_CLUSTER BS_TRAIN=$BS_TRAIN BS_TEST=$BS_TEST RES=$RES RES1=$RES1
  local RES2=$RES2 REPEATS=$REPEATS SEED=$SEED
  while [ $# -gt 0 ] && [[ "$1" == *=* ]]; do
    local var=${1%%=*}
    if [[ " ${OVERRIDABLE} " != *" ${var} "* ]]; then
      echo "error: run_one ${name}: unknown setting ${var} (known: ${OVERRIDABLE})" >&2
      exit 2
    fi
    local "$1"
    shift
  done
  [ "${1:-}" = "--" ] && shift
  base_flags
  local dir="${SAVE_ROOT%/}/${name}"
  local cmd=("$PYTHON" train_picie.py --run_name "${name}" "${FLAGS[@]}" "$@" "${PASS_THROUGH[@]}")
  RUN_DIRS+=("${dir}")
  if [ "${DRY_RUN}" = 1 ]; then
    run_or_print "${cmd[@]}"
    return 0
  fi
  if [ -f "${dir}/final_metrics.json" ]; then
    echo "[${name}] finished before: kept (${dir})"
    return 0
  fi
  [ -f "${dir}/checkpoint.pth" ] && cmd+=(--restart)
  mkdir -p "${dir}"
  local started=$SECONDS status=0
  "${cmd[@]}" >> "${dir}/console.log" 2>&1 || status=$?
  if [ "${status}" = 0 ]; then
    echo "[${name}] done in $((SECONDS - started))s: $("$PYTHON" -c 'import json, sys
f = json.load(open(sys.argv[1]))
print("final acc %.2f, mIoU %.2f" % (f["acc"], f["mIoU"]) if "acc" in f else "no labelled val images")' \
      "${dir}/final_metrics.json")"
  else
    echo "[${name}] FAILED (exit ${status}); see ${dir}/console.log"
    FAILED+=("${name}")
  fi
}

# One report over every run of the script (those that got as far as writing config.json).
compare_all() {
  local title=$1
  local dirs=()
  for dir in "${RUN_DIRS[@]}"; do
    if [ "${DRY_RUN}" = 1 ] || [ -f "${dir}/config.json" ]; then
      dirs+=("${dir}")
    fi
  done
  if [ ${#dirs[@]} -gt 0 ]; then
    run_or_print "$PYTHON" tools/compare_runs.py "${dirs[@]}" --out "${REPORT_DIR}" --title "${title}"
  fi
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "error: ${#FAILED[@]} run(s) failed: ${FAILED[*]}" >&2
    exit 1
  fi
}
