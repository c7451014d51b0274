#!/usr/bin/env bash
# The built-in demo (what `make demo` runs): generate the synthetic demo set if missing, train
# PiCIE on it on the CPU with --preset demo, evaluate the checkpoint, draw cluster maps, and print
# where it all is. Paths and length can be changed from the environment (EPOCHS=3 ./sh_files/demo.sh);
# extra arguments are passed to train_picie.py (they win over the preset).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
SAVE_ROOT=${SAVE_ROOT:-results}
RUN_NAME=${RUN_NAME:-demo}
RUN="${SAVE_ROOT}/${RUN_NAME}"
DATA=()
if [ -n "${DATA_ROOT:-}" ]; then
  DATA=(--data_root "${DATA_ROOT}")
else
  "$PYTHON" -m tools.make_demo --preset demo
fi
EXTRA=()
[ -n "${EPOCHS:-}" ] && EXTRA=(--num_epoch "${EPOCHS}")

# A finished demo run is kept: start afresh in a new folder (RUN_NAME=...) or pass --overwrite.
RESTART=()
[ -f "${RUN}/checkpoint.pth" ] && RESTART=(--restart)
"$PYTHON" train_picie.py --preset demo "${DATA[@]}" --save_root "${SAVE_ROOT}" --run_name "${RUN_NAME}" \
  "${RESTART[@]}" "${EXTRA[@]}" "$@"

"$PYTHON" test_picie.py --preset demo "${DATA[@]}" --eval_path "${RUN}/checkpoint.pth" \
  --out "${RUN}/test_metrics.json" > "${RUN}/test.log" 2>&1
"$PYTHON" -m tools.visualize --preset demo "${DATA[@]}" --eval_path "${RUN}/checkpoint.pth" --n_images 6 \
  --num_workers 0 --out_dir "${RUN}/cluster_maps"

"$PYTHON" - "${RUN}" <<'PY'
import json, sys
run = sys.argv[1]
final = json.load(open(f"{run}/final_metrics.json"))
test = json.load(open(f"{run}/test_metrics.json"))
u, b = final["untrained"], final.get("untrained_bn_calibrated")
print(f"\n=== PiCIE demo results ({final['n_val_images']} val images, fresh k-means on the train images, "
      f"mean of {final['repeats']} k-means runs) ===")
print(f"untrained network as initialised        acc {u['acc']:6.2f}   mIoU {u['mIoU']:6.2f}")
if b:
    print(f"untrained, BatchNorm statistics set      acc {b['acc']:6.2f}   mIoU {b['mIoU']:6.2f}")
print(f"PiCIE after {final['epochs']} epochs                   acc {final['acc']:6.2f}   mIoU {final['mIoU']:6.2f}"
      f"  (+- {final['mIoU_std']:.2f})")
print(f"checkpoint's own view-1 classifier       acc {test['acc']:6.2f}   mIoU {test['mIoU']:6.2f}")
print(f"\nrun folder:    {run}/  (config.json, metrics.jsonl, train.log, checkpoint.pth, final_metrics.json)")
print(f"cluster maps:  {run}/cluster_maps/*.png")
PY
