#!/usr/bin/env bash
# Transform ablation: which of PiCIE's transforms carry the result? Trains one run per set of
# transforms, with identical seeds and budgets, into one results folder, then writes a comparison
# report (tools/compare_runs.py). The sets:
#   none          no transform: both views are the same image (the losses reduce to self-training)
#   photometric   only the photometric family PHOTO_ALL (invariance), no geometric transform
#   geometric     only the geometric family GEO_ALL (equivariance), no photometric transform
#   P+G           every pair of one photometric transform from PHOTO_SINGLES and one geometric
#                 transform from GEO_SINGLES (what sh_files/train_picie_2aug.sh trains)
#   all           PHOTO_ALL and GEO_ALL: the paper's setting
#
#   PRESET=demo ./sh_files/ablate_transforms.sh                 # 10 demo runs (docs/homework.md: times)
#   nohup ./sh_files/ablate_transforms.sh > logs/ablate.out &   # paper settings on COCO-Stuff
#   DRY_RUN=1 ./sh_files/ablate_transforms.sh                   # print the commands
#   TINY=1 ./sh_files/ablate_transforms.sh                      # seconds a run, on a tiny demo set
#   COMBOS="none all jitter+random_crop" PRESET=demo ./sh_files/ablate_transforms.sh
#
# Presets, DRY_RUN, TINY and the other environment settings: sh_files/experiment_common.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# Transform names as train_picie.py's --inv_list / --eqv_list take them ("jitter" = brightness,
# contrast, saturation and hue together, "colour jitter").
PHOTO_ALL=${PHOTO_ALL:-jitter,grey,blur}
GEO_ALL=${GEO_ALL:-random_crop,h_flip}
PHOTO_SINGLES=${PHOTO_SINGLES:-jitter grey blur}
GEO_SINGLES=${GEO_SINGLES:-random_crop h_flip}
PASS_THROUGH=("$@")

SCRIPT_VARS="COMBOS PHOTO_ALL GEO_ALL PHOTO_SINGLES GEO_SINGLES"
# shellcheck source=sh_files/experiment_common.sh
source sh_files/experiment_common.sh
SAVE_ROOT=${SAVE_ROOT:-results/ablate_transforms_${PRESET}}
default_report_dir  # reports/ablate_transforms_<preset>, or after SAVE_ROOT

# name|photometric list|geometric list, in the order they run.
ALL_COMBOS=("none|none|none" "photometric|${PHOTO_ALL}|none" "geometric|none|${GEO_ALL}")
for photo in ${PHOTO_SINGLES}; do
  for geo in ${GEO_SINGLES}; do
    ALL_COMBOS+=("${photo}+${geo}|${photo}|${geo}")
  done
done
ALL_COMBOS+=("all|${PHOTO_ALL}|${GEO_ALL}")

# COMBOS (names, space separated) picks a subset; default every one.
SELECTED=()
for combo in "${ALL_COMBOS[@]}"; do
  name=${combo%%|*}
  if [ -z "${COMBOS:-}" ] || [[ " ${COMBOS} " == *" ${name} "* ]]; then
    SELECTED+=("${combo}")
  fi
done
if [ -n "${COMBOS:-}" ]; then
  for name in ${COMBOS}; do
    found=0
    for combo in "${ALL_COMBOS[@]}"; do [ "${combo%%|*}" = "${name}" ] && found=1; done
    if [ "${found}" = 0 ]; then
      echo "error: COMBOS: unknown combination '${name}'; known: $(printf '%s ' "${ALL_COMBOS[@]%%|*}")" >&2
      exit 2
    fi
  done
fi

prepare_data
read -r -d '' SEED EPOCHS < <(preset_values seed num_epoch) || true
echo "transform ablation (${PRESET} preset, seed ${SEED}, ${EPOCHS} epochs): ${#SELECTED[@]} runs into ${SAVE_ROOT}"
for combo in "${SELECTED[@]}"; do
  IFS='|' read -r name photo geo <<< "${combo}"
  run_one "${name}" -- --inv_list "${photo}" --eqv_list "${geo}"
done
compare_all "Transform ablation (${PRESET} preset, seed ${SEED})"
