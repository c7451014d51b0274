#!/usr/bin/env bash
# PiCIE, PiCIE+H, MDC and MDC (nonparametric) on the built-in demo set with the budget of
# sh_files/demo.sh (480 train / 40 val images, res 96, K 15, 5 epochs, fresh k-means 3 repeats),
# one run per method and seed, then a table of the final scores (the README's method table).
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

"$PY" -m data.make_demo --root "$DATA_ROOT" --n_train 480 --n_val 40 --seed 0 || exit 1
COMMON="--data_root $DATA_ROOT --save_root $SAVE_ROOT --stuff --K_train 15 --K_test 15
  --res 96 --res1 96 --res2 192 --batch_size_cluster 64 --batch_size_train 16 --batch_size_test 40
  --num_init_batches 2 --num_batches 1 --kmeans_n_iter 20 --lr 1e-4 --num_epoch 5 --repeats 3
  --num_workers $WORKERS --device $DEVICE --overwrite
  --augment --jitter --blur --grey --equiv --random_crop --h_flip"
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
