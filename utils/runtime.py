"""Where and how the network runs: device, autocast precision, determinism, seeds, threads."""
import ctypes
import gc
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from tqdm import tqdm

from utils import dist
from utils.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class Runtime:
    """Where and how the network runs: `device`, the autocast dtype (None: float32), the memory
    layout of image batches and whether progress bars are drawn (rank 0 only)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    progress: bool = True

    @property
    def precision_name(self) -> str:
        """The --precision value that gives this runtime's autocast: "bf16" or "fp32"."""
        return "fp32" if self.amp_dtype is None else {torch.bfloat16: "bf16"}.get(self.amp_dtype, str(self.amp_dtype))

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def bar(self, iterable: Iterable, desc: str, total: int | None = None):
        """Progress over `iterable`: a tqdm bar on a terminal; in a file (nohup, a scheduler's log)
        plain lines instead, at most one per PLAIN_PROGRESS_S seconds, so logs stay readable."""
        if not (self.progress and dist.is_main()):
            return iterable
        if not sys.stderr.isatty():
            return plain_progress(iterable, desc, total)
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


PLAIN_PROGRESS_S = 30.0


def plain_progress(iterable: Iterable, desc: str, total: int | None = None, interval_s: float = PLAIN_PROGRESS_S):
    """Yield from `iterable`, writing 'desc: n/total (p%), r it/s, ETA t s' lines to stderr at most
    every `interval_s` seconds and one 'done' line at the end; every line ends with a newline, so a
    log message written after it starts on its own line (tqdm's carriage returns would glue them)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    started = last = time.perf_counter()
    count = 0
    for item in iterable:
        yield item
        count += 1
        now = time.perf_counter()
        if now - last >= interval_s:
            last = now
            rate = count / (now - started)
            eta = f", ETA {(total - count) / rate:.0f} s" if total and rate > 0 else ""
            share = f" ({100 * count / total:.0f}%)" if total else ""
            sys.stderr.write(f"{desc}: {count}/{total or '?'}{share}, {rate:.2f} it/s{eta}\n")
            sys.stderr.flush()
    sys.stderr.write(f"{desc}: done, {count} in {time.perf_counter() - started:.1f} s\n")
    sys.stderr.flush()


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.is_distributed():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True on CPUs that declare bf16 arithmetic (AVX512-BF16 or AMX); whether it is faster than
    float32 there is measured (bf16_speedup)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MIN_SPEEDUP = 1.3  # --precision auto trains in bf16 on a CPU only when it measures this much faster


def best_seconds(call: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """The shortest of `repeats` timings of call() after `warmup` untimed calls (oneDNN and cuDNN
    build their kernels on the first), synchronising CUDA around each."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


