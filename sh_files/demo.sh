#!/usr/bin/env bash
# The built-in demo (what `make demo` runs): generate the synthetic demo set if missing, train
# PiCIE on it on the CPU with --preset demo, evaluate the checkpoint, draw cluster maps, and print
# where it all is, which kind of CPU it ran on and the scores to expect there
# (tools/demo_summary.py; the measured table: docs/demo.md). From the environment:
#   SAVE_ROOT (results), RUN_NAME (demo), DATA_ROOT (the generated set), and the variables of
#   sh_files/script_env.sh that override one flag each: EPOCHS, SEED, LR, ...
#   RUN_NAME=demo_1epoch EPOCHS=1 ./sh_files/demo.sh     # one epoch, in its own folder
#   RUN_NAME=demo_seed2 SEED=2 ./sh_files/demo.sh        # training seed 2 (the same as: ... demo.sh --seed 2)
#   DRY_RUN=1 ./sh_files/demo.sh                         # print the commands
# Extra arguments are passed to train_picie.py (they win over the preset and the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
# shellcheck source=sh_files/script_env.sh
source sh_files/script_env.sh
check_script_env sh_files/demo.sh SAVE_ROOT RUN_NAME DATA_ROOT DRY_RUN ${OVERRIDABLE}
SAVE_ROOT=${SAVE_ROOT:-results}
RUN_NAME=${RUN_NAME:-demo}
RUN="${SAVE_ROOT%/}/${RUN_NAME}"
DRY_RUN=${DRY_RUN:-0}

# Run a command, or print it (shell-quoted) under DRY_RUN=1.
run() {
  if [ "${DRY_RUN}" = 1 ]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

DATA=()
if [ -n "${DATA_ROOT:-}" ]; then
  DATA=(--data_root "${DATA_ROOT}")
else
  run "$PYTHON" -m tools.make_demo --preset demo
fi
env_flags ${OVERRIDABLE}

# A finished demo run is kept: start afresh in a new folder (RUN_NAME=...) or pass --overwrite.
RESTART=()
[ -f "${RUN}/checkpoint.pth" ] && RESTART=(--restart)
run "$PYTHON" train_picie.py --preset demo "${DATA[@]}" --save_root "${SAVE_ROOT}" --run_name "${RUN_NAME}" \
  "${RESTART[@]}" "${ENV_FLAGS[@]}" "$@"

TEST=("$PYTHON" test_picie.py --preset demo "${DATA[@]}" --eval_path "${RUN}/checkpoint.pth"
      --out "${RUN}/test_metrics.json")
if [ "${DRY_RUN}" = 1 ]; then
  run "${TEST[@]}"
else
  "${TEST[@]}" > "${RUN}/test.log" 2>&1
fi
run "$PYTHON" -m tools.visualize --preset demo "${DATA[@]}" --eval_path "${RUN}/checkpoint.pth" --n_images 6 \
  --num_workers 0 --out_dir "${RUN}/cluster_maps"
run "$PYTHON" -m tools.demo_summary "${RUN}"
