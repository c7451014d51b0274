#!/usr/bin/env bash
# Did a change alter what the method computes? Two short deterministic fp32 training runs, one on
# the real COCO-Stuff sample and one on a demo set, then their fingerprints (benchmarks/fingerprint.py:
# final acc / mIoU, hashes of the weights, of metrics.jsonl and of final_metrics.json). Run it at two
# commits and compare the lines: identical hashes mean identical weights, losses, per-epoch scores
# and final metrics. The settings are explicit flags (not a preset), so that a change of a preset
# does not change the check.
#
#   ./benchmarks/behaviour_check.sh OUT                       # this checkout
#   DEMO_ROOT=/tmp/demo ./benchmarks/behaviour_check.sh OUT   # the same demo images at both commits
#
# COCO_ROOT (default ../shared/data/cocostuff_mini) and DEMO_ROOT (default: generated once in
# OUT/demo with tools.make_demo) are the data; keep DEMO_ROOT fixed across the two commits when
# the generator differs between them. 74 s on the 2-core test machine (commit b3d6536).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/behaviour_check.sh OUT_FOLDER}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
COCO_ROOT=${COCO_ROOT:-../shared/data/cocostuff_mini}
DEMO_ROOT=${DEMO_ROOT:-${OUT}/demo}
if [ ! -d "${COCO_ROOT}" ]; then
  echo "error: COCO_ROOT=${COCO_ROOT} is not a folder; set COCO_ROOT to a COCO-Stuff root (docs/datasets.md)" >&2
  exit 2
fi
mkdir -p "${OUT}"
[ -d "${DEMO_ROOT}" ] || "$PY" -m tools.make_demo --root "${DEMO_ROOT}" --n_train 480 --n_val 40 --seed 0 > /dev/null
COMMON=(--deterministic --precision fp32 --device cpu --num_workers 2 --seed 1 --eval_init --overwrite
        --augment --jitter --blur --grey --equiv --random_crop --h_flip --lr 1e-4 --num_epoch 2 --repeats 2
        --num_init_batches 2 --num_batches 1 --kmeans_n_iter 20 --save_root "${OUT}/runs")
"$PY" train_picie.py "${COMMON[@]}" --data_root "${DEMO_ROOT}" --run_name demo --stuff --K_train 15 --K_test 15 \
  --res 96 --res1 96 --res2 192 --batch_size_cluster 64 --batch_size_train 16 --batch_size_test 40 \
  > "${OUT}/demo.log" 2>&1
"$PY" train_picie.py "${COMMON[@]}" --data_root "${COCO_ROOT}" --run_name coco --stuff --thing --K_train 27 \
  --K_test 27 --res 128 --res1 128 --res2 256 --batch_size_cluster 16 --batch_size_train 8 --batch_size_test 16 \
  > "${OUT}/coco.log" 2>&1
# Only the final-metrics keys that every version of the toolkit writes, so that a new key is not a difference.
"$PY" -m benchmarks.fingerprint "${OUT}/runs/demo" "${OUT}/runs/coco" --keys acc mIoU acc_std mIoU_std \
  per_class_iou untrained untrained_bn_calibrated thing_mIoU stuff_mIoU
