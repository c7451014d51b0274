# Sourced by the scripts of sh_files/ (not run): the environment variables they read, in one place.
#
# FLAG_OF maps the variables that override one train_picie.py flag (train_picie.sh, every script
# built on it, demo.sh, and the experiment scripts through experiment_common.sh all honour them):
#   EPOCHS LR K_TRAIN K_TEST KM_INIT KM_NUM KM_ITER MIN_SCALE BS_CLUSTER BS_TRAIN BS_TEST RES RES1
#   RES2 REPEATS SEED
#
# check_script_env SCRIPT VARIABLE...: a variable the scripts here know (SCRIPT_FAMILY_VARS) that is
# set but that SCRIPT does not read, or a near miss of one (EPOCH for EPOCHS, KTRAIN for K_TRAIN), is
# named in one warning line on stderr; the script then runs as it would without it. A script that
# runs another (train_picie_2aug.sh runs train_picie.sh) checks once, for both: it lists the other's
# variables too, and the one it runs skips the check.
declare -A FLAG_OF=([EPOCHS]=--num_epoch [LR]=--lr [K_TRAIN]=--K_train [K_TEST]=--K_test
  [KM_INIT]=--num_init_batches [KM_NUM]=--num_batches [KM_ITER]=--kmeans_n_iter [MIN_SCALE]=--min_scale
  [BS_CLUSTER]=--batch_size_cluster [BS_TRAIN]=--batch_size_train [BS_TEST]=--batch_size_test [RES]=--res
  [RES1]=--res1 [RES2]=--res2 [REPEATS]=--repeats [SEED]=--seed)
# FLAG_OF's names, in the order their flags are written (one line: scripts match ' NAME ' in it).
OVERRIDABLE="EPOCHS LR K_TRAIN K_TEST KM_INIT KM_NUM KM_ITER MIN_SCALE BS_CLUSTER BS_TRAIN BS_TEST RES RES1 RES2 REPEATS SEED"

# The variables of train_picie.sh, which every training script runs.
TRAIN_SCRIPT_VARS="PRESET TINY DRY_RUN DATA_ROOT SAVE_ROOT RUN_NAME ENTRY DATASET_FLAGS TRANSFORMS PRETRAIN ${OVERRIDABLE}"
# The variables of experiment_common.sh, which the ablations and the sweep source.
EXPERIMENT_VARS="PRESET TINY DRY_RUN DATA_ROOT SAVE_ROOT REPORT_DIR ${OVERRIDABLE}"
# Every variable some script here reads (PYTHON and the system's own, such as OMP_NUM_THREADS, are
# left out: they are set for other programs too).
SCRIPT_FAMILY_VARS="${TRAIN_SCRIPT_VARS} REPORT_DIR PHOTO GEO NONPARAMETRIC K_AUX GPUS NNODES NODE_RANK
  MASTER_ADDR MASTER_PORT TORCHRUN EVAL_PATH OUT COMBOS PHOTO_ALL GEO_ALL PHOTO_SINGLES GEO_SINGLES SEEDS
  ROWS PHOTO_1 GEO_1 INVARIANCE PARAMS LRS K_TRAINS KM_INITS KM_ITERS MIN_SCALES BS_TRAINS RES1S
  HOLDOUT_ROOT HOLDOUT_N HOLDOUT_FRACTION SCORE_ON_VAL"

check_script_env() {
  local script=$1
  shift
  [ -n "${_SCRIPT_ENV_CHECKED:-}" ] && return 0
  export _SCRIPT_ENV_CHECKED=1
  local reads=" $* " family=" ${SCRIPT_FAMILY_VARS//$'\n'/ } " name known form known_form
  for name in $(compgen -e); do
    [ -n "${!name:-}" ] || continue
    [[ "${reads}" == *" ${name} "* ]] && continue
    if [[ "${family}" == *" ${name} "* ]]; then
      echo "warning: ${name}=${!name} is not read by ${script}; it runs without it (its variables: the header of ${script})" >&2
      continue
    fi
    # A near miss: the same name without underscores and a trailing S (EPOCH for EPOCHS, KTRAIN for K_TRAIN).
    form=${name//_/}
    for known in ${reads} ${family}; do
      known_form=${known//_/}
      if [ "${form%S}" = "${known_form%S}" ]; then
        echo "warning: ${name}=${!name} is not a variable of ${script}; did you mean ${known}?" >&2
        break
      fi
    done
  done
}

# env_flags VARIABLE...: the train_picie.py flags of those FLAG_OF variables that are set, into ENV_FLAGS.
env_flags() {
  local var
  ENV_FLAGS=()
  for var in "$@"; do
    [ -n "${!var:-}" ] && ENV_FLAGS+=("${FLAG_OF[$var]}" "${!var}")
  done
  return 0
}
