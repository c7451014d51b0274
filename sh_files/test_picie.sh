#!/usr/bin/env bash
# Evaluate a checkpoint (this toolkit's checkpoint.pth or the original's picie.pkl /
# checkpoint.pth.tar): pixel accuracy, mIoU, thing/stuff mIoU and per-class IoU.
#   EVAL_PATH=results/picie/checkpoint.pth ./sh_files/test_picie.sh
# Metrics are printed and written to ${OUT} (default: next to the checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

EVAL_PATH=${EVAL_PATH:-results/picie/checkpoint.pth}
DATA_ROOT=${DATA_ROOT:-datasets/coco/}
OUT=${OUT:-$(dirname "${EVAL_PATH}")/test_metrics.json}

"$PYTHON" test_picie.py \
  --data_root "${DATA_ROOT}" \
  --eval_path "${EVAL_PATH}" \
  --stuff --thing \
  --res 320 \
  --batch_size_test 128 \
  --out "${OUT}" \
  "$@"
