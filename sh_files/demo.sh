#!/usr/bin/env bash
# The built-in demo (what `make demo` runs): generate the synthetic demo set if missing, train
# PiCIE on it on the CPU, evaluate the checkpoint, draw cluster maps, and print where it all is.
# Takes about 4 minutes on 2 CPU cores. Paths and length can be changed from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
DATA_ROOT=${DATA_ROOT:-datasets/demo}
SAVE_ROOT=${SAVE_ROOT:-results}
RUN_NAME=${RUN_NAME:-demo}
EPOCHS=${EPOCHS:-5}
RUN="${SAVE_ROOT}/${RUN_NAME}"

"$PYTHON" -m data.make_demo --root "${DATA_ROOT}" --n_train 480 --n_val 40 --seed 0

# A finished demo run is kept: start afresh in a new folder (RUN_NAME=...) or pass --overwrite.
RESTART=""; [ -f "${RUN}/checkpoint.pth" ] && RESTART="--restart"
"$PYTHON" train_picie.py \
  --data_root "${DATA_ROOT}" --save_root "${SAVE_ROOT}" --run_name "${RUN_NAME}" ${RESTART} \
  --stuff --K_train 15 --K_test 15 \
  --res 96 --res1 96 --res2 192 \
  --batch_size_cluster 64 --batch_size_train 16 --batch_size_test 40 \
  --num_init_batches 2 --num_batches 1 --kmeans_n_iter 20 \
  --lr 1e-4 --num_epoch "${EPOCHS}" --seed 1 --repeats 3 --eval_init --num_workers 2 \
  --augment --jitter --blur --grey --equiv --random_crop --h_flip \
  "$@"

"$PYTHON" test_picie.py --data_root "${DATA_ROOT}" --eval_path "${RUN}/checkpoint.pth" --res 96 \
  --num_workers 2 --out "${RUN}/test_metrics.json" > "${RUN}/test.log" 2>&1
"$PYTHON" tools/visualize.py --data_root "${DATA_ROOT}" --eval_path "${RUN}/checkpoint.pth" --res 96 \
  --n_images 6 --num_workers 0 --out_dir "${RUN}/cluster_maps"

"$PYTHON" - "${RUN}" <<'PY'
import json, sys
run = sys.argv[1]
final = json.load(open(f"{run}/final_metrics.json"))
test = json.load(open(f"{run}/test_metrics.json"))
u, b = final["untrained"], final.get("untrained_bn_calibrated")
print("\n=== PiCIE demo results (15 stuff classes, fresh k-means on the train images, mean of 3 seeds) ===")
print(f"untrained network as initialised        acc {u['acc']:6.2f}   mIoU {u['mIoU']:6.2f}")
if b:
    print(f"untrained, BatchNorm statistics set      acc {b['acc']:6.2f}   mIoU {b['mIoU']:6.2f}")
print(f"PiCIE after {final['epochs']} epochs                   acc {final['acc']:6.2f}   mIoU {final['mIoU']:6.2f}"
      f"  (+- {final['mIoU_std']:.2f})")
print(f"checkpoint's own view-1 classifier       acc {test['acc']:6.2f}   mIoU {test['mIoU']:6.2f}")
print(f"\nrun folder:    {run}/  (config.json, metrics.jsonl, train.log, checkpoint.pth, final_metrics.json)")
print(f"cluster maps:  {run}/cluster_maps/*.png")
PY
