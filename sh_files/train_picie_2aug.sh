#!/usr/bin/env bash
# Train PiCIE with exactly one photometric and one geometric transform (by default colour jitter,
# i.e. brightness + contrast + saturation + hue, and the random resized crop); every other setting
# is the paper's, as in sh_files/train_picie.sh. Pick the two transforms here or from the environment:
#   PHOTO: jitter | brightness | contrast | saturation | hue | grey | blur
#   GEO:   random_crop | h_flip | v_flip
#   nohup ./sh_files/train_picie_2aug.sh > logs/picie_2aug.out &
#   PHOTO=blur GEO=h_flip ./sh_files/train_picie_2aug.sh
#   DRY_RUN=1 ./sh_files/train_picie_2aug.sh        # print the command
PHOTO=${PHOTO:-jitter}
GEO=${GEO:-random_crop}

set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

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

DATA_ROOT=${DATA_ROOT:-datasets/coco/}
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie_2aug_${PHOTO}_${GEO}}
K_train=27
K_test=27
bsize=256
num_epoch=10
KM_INIT=20
KM_NUM=1
KM_ITER=20
SEED=${SEED:-1}
LR=1e-4

CMD=("$PYTHON" train_picie.py
  --data_root "${DATA_ROOT}"
  --save_root "${SAVE_ROOT}"
  --run_name "${RUN_NAME}"
  --pretrain
  --repeats 1
  --lr ${LR}
  --seed ${SEED}
  --num_init_batches ${KM_INIT}
  --num_batches ${KM_NUM}
  --kmeans_n_iter ${KM_ITER}
  --K_train ${K_train} --K_test ${K_test}
  --stuff --thing
  --batch_size_cluster ${bsize}
  --batch_size_train 128
  --batch_size_test 128
  --num_epoch ${num_epoch}
  --res 320 --res1 320 --res2 640
  --inv_list "${PHOTO}" --eqv_list "${GEO}"
  "$@")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
mkdir -p "${SAVE_ROOT}" logs
"${CMD[@]}"
