"""How much memory a training run, an evaluation or a prediction will need, estimated before any
work, and the check that stops a run that cannot fit with one line naming the flag to lower and
the largest value that fits.

The arithmetic lives here only: each *_parts function returns a breakdown {part: bytes} from the
resolution, the batch sizes, the network (NetworkCost: stride, feature width, parameters, and the
activations a forward pass makes per input pixel, measured on the network itself by
modules/networks.py: network_cost) and the dataset size; `where` says which parts live on the
accelerator (the rest is host RAM). check_fits compares a breakdown with what is available (host:
MemAvailable of /proc/meminfo, capped by a cgroup limit; CUDA: torch.cuda.mem_get_info) and, when
it does not fit, searches the largest value of one flag that does. format_parts prints a
breakdown. The constants are calibrated against measured peak memory (docs/reliability.md,
"Memory estimate"): the estimate aims to be within a factor of about 1.5 of the peak, not a bound.
--skip_memory_check skips the check.
"""
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from utils.errors import UserError

GIB = 2 ** 30
MIB = 2 ** 20
PROCESS_BYTES = 900 * MIB          # the interpreter with torch, faiss, PIL, ... loaded (peak RSS of a tiny run)
TRAIN_ACTIVATION_FACTOR = 0.5      # training: kept for the backward / every layer output of a forward (calibrated)
INFERENCE_ACTIVATION_FACTOR = 0.15  # no gradients: only a few layer outputs are alive at once (calibrated)
FLOAT = 4                          # bytes of a float32 value
MEMMAP_ABOVE = 2 ** 31             # pseudo-label arrays larger than this are memory-mapped files (pseudo_labels.py)
# The image lists, their checks and loaders' index state per training image: the rehearsal at COCO-Stuff's size
# (benchmarks/bench_scale.py, docs/measurements.md) measured +146 MB from 1,000 to 49,629 images.
LISTS_BYTES_PER_IMAGE = 3 * 1024


class MemoryLimitError(UserError):
    """The run cannot fit in the memory available; the message names the flag and the largest value
    that fits (`largest`; None when not even the smallest value fits)."""

    def __init__(self, message: str, largest: int | None = None):
        super().__init__(message)
        self.largest = largest


@dataclass(frozen=True)
class NetworkCost:
    """What the estimate needs to know of a network (modules/networks.py: network_cost)."""

    stride: int                    # input pixels per feature cell along a side
    feat_dim: int                  # channels of the feature map
    n_params: int
    n_trained: int                 # parameters with gradients and optimiser state
    activation_bytes_per_pixel: float  # float32 bytes of every layer's output of one forward, per input pixel


def cells(res: int, stride: int) -> int:
    """Feature cells of a res x res input."""
    return max(res // stride, 1) ** 2


def training_parts(net: NetworkCost, n_images: int, res1: int, res2: int, batch_cluster: int, batch_train: int,
                   head_clusters: Sequence[int], feature_cache_bytes: float, init_points: int,
                   optimizer_slots: int, loader_batches: int, half_precision: bool = False) -> dict[str, float]:
    """Peak memory of a training run by part, in bytes. head_clusters: K of every clustering head
    (PiCIE: 2 heads); init_points: points per head of the initial k-means sample; optimizer_slots:
    state tensors per trained parameter (SGD with momentum 1, Adam 2); loader_batches: loaded
    batches alive at once (the one in use and the workers' prefetched ones); half_precision:
    the forward passes run under a 16-bit autocast (their activations take half the bytes)."""
    n_heads, n_cells = len(head_clusters), cells(res1, net.stride)
    activations = net.activation_bytes_per_pixel * (0.5 if half_precision else 1.0)
    view_bytes = 3 * res1 * res1 * FLOAT
    feature_bytes = net.feat_dim * n_cells * FLOAT
    label_bytes = [n_images * n_cells * (1 if k <= 256 else 2) for k in head_clusters]
    return {
        "process": PROCESS_BYTES,
        "network and optimiser": net.n_params * FLOAT + net.n_trained * FLOAT * (1 + optimizer_slots),
        "training activations": TRAIN_ACTIVATION_FACTOR * activations * 2 * batch_train * res1 ** 2,
        "training loss": 2 * batch_train * n_cells * max(head_clusters) * FLOAT * 4 * n_heads,
        "clustering pass": batch_cluster * 2 * (INFERENCE_ACTIVATION_FACTOR * activations * res1 ** 2 + view_bytes
                                                + feature_bytes),
        "loaded images": loader_batches * max(batch_cluster, batch_train) * 3 * res2 * res2 * (1 + FLOAT),
        "feature cache": min(feature_cache_bytes, n_images * 2 * (view_bytes + feature_bytes)),
        "image lists": n_images * LISTS_BYTES_PER_IMAGE,
        "k-means sample": n_heads * 2 * init_points * net.feat_dim * FLOAT,
        # Larger arrays are memory-mapped files in the run folder: the page cache holds what fits.
        "pseudo-labels": sum(b for b in label_bytes if b <= MEMMAP_ABOVE),
    }


# The parts of training_parts that live on the accelerator when the run uses one.
TRAINING_ON_DEVICE = ("network and optimiser", "training activations", "training loss", "clustering pass",
                      "feature cache", "k-means sample")


def evaluation_parts(net: NetworkCost, res: int, batch_test: int, n_clusters: int, init_points: int,
                     loader_batches: int) -> dict[str, float]:
    """Peak memory of an evaluation (test_picie.py, and the final evaluation of training) by part:
    batches of batch_test images at --res, their logits upsampled to the label maps' size, and
    the fresh k-means sample."""
    return {
        "process": PROCESS_BYTES,
        "network": net.n_params * FLOAT,
        "evaluation pass": batch_test * (INFERENCE_ACTIVATION_FACTOR * net.activation_bytes_per_pixel * res ** 2
                                         + net.feat_dim * cells(res, net.stride) * FLOAT
                                         + 3 * n_clusters * res * res * FLOAT),
        "loaded images": loader_batches * batch_test * 3 * res * res * (1 + FLOAT),
        "k-means sample": 2 * init_points * net.feat_dim * FLOAT,
    }


EVALUATION_ON_DEVICE = ("network", "evaluation pass", "k-means sample")


def prediction_parts(net: NetworkCost, network_pixels: int, full_pixels: int, batch_pixels: int, batch: int,
                     n_clusters: int, crf: bool) -> dict[str, float]:
    """Peak memory of predict.py by part: a batch of `batch` network inputs of network_pixels each,
    then one image at a time at its full resolution (full_pixels: the largest image): its
    [K, H, W] float32 logits, their upsampling and argmax (and with --crf its [K, H, W]
    probabilities twice more); batch_pixels: full-resolution pixels of the decoded batch."""
    return {
        "process": PROCESS_BYTES,
        "network": net.n_params * FLOAT,
        "network pass": batch * network_pixels * (INFERENCE_ACTIVATION_FACTOR * net.activation_bytes_per_pixel
                                                  + 3 * FLOAT),
        "full-resolution maps": full_pixels * (n_clusters * FLOAT * (4 if crf else 2) + 8 + 3 * 2),
        "decoded images": batch_pixels * 3 * 2,
    }


PREDICTION_ON_DEVICE = ("network", "network pass", "full-resolution maps")


# -- what is available --------------------------------------------------------------------------
def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), when it has a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        return int(limit) - int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None


