#!/usr/bin/env bash
# Train PiCIE with exactly one photometric and one geometric transform; every other setting is the
# preset's: it runs sh_files/train_picie.sh with only --inv_list PHOTO --eqv_list GEO added.
# PRESET (paper by default, demo or tiny), DATA_ROOT, SAVE_ROOT, RUN_NAME and the one-flag variables (SEED,
# EPOCHS, LR, ...) work as in train_picie.sh (PRESET=demo trains on the generated demo set, made when missing).
#   PHOTO: jitter | brightness | contrast | saturation | hue | grey | blur
#          (jitter, the default, is four operations: brightness, contrast, saturation and hue, each
#          drawn with p 0.8; the other names are one operation each)
#   GEO:   random_crop (default) | h_flip | v_flip
#   PRESET=demo ./sh_files/train_picie_2aug.sh                          # homework question 2 on the demo
#   PRESET=demo PHOTO=hue ./sh_files/train_picie_2aug.sh                # a single colour operation
#   nohup ./sh_files/train_picie_2aug.sh > logs/picie_2aug.out &        # paper settings, datasets/coco/
#   DRY_RUN=1 PRESET=demo ./sh_files/train_picie_2aug.sh                # print the command
# docs/homework.md (question 2) gives what the demo measured and the times.
PHOTO=${PHOTO:-jitter}
GEO=${GEO:-random_crop}

set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/train_picie_2aug.sh PHOTO GEO ${TRAIN_SCRIPT_VARS}

case "${PHOTO}" in
  jitter|brightness|contrast|saturation|hue|grey|blur) ;;
  *) echo "error: PHOTO=${PHOTO}: one photometric transform: jitter, brightness, contrast, saturation, hue, grey or blur" >&2
     exit 2 ;;
esac
case "${GEO}" in
  random_crop|h_flip|v_flip) ;;
  *) echo "error: GEO=${GEO}: one geometric transform: random_crop, h_flip or v_flip" >&2
     exit 2 ;;
esac

PRESET=${PRESET:-paper}
if [ "${PRESET}" = paper ]; then
  export RUN_NAME=${RUN_NAME:-picie_2aug_${PHOTO}_${GEO}}
else
  export RUN_NAME=${RUN_NAME:-picie_2aug_${PRESET}_${PHOTO}_${GEO}}
fi
export PRESET
export TRANSFORMS="--inv_list ${PHOTO} --eqv_list ${GEO}"
exec ./sh_files/train_picie.sh "$@"
