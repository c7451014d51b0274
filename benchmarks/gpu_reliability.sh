#!/usr/bin/env bash
# What is exact on a GPU (docs/reliability.md): per precision mode (--deterministic, and the
# default bf16 autocast), two fresh runs and one run SIGKILLed in epoch 2's training and resumed
# with --restart, compared with the first run (final metrics, per-epoch losses, weights).
# Needs only torch/torchvision/scipy/Pillow/tqdm (k-means: torch backend); about 2 minutes on an H100.
#   OUT=/tmp/rel ./benchmarks/gpu_reliability.sh      (DEVICE=cpu for a dry run)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_reliability}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; PY=${PYTHON:-python3}; WORK=${WORK:-/tmp/gpu_reliability_work}
export PYTHONUNBUFFERED=1
rm -rf "$WORK"; mkdir -p "$WORK"
$PY -c "from tools.make_demo import generate_demo; generate_demo('$WORK/demo', n_train=32, n_val=8, seed=0)" || exit 1
COMMON="--data_root $WORK/demo --save_root $WORK/runs --res 128 --res1 128 --res2 256 --batch_size_cluster 16
  --batch_size_train 8 --batch_size_test 8 --num_init_batches 1 --kmeans_n_iter 10 --num_workers 2 --device $DEVICE
  --kmeans_backend torch --augment --jitter --grey --blur --equiv --random_crop --h_flip --stuff --K_train 15
  --K_test 15 --num_epoch 3 ${EXTRA:-}"
for mode in deterministic default; do
  FLAGS="$COMMON"; [ $mode = deterministic ] && FLAGS="$COMMON --deterministic"
  for run in a b; do
    timeout ${LIMIT:-120} $PY train_picie.py $FLAGS --run_name ${mode}_$run > "$OUT/${mode}_$run.log" 2>&1; echo "$mode $run exit $?"
  done
  timeout ${LIMIT:-120} $PY tests/_killpoint.py 'KILL@bar:epoch 1 train:2' $FLAGS --run_name ${mode}_resumed \
    > "$OUT/${mode}_resumed.log" 2>&1; echo "$mode killed exit $?"
  timeout ${LIMIT:-120} $PY train_picie.py $FLAGS --run_name ${mode}_resumed --restart >> "$OUT/${mode}_resumed.log" 2>&1
  echo "$mode resumed exit $?"
done
$PY - "$WORK/runs" "$OUT/gpu_reliability.json" <<'EOF'
import json, sys
from pathlib import Path
import torch
runs, out = Path(sys.argv[1]), sys.argv[2]
def load(name):
    final = {k: v for k, v in json.loads((runs / name / 'final_metrics.json').read_text()).items() if not k.endswith('_s')}
    losses = [r['loss'] for r in map(json.loads, (runs / name / 'metrics.jsonl').read_text().splitlines()) if 'loss' in r]
    return final, losses, torch.load(runs / name / 'checkpoint.pth', weights_only=True)['model']
report = {'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'torch': torch.__version__}
for mode in ('deterministic', 'default'):
    a = load(f'{mode}_a')
    for other in ('b', 'resumed'):
        try:
            o = load(f'{mode}_{other}')
        except FileNotFoundError as exc:
            report[f'{mode}: a vs {other}'] = f'missing: {exc}'
            continue
        report[f'{mode}: a vs {other}'] = {
            'final_identical': a[0] == o[0], 'acc': [a[0]['acc'], o[0]['acc']], 'mIoU': [a[0]['mIoU'], o[0]['mIoU']],
            'losses_identical': a[1] == o[1], 'max_loss_diff': max(abs(x - y) for x, y in zip(a[1], o[1])),
            'weights_identical': all(torch.equal(a[2][k], o[2][k]) for k in a[2]),
            'max_weight_diff': max((a[2][k].double() - o[2][k].double()).abs().max().item() for k in a[2]
                                   if a[2][k].is_floating_point())}
print(json.dumps(report, indent=1))
Path(out).write_text(json.dumps(report, indent=1))
EOF
