#!/usr/bin/env bash
# The original PiCIE and this toolkit on the CPU benchmark settings (docs/measurements.md), back to
# back on one machine: each whole run's wall time (/usr/bin/time), its final acc / mIoU, and the
# ratio of the original's time to each of the toolkit's runs.
#   ORIGINAL=/path/to/PiCIE ORIGINAL_DATA=/path/to/its/data_root ./benchmarks/bench_vs_original.sh [SEED]
# ORIGINAL: a checkout of the authors' code (github.com/janghyuncho/PiCIE) changed to run on a CPU
#   (docs/measurements.md lists the changes); ORIGINAL_DATA: ../shared/data/cocostuff_mini laid out
#   as it reads it (plus train2017 -> images/train2017 for --fullcoco).
# PRECISIONS: this toolkit's --precision values, one run each (default "fp32 auto").
# ISA=avx2: both sides limited to AVX2 kernels (ATen, oneDNN, MKL), as on a CPU without AVX-512 or
#   bf16 units; --precision auto then measures bf16 slower and trains in float32.
# OUT: where the logs and the summary (summary.txt) go (default results/vs_original).
# EXTRA: flags appended to both commands (later flags win), e.g. a quick check at --res 64.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${ORIGINAL:?set ORIGINAL to a CPU-runnable checkout of the original code}"
: "${ORIGINAL_DATA:?set ORIGINAL_DATA to the data root laid out for the original}"
SEED=${1:-1}
fail() { echo "error: $*" >&2; exit 2; }
[ -f "$ORIGINAL/train_picie.py" ] || fail "ORIGINAL=$ORIGINAL holds no train_picie.py; point it at the original's checkout"
[ -d "$ORIGINAL_DATA" ] || fail "ORIGINAL_DATA=$ORIGINAL_DATA is not a folder; point it at the data root laid out for the original"
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || echo python3)}
PRECISIONS=${PRECISIONS:-"fp32 auto"}
OUT=${OUT:-results/vs_original}
DATA=${DATA:-../shared/data/cocostuff_mini}
[ -d "$DATA" ] || fail "DATA=$DATA is not a folder; point it at the COCO-Stuff sample (../shared/data/cocostuff_mini)"
ORIGINAL_DATA=$(cd "$ORIGINAL_DATA" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
if [ "${ISA:-}" = avx2 ]; then
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
fi
# The settings both programs share (the original's flag names are this toolkit's).
COMMON="--fullcoco --res 320 --res1 320 --res2 640 --batch_size_cluster 16 --batch_size_train 8
  --batch_size_test 16 --num_init_batches 4 --num_batches 1 --kmeans_n_iter 20 --K_train 27 --K_test 27
  --augment --jitter --blur --grey --equiv --random_crop --h_flip --num_workers 2 --num_epoch 2 --repeats 3
  --seed $SEED ${EXTRA:-}"
TIMING="%e s wall, %U s user, %S s system, %M KB peak"

seconds() { sed -n 's/^TIMED \([0-9.]*\) s wall.*/\1/p' "$1" | tail -n 1; }
# The CPU's vector extensions that decide the speed (the model name does not say whether bf16 units are there).
vector_units() {
  local flags found=""
  flags=" $(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1) "
  for unit in avx2 avx512f avx512_bf16 amx_bf16; do
    case "$flags" in *" $unit "*) found="$found $unit" ;; esac
  done
  echo "${found# }" | sed 's/^$/none listed/'
}

rm -rf "$OUT/original"
(cd "$ORIGINAL" && /usr/bin/time -f "TIMED $TIMING" "$PY" train_picie.py --data_root "$ORIGINAL_DATA" \
  --save_root "$OUT/original" $COMMON) > "$OUT/original.log" 2>&1
original_s=$(seconds "$OUT/original.log")
grep -q '^TIMED' "$OUT/original.log" && ! grep -q 'Command exited with non-zero status' "$OUT/original.log" \
  || fail "the original's run failed; its output is in $OUT/original.log"
original_acc=$(sed -n 's/.*Average overall pixel accuracy \[NEW\] : \([0-9.]*\).*/\1/p' "$OUT/original.log" | tail -n 1)
original_miou=$(sed -n 's/.*Average mIoU \[NEW\] : \([0-9.]*\).*/\1/p' "$OUT/original.log" | tail -n 1)
{
  echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); ISA=${ISA:-native}; vector units: $(vector_units)"
  echo "commit: $(git rev-parse --short HEAD); seed $SEED; $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "original: ${original_s} s, acc ${original_acc}, mIoU ${original_miou}"
} | tee "$OUT/summary.txt"
for precision in $PRECISIONS; do
  rm -rf "$OUT/toolkit_$precision"
  /usr/bin/time -f "TIMED $TIMING" "$PY" train_picie.py --data_root "$DATA" --save_root "$OUT" \
    --run_name "toolkit_$precision" --precision "$precision" $COMMON > "$OUT/toolkit_$precision.log" 2>&1
  s=$(seconds "$OUT/toolkit_$precision.log")
  [ -f "$OUT/toolkit_$precision/final_metrics.json" ] \
    || fail "train_picie.py --precision $precision failed; its output is in $OUT/toolkit_$precision.log"
  "$PY" - "$OUT/toolkit_$precision" "$s" "$original_s" "$precision" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
run, seconds, original_s, precision = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
final = json.loads((run / "final_metrics.json").read_text())
autocast = json.loads((run / "config.json").read_text()).get("autocast")
print(f"toolkit --precision {precision} (trained in {autocast}): {seconds:.1f} s, acc {final['acc']:.3f}, "
      f"mIoU {final['mIoU']:.3f}; original / toolkit = {original_s / seconds:.2f}x")
EOF
done
