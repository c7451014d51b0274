#!/usr/bin/env bash
# Train PiCIE with exactly one photometric and one geometric transform (by default colour jitter,
# i.e. brightness + contrast + saturation + hue, and the random resized crop); every other setting
# is the paper's: it runs sh_files/train_picie.sh with only those two. Pick the two transforms
# here or from the environment:
#   PHOTO: jitter | brightness | contrast | saturation | hue | grey | blur
#   GEO:   random_crop | h_flip | v_flip
#   nohup ./sh_files/train_picie_2aug.sh > logs/picie_2aug.out &
#   PHOTO=blur GEO=h_flip ./sh_files/train_picie_2aug.sh
#   DRY_RUN=1 ./sh_files/train_picie_2aug.sh        # print the command
PHOTO=${PHOTO:-jitter}
GEO=${GEO:-random_crop}

set -euo pipefail
cd "$(dirname "$0")/.."

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

export RUN_NAME=${RUN_NAME:-picie_2aug_${PHOTO}_${GEO}}
export TRANSFORMS="--inv_list ${PHOTO} --eqv_list ${GEO}"
exec ./sh_files/train_picie.sh "$@"
