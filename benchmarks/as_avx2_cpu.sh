#!/usr/bin/env bash
# Run a command as on a float32-only CPU with AVX2 (no AVX-512, no bf16 units), on a CPU that has more:
# every library that picks its kernels by the CPU is held to its AVX2 ones.
#   ATen (torch's own kernels)    ATEN_CPU_CAPABILITY=avx2
#   oneDNN (convolutions)         ONEDNN_MAX_CPU_ISA=AVX2
#   MKL (torch's matmul)          MKL_ENABLE_INSTRUCTIONS=AVX2
#   OpenBLAS (faiss's and numpy's matrix products: the k-means distances)   OPENBLAS_CORETYPE=Haswell
#   numpy's own loops             NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"
#   faiss's own kernels           benchmarks/avx2_site/sitecustomize.py (faiss.SIMDConfig, set at start-up)
# Give --precision fp32 to the training command: on such a CPU --precision auto trains in float32.
#
#   ./benchmarks/as_avx2_cpu.sh ./sh_files/demo.sh --seed 1 --precision fp32
#
# On a 2-core AMD EPYC (Zen 4) this reproduced, at commit 5811629, the seed-1 demo numbers a real float32-only
# CPU (a 2-core AMD EPYC of the Zen 2 generation) reported: 43.03 / 28.72 (docs/demo.md). It emulates the
# numbers, not the speed.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: benchmarks/as_avx2_cpu.sh COMMAND [ARGS...]" >&2; exit 2; }
SITE="$(cd "$(dirname "$0")" && pwd)/avx2_site"
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
export NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL"
export PYTHONPATH="${SITE}${PYTHONPATH:+:${PYTHONPATH}}"
exec "$@"
