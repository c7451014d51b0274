# Shared by sh_files/ablate_transforms.sh and sh_files/sweep_hparams.sh (sourced, not run): the
# preset, the one-run helper and the closing comparison report. Settings from the environment:
#
#   PRESET=paper  (default) train_picie.py --preset paper: COCO-Stuff at datasets/coco/, ImageNet
#                 init, res 320, 10 epochs, K 27 (values in config/presets.py)
#   PRESET=demo   --preset demo: the generated demo set (made in datasets/demo if missing), the
#                 demo's budget and settings, the untrained network scored too
#   PRESET=tiny   (or TINY=1) --preset tiny: a tiny generated set, 1 epoch, CPU fp32: seconds a
#                 run, to check a script end to end
#   DRY_RUN=1     print the commands instead of running them
#   DATA_ROOT, SAVE_ROOT, REPORT_DIR, PYTHON, and EPOCHS LR K_TRAIN K_TEST KM_INIT KM_NUM KM_ITER
#   MIN_SCALE BS_CLUSTER BS_TRAIN BS_TEST RES RES1 RES2 REPEATS SEED override the preset's values
#   (sh_files/script_env.sh). A variable of another script (PHOTO, RUN_NAME) or a misspelt one
#   (EPOCH) is named in a warning.
#
# Every run of one script uses the same seed and budget. A run whose folder already holds
# final_metrics.json is kept (so an interrupted script can simply be started again); one with
# only a checkpoint is continued (--restart). Each run's console output goes to
# <run folder>/console.log; one line per run is printed. Extra arguments of the script are passed
# to every run (e.g. --num_workers 8).

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
# SCRIPT_VARS: the sourcing script's own variables; any other of the family set is named in a warning.
check_script_env "sh_files/$(basename "$0")" ${EXPERIMENT_VARS} ${SCRIPT_VARS:-}
[ "${TINY:-0}" = 1 ] && PRESET=tiny
PRESET=${PRESET:-paper}
DRY_RUN=${DRY_RUN:-0}
case "${PRESET}" in
  paper|demo|tiny) ;;
  *) echo "error: PRESET=${PRESET}: choose paper, demo or tiny" >&2; exit 2 ;;
esac
# Overrides given in the environment (FLAG_OF in script_env.sh), as flags; every other value is the preset's.
env_flags ${OVERRIDABLE}
[ -n "${DATA_ROOT:-}" ] && ENV_FLAGS+=(--data_root "${DATA_ROOT}")
RUN_DIRS=()
FAILED=()

# The report folder of a results folder, unless REPORT_DIR is given: reports/ + SAVE_ROOT's path below
# results/ (or <SAVE_ROOT>_report elsewhere), so that two SAVE_ROOTs (two seeds, two sweeps) keep two reports.
default_report_dir() {
  if [[ "${SAVE_ROOT}" == results/* ]]; then
    REPORT_DIR=${REPORT_DIR:-reports/${SAVE_ROOT#results/}}
  else
    REPORT_DIR=${REPORT_DIR:-${SAVE_ROOT%/}_report}
  fi
}

# preset_values FLAG...: the values the preset (and the environment's overrides) give these flags.
preset_values() {
  "$PYTHON" -m config --preset "${PRESET}" "${ENV_FLAGS[@]}" --get "$@"
}

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
  if [ "${PRESET}" != paper ] && [ -z "${DATA_ROOT:-}" ]; then
    if [ "${DRY_RUN}" = 1 ]; then
      run_or_print "$PYTHON" -m tools.make_demo --preset "${PRESET}"
    else
      "$PYTHON" -m tools.make_demo --preset "${PRESET}" > /dev/null
    fi
  fi
}

# run_one NAME [VAR=value ...] [-- train_picie flags ...]: one training run into SAVE_ROOT/NAME.
run_one() {
  local name=$1
  shift
  local overrides=()
  while [ $# -gt 0 ] && [[ "$1" == *=* ]]; do
    local var=${1%%=*}
    if [[ " ${OVERRIDABLE} " != *" ${var} "* ]]; then
      echo "error: run_one ${name}: unknown setting ${var} (known: ${OVERRIDABLE})" >&2
      exit 2
    fi
    overrides+=("${FLAG_OF[$var]}" "${1#*=}")
    shift
  done
  [ "${1:-}" = "--" ] && shift
  local dir="${SAVE_ROOT%/}/${name}"
  local cmd=("$PYTHON" train_picie.py --preset "${PRESET}" --save_root "${SAVE_ROOT}" --run_name "${name}"
             "${ENV_FLAGS[@]}" "${overrides[@]}" "$@" "${PASS_THROUGH[@]}")
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

# use_holdout: point every run at a labelled hold-out of the training images instead of the data
# root itself (sh_files/sweep_hparams.sh). DATA_ROOT, or the preset's data root, is used as it is
# when it already is a hold-out root (HOLDOUT.json); otherwise HOLDOUT_ROOT (default
# <root>_holdout) is made from it by tools/make_holdout.py when missing (HOLDOUT_N images, else
# HOLDOUT_FRACTION; the paper preset holds out 2000 images, the others 0.2) and DATA_ROOT becomes it.
use_holdout() {
  local source=${DATA_ROOT:-}
  if [ -z "${source}" ]; then
    read -r source < <(preset_values data_root)
  fi
  if [ -f "${source%/}/HOLDOUT.json" ]; then
    DATA_ROOT=${source}
  else
    local out=${HOLDOUT_ROOT:-${source%/}_holdout} size=()
    if [ -n "${HOLDOUT_N:-}" ]; then
      size=(--n_holdout "${HOLDOUT_N}")
    elif [ "${PRESET}" = paper ] && [ -z "${HOLDOUT_FRACTION:-}" ]; then
      size=(--n_holdout 2000)
    else
      size=(--fraction "${HOLDOUT_FRACTION:-0.2}")
    fi
    local cmd=("$PYTHON" -m tools.make_holdout --data_root "${source}" --out "${out}" "${size[@]}" --seed 0)
    if [ "${DRY_RUN}" = 1 ]; then
      run_or_print "${cmd[@]}"
    else
      "${cmd[@]}" > /dev/null  # a bad root or a foreign --out: one line on stderr, exit 2
    fi
    DATA_ROOT=${out}
  fi
  # Every later run reads the hold-out root (replacing a --data_root the environment gave).
  local flags=() i
  for ((i = 0; i < ${#ENV_FLAGS[@]}; i++)); do
    if [ "${ENV_FLAGS[i]}" = --data_root ]; then
      i=$((i + 1))
    else
      flags+=("${ENV_FLAGS[i]}")
    fi
  done
  ENV_FLAGS=("${flags[@]}" --data_root "${DATA_ROOT}")
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
    run_or_print "$PYTHON" -m tools.compare_runs "${dirs[@]}" --out "${REPORT_DIR}" --title "${title}"
  fi
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "error: ${#FAILED[@]} run(s) failed: ${FAILED[*]}" >&2
    exit 1
  fi
}
