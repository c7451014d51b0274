#!/usr/bin/env bash
# Compare run folders: settings that differ, final accuracy / mIoU (mean +- std), thing / stuff
# mIoU, wall time, per-class IoU, and PNG curves per epoch, written to a report folder.
#   ./sh_files/compare_runs.sh results/ablate_transforms_demo/none results/ablate_transforms_demo/all --out reports/none_vs_all
#   ./sh_files/compare_runs.sh results/sweep_hparams_demo/*/ --out reports/sweep --title "LR sweep"
#   DRY_RUN=1 ./sh_files/compare_runs.sh RUNS... --out DIR   # print the command
# Paths are taken as given (relative to where the script is started). See tools/compare_runs.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=sh_files/script_env.sh
source "${ROOT}/sh_files/script_env.sh"
check_script_env sh_files/compare_runs.sh DRY_RUN
PYTHON=${PYTHON:-$([ -x "${ROOT}/.venv/bin/python" ] && echo "${ROOT}/.venv/bin/python" || echo python)}
if [ "${DRY_RUN:-0}" = 1 ]; then  # print the command
  printf '%q ' "$PYTHON" -m tools.compare_runs "$@"
  echo
  exit 0
fi
PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}" exec "$PYTHON" -m tools.compare_runs "$@"
