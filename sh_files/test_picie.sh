#!/usr/bin/env bash
# Evaluate a checkpoint (this toolkit's checkpoint.pth or the original's picie.pkl /
# checkpoint.pth.tar) with the paper's protocol: pixel accuracy, mIoU, thing/stuff mIoU and
# per-class IoU.
#   EVAL_PATH=results/picie/checkpoint.pth ./sh_files/test_picie.sh
#   DRY_RUN=1 EVAL_PATH=... ./sh_files/test_picie.sh   # print the command
# Metrics are printed and written to ${OUT} (default: next to the checkpoint). Extra flags are
# passed through and win (e.g. --recluster, --linear_probe).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/test_picie.sh EVAL_PATH DATA_ROOT OUT DRY_RUN

EVAL_PATH=${EVAL_PATH:-results/picie/checkpoint.pth}
# No DATA_ROOT: the data root the checkpoint's run recorded (test_picie.py says which).
DATA_ROOT=${DATA_ROOT:-}
OUT=${OUT:-$(dirname "${EVAL_PATH}")/test_metrics.json}

CMD=("$PYTHON" test_picie.py --preset paper ${DATA_ROOT:+--data_root "${DATA_ROOT}"} --eval_path "${EVAL_PATH}" --out "${OUT}" "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
if [ ! -f "${EVAL_PATH}" ]; then
  echo "error: EVAL_PATH=${EVAL_PATH} is not a file; set EVAL_PATH to the checkpoint to evaluate (e.g. EVAL_PATH=results/<run>/checkpoint.pth ./sh_files/test_picie.sh)" >&2
  exit 2
fi
"${CMD[@]}"
