#!/usr/bin/env bash
# PiCIE, PiCIE+H, MDC and MDC (nonparametric) on the built-in demo set with the budget of
# train_picie.py --preset demo (the settings of sh_files/demo.sh),
# one run per method and seed, then a table of the final scores (docs/methods.md's table).
#   ./benchmarks/compare_methods.sh                       # CPU, seed 1
#   DEVICE=cuda SEEDS="1 2" WORKERS=8 ./benchmarks/compare_methods.sh
# METHODS picks a subset (names below); K_AUX sets PiCIE+H's auxiliary clusters (default 100).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DATA_ROOT=${DATA_ROOT:-datasets/demo}
SAVE_ROOT=${SAVE_ROOT:-results/methods_demo}
OUT=${OUT:-$SAVE_ROOT}          # the summary JSON
LOG_DIR=${LOG_DIR:-$SAVE_ROOT}  # one log per run
DEVICE=${DEVICE:-cpu}; WORKERS=${WORKERS:-2}; SEEDS=${SEEDS:-1}; K_AUX=${K_AUX:-100}
METHODS=${METHODS-"picie picie_h mdc mdc_nonparametric"}
export PYTHONUNBUFFERED=1
mkdir -p "$SAVE_ROOT" "$OUT" "$LOG_DIR"

if [ "$DATA_ROOT" = datasets/demo ]; then "$PY" -m tools.make_demo --preset demo || exit 1; fi
COMMON="--preset demo --no-eval_init --data_root $DATA_ROOT --save_root $SAVE_ROOT
  --num_workers $WORKERS --device $DEVICE --overwrite"
declare -A EXTRA=([picie]="" [picie_h]="--overcluster --K_aux $K_AUX" [mdc]="--method mdc"
                  [mdc_nonparametric]="--method mdc --nonparametric")
for seed in $SEEDS; do
  for method in $METHODS; do
    started=$(date +%s)
    "$PY" train_picie.py $COMMON ${EXTRA[$method]} --seed "$seed" --run_name "${method}_seed${seed}" \
      > "$LOG_DIR/${method}_seed${seed}.log" 2>&1
    echo "$method seed $seed: exit $? in $(( $(date +%s) - started )) s"
  done
done

"$PY" - "$SAVE_ROOT" "$OUT/methods_demo.json" <<'PY'
import json, sys
from pathlib import Path
save_root, out = Path(sys.argv[1]), sys.argv[2]
rows = {}
for final in sorted(save_root.glob("*_seed*/final_metrics.json")):
    method, seed = final.parent.name.rsplit("_seed", 1)
    metrics = json.loads(final.read_text())
    rows.setdefault(method, []).append({"seed": int(seed), "acc": metrics["acc"], "mIoU": metrics["mIoU"],
                                        "acc_std_repeats": metrics["acc_std"], "mIoU_std_repeats": metrics["mIoU_std"]})
json.dump(rows, open(out, "w"), indent=2)
print(f"{'method':20s} {'seed':>4s} {'acc':>7s} {'mIoU':>7s}   (fresh k-means, mean of 3 repeats)")
for method, runs in rows.items():
    for r in runs:
        print(f"{method:20s} {r['seed']:4d} {r['acc']:7.2f} {r['mIoU']:7.2f}")
PY
