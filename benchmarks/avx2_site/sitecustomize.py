"""Imported at start-up by every Python process that benchmarks/as_avx2_cpu.sh runs (it puts this folder on
PYTHONPATH): faiss's dynamic dispatch is limited to its AVX2 kernels, as on a CPU without AVX-512. faiss reads
no environment variable for this, so it is set through its API before any k-means runs."""
import faiss

faiss.SIMDConfig.set_level(faiss.SIMDLevel_AVX2)
