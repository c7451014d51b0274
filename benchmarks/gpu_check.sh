#!/usr/bin/env bash
# The GPU session in one script (run on the lent H100 after benchmarks/prepare_device.sh):
# CUDA tests, then the epoch benchmark at the paper's settings with each k-means backend.
# Rates are measured on the real COCO-Stuff sample with its training list tiled TILE times,
# features/views not cached (as at COCO scale), and projected to a 49,629-image epoch.
# On the CPU it runs as a dry run: DEVICE=cpu TILE=1 BS=8 WORKERS=2 ./benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
DATA=${DATA:-.device/cocostuff_mini}
DEVICE=${DEVICE:-cuda}; TILE=${TILE:-40}; BS=${BS:-256}; WORKERS=${WORKERS:-14}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
  $PY -m pip install --no-index --quiet .device/wheels/faiss_cpu-*.whl 2>&1 | tail -1
fi
$PY -c "import torch, torchvision, faiss; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'faiss', faiss.__version__)"
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_transforms.py tests/test_kmeans.py 2>&1 \
  | tail -4 | tee "$OUT/tests.txt"
COMMON="--data_root $DATA --fullcoco --train_list_repeats $TILE --res 320 --res1 320 --res2 640
  --batch_size_cluster $BS --batch_size_train $((BS / 2)) --batch_size_test $((BS / 2)) --num_init_batches 2
  --num_batches 1 --kmeans_n_iter 20 --K_train 27 --K_test 27 --augment --jitter --blur --grey --equiv
  --random_crop --h_flip --num_workers $WORKERS --seed 1 --repeats 1 --feature_cache_gb 0 --device $DEVICE"
for backend in ${BACKENDS:-torch faiss}; do
  epochs=2; limit=240; [ $backend = faiss ] && epochs=1 && limit=170
  echo "== k-means backend: $backend"
  timeout $limit $PY benchmarks/bench_epoch.py $COMMON --num_epoch $epochs --kmeans_backend $backend \
    --bench_json "$OUT/bench_${DEVICE}_${backend}.json" > "$OUT/bench_${backend}.log" 2>&1
  echo "exit $?"; grep -A12 "epoch benchmark" "$OUT/bench_${backend}.log" || tail -20 "$OUT/bench_${backend}.log"
done
