"""Mini-batch k-means over per-pixel features, the pseudo-label engine of PiCIE, and its online feed.

This is the only module that imports faiss. Two interchangeable backends:
- "faiss": faiss's Lloyd k-means for the initial centroids and a flat L2 index for the
  nearest-centroid search (on the GPU when a GPU build of faiss is installed);
- "torch": the same algorithm in torch (assignment by one matrix product per chunk), which
  keeps everything on the accelerator with no host round trip.

The algorithm follows the paper's code: Euclidean k-means (features are L2-normalised
beforehand when the metric is cosine, centroids are not), initial k-means on the first
batches, then for every further group of batches assign each point to its nearest centroid
and move centroid k toward the group mean of its members with rate n_k / count_k, where
count_k counts every point assigned to k so far (initial points included).
"""
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from utils import dist
from utils.errors import UserError
from utils.runtime import register_thread_pool

try:  # faiss is a hard requirement of the project, but keep torch-only use possible.
    import faiss
except ImportError:  # pragma: no cover - exercised only where faiss is missing
    faiss = None

log = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss", "torch")
# Rows per chunk in the torch assignment: bounds the [chunk, K] distance matrix.
_ASSIGN_CHUNK = 1 << 18


def faiss_threads() -> int | None:
    """OpenMP threads faiss uses (its own pool, apart from torch's), None without faiss."""
    return faiss.omp_get_max_threads() if faiss is not None else None


def set_faiss_threads(n_threads: int) -> None:
    """Fix faiss's thread count: with --deterministic a resumed run uses the original count."""
    if faiss is not None:
        faiss.omp_set_num_threads(int(n_threads))


# Checkpoints record faiss's pool beside torch's; an exact resume restores both (utils/runtime.py).
register_thread_pool("faiss", faiss_threads, set_faiss_threads)


@dataclass(frozen=True)
class KMeansSettings:
    """How every clustering of a run proceeds: Lloyd iterations of the initial k-means, how many
    batches it sees, batches per online update, pixels kept per image for the initial sample (or
    all), backend. K is each clustering's own: a training head's (ObjectiveSettings.n_clusters,
    --K_train; --K_aux) or the final protocol's (EvalSettings.n_clusters, --K_test)."""

    n_iter: int = 20
    num_init_batches: int = 20
    num_batches: int = 1
    pixels_per_image: int = 128
    init_all_pixels: bool = False
    backend: str = "auto"