@cache
def bf16_speedup(repeats: int = 7) -> float:
    """How much faster this CPU runs a convolution layer of the network under bf16 autocast than
    in float32 (the ratio of the best of `repeats` timings each; ~0.1 s in all). The CPU flags alone
    do not say it: one machine with AVX512-BF16 measured bf16 1.7x faster an epoch, another of the
    same model 0.8x (docs/measurements.md). Measured once per process, with the threads torch has."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    images = torch.randn(4, 64, 40, 40).contiguous(memory_format=torch.channels_last)

    def seconds(bf16: bool) -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return best_seconds(lambda: conv(images), torch.device("cpu"), repeats)
    return seconds(False) / seconds(True)


def select_amp_dtype(precision: str, device: torch.device, deterministic: bool) -> torch.dtype | None:
    """Autocast dtype of --precision: fp32 -> None, bf16 -> bfloat16, auto -> bfloat16 on CUDA and
    on CPUs with bf16 units where bf16 measures at least BF16_MIN_SPEEDUP times faster, else None.
    --deterministic always runs in float32."""
    if precision == "fp32" or deterministic:
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16() and bf16_speedup() >= BF16_MIN_SPEEDUP):
        return torch.bfloat16
    return None


def configure_determinism(deterministic: bool) -> None:
    """Settings that must precede the first CUDA call: cuBLAS needs a fixed workspace to be
    deterministic (torch.use_deterministic_algorithms, set in make_runtime, checks for it)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def make_runtime(device: str, precision: str, deterministic: bool) -> Runtime:
    """The Runtime of --device, --precision and --deterministic (which also selects deterministic kernels)."""
    resolved = select_device(device)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    return Runtime(device=resolved, amp_dtype=select_amp_dtype(precision, resolved, deterministic),
                   channels_last=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# -- CPU thread pools: CPU results depend on their sizes (reduction order) --------------------
# Libraries with a thread pool of their own (faiss, registered by modules/kmeans.py) register a
# getter and a setter, so that checkpoints record every pool and an exact resume restores them.
_THREAD_POOLS: dict[str, tuple] = {"torch": (torch.get_num_threads, torch.set_num_threads)}


def register_thread_pool(name: str, get: Callable[[], int | None], set_: Callable[[int], None]) -> None:
    _THREAD_POOLS[name] = (get, set_)


def thread_counts() -> dict[str, int | None]:
    """{pool: threads} of torch and every registered pool."""
    return {name: get() for name, (get, _) in _THREAD_POOLS.items()}


def set_thread_counts(counts: dict[str, int | None]) -> None:
    for name, value in counts.items():
        if value and name in _THREAD_POOLS:
            _THREAD_POOLS[name][1](int(value))


# -- Host memory: glibc malloc hands big blocks back to the OS as soon as they are freed ----------
# Every batch allocates and frees the same activation tensors. With glibc's defaults, blocks above
# 128 KB-32 MB are mmap'ed and unmapped on free, and the heap is trimmed whenever 128 KB are free
# at its top, so every step maps fresh pages and faults on each one (measured: 19 M page faults,
# a third of a 2-core benchmark run's CPU time spent in the kernel; docs/measurements.md). Keeping
# freed memory in the process, as caching allocators do, removes most of that. Blocks above
# MMAP_THRESHOLD_BYTES (glibc's upper limit) are still mapped each time.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 1024 ** 2  # the largest value glibc accepts
TRIM_THRESHOLD_BYTES = 1024 ** 3  # free memory at the heap's top is returned above 1 GB
TOP_PAD_BYTES = 64 * 1024 ** 2  # the heap grows 64 MB at a time
WORKER_TRIM_THRESHOLD_BYTES = 64 * 1024 ** 2  # DataLoader workers (limit_worker_memory)
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _mallopt(settings: dict[int, int]) -> bool:
    """glibc's mallopt for each (parameter, value); False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another C library: nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in settings.items())


_KEPT = {"freed_memory": False}


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse (see above); True when it did. Left alone
    where the user set a MALLOC_* variable (e.g. MALLOC_MMAP_THRESHOLD_=65536 for benchmarks that
    follow resident memory, benchmarks/bench_epoch.py) and where the C library is not glibc.
    Results do not change: only where tensors live in memory does."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in MALLOC_ENV):
        return False
    _KEPT["freed_memory"] = _mallopt({M_MMAP_THRESHOLD: MMAP_THRESHOLD_BYTES, M_TRIM_THRESHOLD: TRIM_THRESHOLD_BYTES,
                                      M_TOP_PAD: TOP_PAD_BYTES})
    return _KEPT["freed_memory"]


def limit_worker_memory() -> None:
    """In a DataLoader worker (forked with the main process's malloc settings): return free memory
    above 64 MB to the OS, so that many workers do not each hold up to TRIM_THRESHOLD_BYTES. They
    decode images; their allocations are not the training step's."""
    if _KEPT["freed_memory"]:
        _mallopt({M_TRIM_THRESHOLD: WORKER_TRIM_THRESHOLD_BYTES, M_TOP_PAD: 0})


def script_main(main: Callable[[], object]) -> NoReturn:
    """Run a script's main() and exit with the code it returns (0 for anything but an int, such as
    the results dict a benchmark's main returns to its tests).

    gc.freeze() first: the objects the imports made (torch, torchvision and the torch._dynamo and
    sympy modules torchvision pulls in) live until the process ends, yet Python's cyclic garbage
    collector walks all of them in every full collection and once more at exit. Frozen, they are
    skipped; nothing else changes (objects are still freed when unreferenced). On a 2-core CPU this
    takes ~1.2 s off every command, a fifth of a tiny training run (docs/testing.md).
    And glibc malloc keeps freed memory (keep_freed_memory).
    """
    keep_freed_memory()
    gc.freeze()
    code = main()
    sys.exit(code if isinstance(code, int) else 0)