def _own_rss() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def host_available() -> int | None:
    """Bytes of host RAM this process may still use, its own resident memory included (the
    estimates count the process itself); None where it cannot be read (no check then)."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(found) + _own_rss() if found else None


def device_available(device) -> int | None:
    """Free bytes of a CUDA device (None for the CPU or when unknown), plus what torch already caches."""
    if getattr(device, "type", str(device)) != "cuda":
        return None
    import torch  # noqa: PLC0415 - only a CUDA run asks

    try:
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device)
    except RuntimeError:
        return None


# -- the check ----------------------------------------------------------------------------------
def split_parts(parts: dict[str, float], on_device: Iterable[str], uses_device: bool) -> tuple[float, float]:
    """(host bytes, device bytes) of a breakdown; without an accelerator everything is host RAM."""
    on_device = set(on_device) if uses_device else set()
    device = sum(v for k, v in parts.items() if k in on_device)
    return sum(parts.values()) - device, device


def format_parts(parts: dict[str, float], top: int | None = None) -> str:
    """'total 41.2 GB (training activations 30.1 GB, ...)': the largest parts first."""
    ranked = sorted(parts.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {format_size(value)}" for name, value in ranked)


def format_size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GB" if n_bytes >= 0.1 * GIB else f"{n_bytes / MIB:.0f} MB"


@dataclass(frozen=True)
class Available:
    """Bytes available on the host and on the accelerator (None: unknown or none)."""

    host: int | None
    device: int | None

    @classmethod
    def now(cls, device) -> "Available":
        return cls(host_available(), device_available(device))

    def describe(self) -> str:
        """What is available, in words."""
        host = f"{format_size(self.host)} of RAM available" if self.host is not None else "RAM unknown"
        return host + (f", {format_size(self.device)} of GPU memory free" if self.device is not None else "")

    def shortfall(self, parts: dict[str, float], on_device: Iterable[str]) -> str | None:
        """None when `parts` fits, else which memory it exceeds, in words."""
        host, device = split_parts(parts, on_device, self.device is not None)
        if self.device is not None and device > self.device:
            return f"{format_size(device)} of GPU memory where {format_size(self.device)} is free"
        if self.host is not None and host > self.host:
            return f"{format_size(host)} of RAM where {format_size(self.host)} is available"
        return None


def largest_fitting(parts_at: Callable[[int], dict[str, float]], fits: Callable[[dict[str, float]], bool],
                    low: int, high: int, step: int = 1) -> int | None:
    """The largest multiple of `step` in [low, high] whose breakdown parts_at(value) fits (the
    estimates grow with the value), or None when not even `low` fits."""
    low = max(step, -(-low // step) * step)
    if low > high or not fits(parts_at(low)):
        return None
    lo, hi = low // step, high // step  # lo fits; search the largest fitting multiple
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(parts_at(mid * step)):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def check_fits(what: str, parts_at: Callable[[int], dict[str, float]], value: int, flag: str, on_device: Iterable[str],
               available: Available, step: int, low: int, other: str = "", skip: bool = False) -> dict[str, float]:
    """Stop (MemoryLimitError, one line) unless `what` with `flag` `value` fits in `available`;
    the line names the largest value of `flag` that fits (or `other`, what to lower instead, when
    none does). Returns the breakdown at `value` (for the log)."""
    on_device = tuple(on_device)
    parts = parts_at(value)
    problem = available.shortfall(parts, on_device)
    if problem is None or skip:
        return parts
    best = largest_fitting(parts_at, lambda p: available.shortfall(p, on_device) is None, low, value - 1, step)
    fix = (f"the largest {flag} that fits is {best}" if best is not None
           else f"even {flag} {low} does not fit: lower {other}" if other else f"even {flag} {low} does not fit")
    raise MemoryLimitError(f"{what} with {flag} {value} needs about {problem} ({format_parts(parts, 3)}): {fix}; "
                           "--skip_memory_check runs it anyway", largest=best)
