#!/usr/bin/env bash
# Train the MDC baseline (modified DeepCluster) with the settings of sh_files/train_picie.sh:
# one view z1 = f(G(P1(x))), k-means + labels as PiCIE, a classifier trained with the network
# (re-initialised every epoch, its own Adam). NONPARAMETRIC=1 trains against the frozen
# centroids instead (--nonparametric).
#   nohup ./sh_files/train_mdc.sh > logs/mdc_train.out &
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

DATA_ROOT=${DATA_ROOT:-datasets/coco/}
SAVE_ROOT=${SAVE_ROOT:-results/}
NONPARAMETRIC=${NONPARAMETRIC:-0}
RUN_NAME=${RUN_NAME:-$([ "${NONPARAMETRIC}" = 1 ] && echo mdc_nonparametric || echo mdc)}
K_train=27
K_test=27
bsize=256
num_epoch=10
KM_INIT=20
KM_NUM=1
KM_ITER=20
SEED=${SEED:-1}
LR=1e-4
EXTRA=""; [ "${NONPARAMETRIC}" = 1 ] && EXTRA="--nonparametric"

mkdir -p "${SAVE_ROOT}" logs

"$PYTHON" train_mdc.py \
  --data_root "${DATA_ROOT}" \
  --save_root "${SAVE_ROOT}" \
  --run_name "${RUN_NAME}" \
  --pretrain \
  --repeats 1 \
  --lr ${LR} \
  --seed ${SEED} \
  --num_init_batches ${KM_INIT} \
  --num_batches ${KM_NUM} \
  --kmeans_n_iter ${KM_ITER} \
  --K_train ${K_train} --K_test ${K_test} \
  --stuff --thing \
  --batch_size_cluster ${bsize} \
  --batch_size_train 128 \
  --batch_size_test 128 \
  --num_epoch ${num_epoch} \
  --res 320 --res1 320 --res2 640 \
  --augment --jitter --blur --grey --equiv --random_crop --h_flip \
  ${EXTRA} \
  "$@"
