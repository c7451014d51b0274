#!/usr/bin/env bash
# Component ablation in the paper's terms: which parts of PiCIE carry the result? One run per row
# and training seed, with identical budgets, into one results folder; then a comparison report
# (tools/compare_runs.py: runs that differ only in --seed are grouped into mean ± std) and the
# invariance / equivariance of every checkpoint (tools/invariance.py). The rows:
#   paper            the preset's setting: all transforms (photometric PHOTO_ALL, geometric
#                    GEO_ALL), within- and cross-view loss, the preset's class weights
#   no_photometric   --inv_list none: no photometric invariance (geometric transforms only)
#   no_geometric     --eqv_list none: no geometric equivariance (photometric transforms only)
#   within_only      --loss_terms within: no cross-view term
#   weights_size     --class_weights size: the original's cluster-size weights
#   weights_inverse  --class_weights inverse: inverse cluster frequency
#   weights_none     --class_weights none: unweighted cross-entropy
#                    (the weights row that equals the preset's own weights is the paper row and is
#                    not trained twice: size for PRESET=paper, none for PRESET=demo)
#   one_plus_one     one photometric + one geometric transform, PHOTO_1 and GEO_1 (default jitter
#                    and random_crop: what sh_files/train_picie_2aug.sh trains)
# Each row is trained once per seed in SEEDS (default "1 2 3"; the seed differences are what a
# row difference must exceed), as <row>_seed<s>, seed by seed, so that an interrupted script has
# whole seeds of every row. ROWS (names, space separated) picks rows; INVARIANCE=0 skips the
# invariance measurement.
#
#   PRESET=demo ./sh_files/ablate_components.sh                 # 7 rows x 3 seeds (docs/homework.md: times)
#   PRESET=demo SEEDS=1 ROWS="paper within_only" ./sh_files/ablate_components.sh
#   DRY_RUN=1 ./sh_files/ablate_components.sh                   # print the commands (paper settings)
#   TINY=1 SEEDS="1 2" ./sh_files/ablate_components.sh          # seconds a run, on a tiny demo set
#
# Presets, DRY_RUN, TINY and the other environment settings: sh_files/experiment_common.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PASS_THROUGH=("$@")

SCRIPT_VARS="SEEDS ROWS PHOTO_1 GEO_1 INVARIANCE PHOTO_ALL GEO_ALL"
# shellcheck source=sh_files/experiment_common.sh
source sh_files/experiment_common.sh
SAVE_ROOT=${SAVE_ROOT:-results/ablate_components_${PRESET}}
REPORT_DIR=${REPORT_DIR:-reports/ablate_components_${PRESET}}
PHOTO_1=${PHOTO_1:-jitter}
GEO_1=${GEO_1:-random_crop}
INVARIANCE=${INVARIANCE:-1}

main() {
  local preset_inv preset_eqv preset_weights epochs
  read -r -d '' preset_inv preset_eqv preset_weights epochs \
    < <(preset_values inv_list eqv_list class_weights num_epoch) || true
  # Everything a row does not change is the preset's (the environment may override the lists).
  local photo_all=${PHOTO_ALL:-${preset_inv}} geo_all=${GEO_ALL:-${preset_eqv}}
  # SEED (experiment_common.sh's single-seed override) stands in for SEEDS when only it is given.
  local seeds=${SEEDS:-${SEED:-1 2 3}}
  for seed in ${seeds}; do
    if ! [[ "${seed}" =~ ^[0-9]+$ ]]; then
      echo "error: SEEDS=${seeds}: give whole numbers separated by spaces, e.g. SEEDS=\"1 2 3\"" >&2
      exit 2
    fi
  done

  # name|photometric list|geometric list|loss terms|class weights, in the order they run.
  local all_rows=("paper|${photo_all}|${geo_all}|within_cross|${preset_weights}"
                  "no_photometric|none|${geo_all}|within_cross|${preset_weights}"
                  "no_geometric|${photo_all}|none|within_cross|${preset_weights}"
                  "within_only|${photo_all}|${geo_all}|within|${preset_weights}")
  local weights
  for weights in size inverse none; do
    # The preset's own weights are the paper row.
    [ "${weights}" = "${preset_weights}" ] && continue
    all_rows+=("weights_${weights}|${photo_all}|${geo_all}|within_cross|${weights}")
  done
  all_rows+=("one_plus_one|${PHOTO_1}|${GEO_1}|within_cross|${preset_weights}")

  local known=() row name
  for row in "${all_rows[@]}"; do known+=("${row%%|*}"); done
  if [ -n "${ROWS:-}" ]; then
    for name in ${ROWS}; do
      if [ "${name}" = "weights_${preset_weights}" ]; then
        echo "error: ROWS: weights_${preset_weights} is the ${PRESET} preset's own weights, i.e. the row 'paper'; use paper" >&2
        exit 2
      fi
      if [[ " ${known[*]} " != *" ${name} "* ]]; then
        echo "error: ROWS: unknown row '${name}'; known: ${known[*]}" >&2
        exit 2
      fi
    done
  fi
  local selected=()
  for row in "${all_rows[@]}"; do
    name=${row%%|*}
    if [ -z "${ROWS:-}" ] || [[ " ${ROWS} " == *" ${name} "* ]]; then
      selected+=("${row}")
    fi
  done

  prepare_data
  local n_seeds
  n_seeds=$(wc -w <<< "${seeds}")
  echo "component ablation (${PRESET} preset, ${epochs} epochs, seeds ${seeds}): ${#selected[@]} rows x ${n_seeds} seeds into ${SAVE_ROOT}"
  local seed photo geo terms
  for seed in ${seeds}; do
    for row in "${selected[@]}"; do
      IFS='|' read -r name photo geo terms weights <<< "${row}"
      run_one "${name}_seed${seed}" SEED="${seed}" -- --inv_list "${photo}" --eqv_list "${geo}" \
        --loss_terms "${terms}" --class_weights "${weights}"
    done
  done
  # The report and the invariance table even when a run failed (compare_all exits 1 then).
  if [ "${INVARIANCE}" = 1 ]; then
    local checkpoints=() dir
    for dir in "${RUN_DIRS[@]}"; do
      if [ "${DRY_RUN}" = 1 ] || [ -f "${dir}/final_metrics.json" ]; then
        checkpoints+=("${dir}/checkpoint.pth")
      fi
    done
    if [ ${#checkpoints[@]} -gt 0 ]; then
      [ "${DRY_RUN}" = 1 ] || mkdir -p "${REPORT_DIR}"
      local inv_cmd=("$PYTHON" -m tools.invariance "${checkpoints[@]}" --out "${REPORT_DIR}/invariance")
      # Measured on the runs' own data unless DATA_ROOT says otherwise.
      [ -n "${DATA_ROOT:-}" ] && inv_cmd+=(--data_root "${DATA_ROOT}")
      if [ "${DRY_RUN}" = 1 ]; then
        run_or_print "${inv_cmd[@]}"
      else
        "${inv_cmd[@]}" > "${REPORT_DIR}/invariance.log" 2>&1 \
          || { echo "[invariance] FAILED; see ${REPORT_DIR}/invariance.log"; FAILED+=(invariance); }
      fi
    fi
  fi
  compare_all "Component ablation (${PRESET} preset, seeds ${seeds})"
}

# One line, so that bash has read all of it before it runs (editing the file meanwhile is safe).
main; exit $?
