#!/usr/bin/env bash
# Train PiCIE+H: PiCIE with an auxiliary over-clustering head (K_aux = 100 clusters per view,
# clustered on the same features, its within/cross-view loss summed with the K_train loss),
# evaluated on the K_test = 27 head. Otherwise the settings of sh_files/train_picie.sh.
#   nohup ./sh_files/train_picie_h.sh > logs/picie_h_train.out &
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

DATA_ROOT=${DATA_ROOT:-datasets/coco/}
SAVE_ROOT=${SAVE_ROOT:-results/}
RUN_NAME=${RUN_NAME:-picie_h}
K_train=27
K_test=27
K_aux=${K_AUX:-100}
bsize=256
num_epoch=10
KM_INIT=20
KM_NUM=1
KM_ITER=20
SEED=${SEED:-1}
LR=1e-4

mkdir -p "${SAVE_ROOT}" logs

"$PYTHON" train_picie.py \
  --data_root "${DATA_ROOT}" \
  --save_root "${SAVE_ROOT}" \
  --run_name "${RUN_NAME}" \
  --overcluster --K_aux ${K_aux} \
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
  "$@"