def faiss_has_gpu() -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' picks torch on CUDA (no host copies) and faiss on the CPU."""
    if backend not in BACKENDS:
        raise UserError(f"--kmeans_backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "torch" if device.type == "cuda" or faiss is None else "faiss"
    if backend == "faiss" and faiss is None:
        raise UserError("--kmeans_backend faiss needs the faiss package: pip install faiss-cpu "
                           "(or faiss-gpu), or use --kmeans_backend torch")
    return backend


def squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [N, K] between points [N, D] and centroids [K, D] (float32)."""
    points = points.float()
    return ((points * points).sum(1, keepdim=True) - 2.0 * points @ centroids.T
            + (centroids * centroids).sum(1)[None, :]).clamp_min_(0.0)


def nearest_centroid(points: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (squared Euclidean) of points [N, D] among centroids [K, D]:
    (labels [N] int64, squared distances [N] float32), computed in chunks on the points' device."""
    labels = torch.empty(points.shape[0], dtype=torch.long, device=points.device)
    dists = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    centroids = centroids.to(points.device, torch.float32)
    for start in range(0, points.shape[0], _ASSIGN_CHUNK):
        chunk = slice(start, start + _ASSIGN_CHUNK)
        dist_chunk, label_chunk = squared_distances(points[chunk], centroids).min(1)
        labels[chunk], dists[chunk] = label_chunk, dist_chunk
    return labels, dists


def _split_empty(centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> int:
    """Re-seed empty clusters by splitting big ones (faiss's rule): copy a centroid chosen with
    probability proportional to its size, perturb the two copies symmetrically, halve the count."""
    n_split = 0
    eps = 1.0 / 1024
    for k in torch.nonzero(counts == 0).flatten().tolist():
        weights = (counts - 1).clamp_min(0).double()
        if weights.sum() <= 0:
            break
        donor = int(torch.multinomial(weights.cpu(), 1, generator=generator))
        centroids[k] = centroids[donor]
        sign = torch.where(torch.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0).to(centroids)
        centroids[k] *= 1 + sign * eps
        centroids[donor] *= 1 - sign * eps
        counts[k] = counts[donor] // 2
        counts[donor] -= counts[k]
        n_split += 1
    return n_split


def torch_kmeans(points: torch.Tensor, n_clusters: int, n_iter: int, seed: int,
                 max_points_per_centroid: int | None = None) -> tuple[torch.Tensor, int]:
    """Lloyd's k-means in torch on points [N, D]; returns (centroids [K, D], re-seeded count).

    Initialised with K distinct random points; empty clusters are split from large ones.
    """
    generator = torch.Generator().manual_seed(seed)
    n_points = points.shape[0]
    if max_points_per_centroid and n_points > n_clusters * max_points_per_centroid:
        keep = torch.randperm(n_points, generator=generator)[: n_clusters * max_points_per_centroid]
        points = points[keep.to(points.device)]
        n_points = points.shape[0]
    points = points.float()
    centroids = points[torch.randperm(n_points, generator=generator)[:n_clusters].to(points.device)].clone()
    reseeded = 0
    for _ in range(n_iter):
        labels, _ = nearest_centroid(points, centroids)
        counts = torch.bincount(labels, minlength=n_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None].float()
        reseeded += _split_empty(centroids, counts.cpu(), generator)
    return centroids, reseeded


def faiss_kmeans(points: torch.Tensor, n_clusters: int, n_iter: int, seed: int,
                 max_points_per_centroid: int | None = None, use_gpu: bool = False,
                 stats: dict | None = None) -> torch.Tensor:
    """faiss's Lloyd k-means on points [N, D]; returns centroids [K, D] on the points' device.

    faiss re-seeds empty clusters itself by splitting large ones; `stats` (optional) receives
    how many splits it made ("nsplit"), so that they are logged and counted like the torch backend's.
    """
    points_np = np.ascontiguousarray(points.detach().float().cpu().numpy())
    kmeans = faiss.Kmeans(points_np.shape[1], n_clusters, niter=n_iter, seed=seed, verbose=False,
                          gpu=use_gpu, max_points_per_centroid=max_points_per_centroid or (1 << 30),
                          min_points_per_centroid=1)
    kmeans.train(points_np)
    if stats is not None:
        stats["nsplit"] = int(sum(s.get("nsplit", 0) for s in getattr(kmeans, "iteration_stats", [])))
    return torch.from_numpy(kmeans.centroids.copy()).to(points.device)


class NonFiniteFeaturesError(FloatingPointError):
    """Features holding NaN or inf reached k-means (the network's weights diverged); the entry
    scripts stop with exit code 3 and a hint, whatever the backend (faiss would raise its own error)."""


def require_finite(points: torch.Tensor) -> None:
    """Raise NonFiniteFeaturesError unless every value of `points` (any shape) is finite."""
    finite = torch.isfinite(points)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteFeaturesError(f"non-finite features ({bad} of {points.numel()} values are NaN or inf) reached "
                                     "k-means: the network's weights have diverged")


class MiniBatchKMeans:
    """Online k-means state for one view: centroids [K, D], counts [K] and the running k-means loss.

    `reduce` (optional) sums per-cluster statistics across processes, so that every rank
    of a distributed run applies the same update; see utils/dist.py.
    """

    def __init__(self, n_clusters: int, n_iter: int = 20, seed: int = 0, backend: str = "auto",
                 device: torch.device = torch.device("cpu"), max_points_per_centroid: int | None = None):
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.seed = seed
        self.device = torch.device(device)
        self.backend = resolve_backend(backend, self.device)
        self.max_points_per_centroid = max_points_per_centroid
        self.centroids: torch.Tensor | None = None
        self.counts = torch.zeros(n_clusters, dtype=torch.float64, device=self.device)
        self.loss_sum = 0.0
        self.loss_count = 0
        self.reseeded = 0
        self.empty_after_init = 0  # clusters with no point after the initial k-means (fewer distinct points than K)
        self._index = None

    # -- assignment ---------------------------------------------------------------------
    def assign(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centroid of each point: (labels [N] int64, squared distances [N] float32)."""
        if self.centroids is None:
            raise RuntimeError("k-means has no centroids yet: call fit_init first")
        if self.backend == "torch":
            return nearest_centroid(points, self.centroids)
        if self._index is None:
            self._index = faiss.IndexFlatL2(self.centroids.shape[1])
            if faiss_has_gpu() and self.device.type == "cuda":
                self._index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self._index)
            self._index.add(np.ascontiguousarray(self.centroids.float().cpu().numpy()))
        dists, labels = self._index.search(np.ascontiguousarray(points.detach().float().cpu().numpy()), 1)
        return (torch.from_numpy(labels[:, 0]).to(points.device),
                torch.from_numpy(dists[:, 0]).to(points.device))

    def _set_centroids(self, centroids: torch.Tensor) -> None:
        if not torch.isfinite(centroids).all():
            raise FloatingPointError("k-means produced non-finite centroids (non-finite features?)")
        self.centroids = centroids.to(self.device, torch.float32).contiguous()
        self._index = None  # the faiss index is rebuilt lazily from the new centroids

    # -- initial k-means ----------------------------------------------------------------
    def fit_init(self, points: torch.Tensor, n_represented: int | None = None) -> float:
        """Initial centroids from points [N, D]; counts start as the points assigned to each.

        `n_represented`: how many pixels the (sub)sample stands for; counts are scaled to it
        so that the online learning rates match those of clustering every pixel.
        Returns the mean squared distance of the points to their centroid.
        """
        require_finite(points)  # before either backend: faiss would fail with its own traceback
        points = points.to(self.device)
        n_points = points.shape[0]
        if n_points < self.n_clusters:
            # Too few points for K clusters (tiny data): repeat them with a small jitter so every
            # cluster gets a distinct seed; the split rule then keeps all K clusters alive.
            log.warning("k-means: %d points for %d clusters; repeating points to seed every cluster",
                        n_points, self.n_clusters)
            reps = -(-self.n_clusters // n_points)
            generator = torch.Generator().manual_seed(self.seed)
            noise = torch.randn((n_points * reps, points.shape[1]), generator=generator).to(points) * 1e-3
            points = points.float().repeat(reps, 1) + noise
        if self.backend == "torch":
            centroids, reseeded = torch_kmeans(points, self.n_clusters, self.n_iter, self.seed,
                                               self.max_points_per_centroid)
        else:
            faiss_stats = {}
            centroids = faiss_kmeans(points, self.n_clusters, self.n_iter, self.seed,
                                     self.max_points_per_centroid,
                                     use_gpu=faiss_has_gpu() and self.device.type == "cuda", stats=faiss_stats)
            reseeded = faiss_stats.get("nsplit", 0)
        self.reseeded += reseeded
        if reseeded:
            log.info("k-means: re-seeded %d empty clusters during the initial k-means", reseeded)
        self._set_centroids(centroids)
        labels, dists = self.assign(points)
        counts = torch.bincount(labels, minlength=self.n_clusters).double()
        self.empty_after_init = int((counts == 0).sum())
        if self.empty_after_init:
            # Only possible with fewer distinct features than clusters (e.g. uniform images): the
            # centroids stay finite and these clusters simply get no pixels.
            log.info("k-means: %d of %d clusters are empty after the initial k-means (fewer distinct features "
                     "than clusters); they get no pixels", self.empty_after_init, self.n_clusters)
        scale = (n_represented or n_points) / points.shape[0]
        self.counts = counts.to(self.device) * scale
        self.loss_sum += float(dists.double().sum())
        self.loss_count += int(dists.numel())
        return float(dists.double().mean())

    # -- online update ------------------------------------------------------------------
    def partial_fit(self, points: torch.Tensor,
                    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """One mini-batch update with points [N, D]: c_k += (n_k / count_k) (mean_k - c_k)."""
        labels, dists = self.assign(points)
        sums = torch.zeros((self.n_clusters, points.shape[1]), dtype=torch.float64, device=self.device)
        sums.index_add_(0, labels.to(self.device), points.to(self.device, torch.float64))
        batch_counts = torch.bincount(labels.to(self.device), minlength=self.n_clusters).double()
        # One tensor so that a distributed run sums everything in one all-reduce: per-cluster
        # sums and counts, then (in an extra row) the loss sum and the number of points.
        loss_row = torch.zeros((1, points.shape[1] + 1), dtype=torch.float64, device=self.device)
        loss_row[0, 0] = dists.double().sum()
        loss_row[0, 1] = dists.numel()
        stats = torch.cat([torch.cat([sums, batch_counts[:, None]], dim=1), loss_row])
        if reduce is not None:
            stats = reduce(stats)
        sums, batch_counts = stats[:-1, :-1], stats[:-1, -1]
        self.loss_sum += float(stats[-1, 0])
        self.loss_count += int(stats[-1, 1])
        self.counts += batch_counts
        hit = batch_counts > 0
        rate = (batch_counts[hit] / self.counts[hit])[:, None]
        batch_means = sums[hit] / batch_counts[hit, None]
        centroids = self.centroids.double()
        centroids[hit] = (1 - rate) * centroids[hit] + rate * batch_means
        self._set_centroids(centroids.float())

    @property
    def loss(self) -> float:
        """Mean squared distance of every point seen to its centroid at the time it was seen."""
        return self.loss_sum / max(self.loss_count, 1)


def assign_cells(feats: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Cluster of every feature-map cell, as the training k-means assigns them (pseudo-labels):
    feats [B, C, h, w], centroids [K, C] -> [B, h, w] int64."""
    labels, _ = nearest_centroid(flatten_pixels(feats), centroids)
    return labels.reshape(feats.shape[0], feats.shape[2], feats.shape[3])


def flatten_pixels(feats: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B*h*w, C] (image-major, then row, then column)."""
    return feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])


class OnlineKMeansFeed:
    """Feeds feature batches to one MiniBatchKMeans on PiCIE's schedule: the first
    `num_init_batches` batches go to the initial k-means (a random `pixels_per_image` sample of
    each image, or every pixel), then every `num_batches` batches make one online update.

    Distributed runs: every rank feeds its own shard; the initial sample is gathered from all
    ranks and put in image-index order, and online updates sum statistics over ranks, so all
    ranks hold the same centroids, equal to one process's when the global batches match.
    Ranks with fewer batches call `add_empty` so that every rank joins every collective.
    """

    def __init__(self, kmeans: MiniBatchKMeans, settings: KMeansSettings, seed: int, dim: int):
        self.kmeans = kmeans
        self.settings = settings
        self.seed = seed
        self.dim = dim
        self.init_points: list[torch.Tensor] = []
        self.init_indices: list[torch.Tensor] = []  # image index of every initial point (for a canonical order)
        self.init_pixels = 0
        self.pending: list[torch.Tensor] = []
        self.n_batches = 0
        self.initialized = False
        self.peak_bytes = 0  # largest k-means-owned feature memory held at once (init sample or update group)

    def _sample(self, feats: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial-k-means points of a batch [B*n, C] and their image indices [B*n]; the pixels
        kept from an image depend only on (seed, image index), not on batch or rank."""
        batch, channels, height, width = feats.shape
        per_image = height * width
        if self.settings.init_all_pixels or self.settings.pixels_per_image >= per_image:
            return flatten_pixels(feats).clone(), indices.repeat_interleave(per_image)
        keys = torch.stack([torch.rand(per_image, generator=torch.Generator().manual_seed(self.seed * 1000003 + int(i)))
                            for i in indices.tolist()]).to(feats.device)
        picks = keys.topk(self.settings.pixels_per_image, dim=1).indices  # random subset per image
        flat = feats.flatten(2).gather(2, picks[:, None, :].expand(-1, channels, -1))
        return flat.permute(0, 2, 1).reshape(-1, channels), indices.repeat_interleave(self.settings.pixels_per_image)

    def _fit_init(self) -> None:
        device = self.kmeans.device
        local = (torch.cat(self.init_points) if self.init_points
                 else torch.zeros((0, self.dim), device=device))
        local_indices = (torch.cat(self.init_indices).to(local.device) if self.init_indices
                         else torch.zeros(0, dtype=torch.long, device=local.device))
        # A canonical point order, by image index (stable within an image), so that k-means's random
        # initialisation picks the same points whatever the batch order and the number of ranks.
        points = dist.all_gather_cat(local)
        order = torch.sort(dist.all_gather_cat(local_indices), stable=True).indices
        points = points[order.to(points.device)]
        self._track(self.init_points, extra=points.numel() * points.element_size())
        n_represented = int(dist.all_reduce_sum(torch.tensor([self.init_pixels], dtype=torch.float64,
                                                             device=points.device)).item())
        if points.shape[0] == 0:
            raise RuntimeError("k-means saw no features: the image list is empty or every image failed to load")
        self.kmeans.fit_init(points, n_represented=n_represented)
        self.init_points, self.init_indices = [], []
        self.initialized = True

    def add(self, feats: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """feats [B, C, h, w] of one batch (already normalised if the metric is cosine) and the
        images' dataset indices [B] (used to order the initial sample; default 0..B-1). Every
        value is checked finite here, before any backend sees it (the one way features enter
        clustering, in training and in evaluation): NonFiniteFeaturesError otherwise."""
        require_finite(feats)
        if indices is None:
            indices = torch.arange(feats.shape[0])
        self.n_batches += 1
        if not self.initialized:
            points, point_indices = self._sample(feats, indices.cpu())
            self.init_points.append(points)
            self.init_indices.append(point_indices)
            self.init_pixels += feats.shape[0] * feats.shape[2] * feats.shape[3]
            self._track(self.init_points)
            if self.n_batches == self.settings.num_init_batches:
                self._fit_init()
            return
        self.pending.append(flatten_pixels(feats))
        if len(self.pending) == self.settings.num_batches:
            self._update()

    def add_empty(self) -> None:
        """A batch with no readable image (or a rank's missing batch): keeps the schedule and the
        collectives of all ranks in step."""
        self.n_batches += 1
        if not self.initialized:
            if self.n_batches == self.settings.num_init_batches:
                self._fit_init()
            return
        self.pending.append(torch.zeros((0, self.dim), device=self.kmeans.device))
        if len(self.pending) == self.settings.num_batches:
            self._update()

    def _track(self, tensors: Sequence[torch.Tensor], extra: int = 0) -> None:
        held = sum(t.numel() * t.element_size() for t in tensors) + extra
        self.peak_bytes = max(self.peak_bytes, held)

    def _update(self) -> None:
        points = self.pending[0] if len(self.pending) == 1 else torch.cat(self.pending)
        copies = 0 if len(self.pending) == 1 else points.numel() * points.element_size()
        self._track(self.pending, extra=copies)
        self.kmeans.partial_fit(points, reduce=dist.all_reduce_sum)
        self.pending = []

    def finish(self) -> MiniBatchKMeans:
        """Initialise on what was collected if there were fewer batches than num_init_batches,
        and use the last incomplete group of batches too."""
        if not self.initialized:
            self._fit_init()
        if self.pending:
            self._update()
        return self.kmeans


def require_points(n_points: int, n_clusters: int, flag: str, what: str) -> None:
    """One clear line instead of a meaningless clustering: k-means of K clusters needs at least K
    feature vectors (n_points: every feature-map cell the clustering would see)."""
    if n_points < n_clusters:
        raise UserError(f"{flag} {n_clusters}: k-means needs at least as many feature vectors as clusters, and "
                        f"{what} give {n_points}; pass {flag} {n_points} or fewer, or use more or larger images")
