"""Pseudo-labels: the clustering pass of an epoch, the labels of every pixel and where they live.

Steps 1-2 of a PiCIE epoch (cluster_and_label): one pass over the training images forms both
views of every image (data/transforms.py), computes their features with the network in eval
mode (modules/siamese.py), feeds each clustering head's features to its online k-means
(modules/kmeans.py), then labels every pixel of every image per head with its nearest final
centroid. The labels live in one uint8/uint16 array [N, h, w] per head (allocate_labels: in
memory, or memory-mapped in the run folder when large), and the training pass reads them.

The pass reads and decodes each image once. What it computed (both views' inputs and
features) is kept in a PassCache while it fits in --feature_cache_gb: labelling then reuses the
features instead of recomputing them, and training reuses the views (identical by
construction: the same parameters per (seed, epoch, image)).
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from data.transforms import ViewMaker, make_views
from modules.kmeans import KMeansSettings, MiniBatchKMeans, OnlineKMeansFeed, flatten_pixels
from modules.objectives import Head
from modules.siamese import SiamesePair, embed_views, features_of_views
from utils import dist
from utils.loaders import Batch, feed_pass
from utils.runtime import Runtime


class PassCache:
    """What the clustering pass of an epoch computed, kept while it fits in `budget_bytes`:
    per batch the image indices, both views' network inputs (reused by the training pass,
    whose views are identical by construction) and both views' features (reused to label).
    Once over budget it is emptied and the later passes recompute instead."""

    def __init__(self, budget_bytes: float, channels_last: bool = False):
        self.budget = budget_bytes
        self.channels_last = channels_last  # hand views back in the layout make_views gives them
        self.batches: list[tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = []
        self.views_of: dict[int, tuple[int, int]] = {}  # image index -> (batch number, row)
        self.bytes = 0
        self.complete = budget_bytes > 0

    def add(self, indices: torch.Tensor, views: Sequence[torch.Tensor], feats: Sequence[torch.Tensor]) -> None:
        if not self.complete:
            return
        size = sum(t.numel() * t.element_size() for t in (*views, *feats))
        if self.bytes + size > self.budget:
            self.batches, self.views_of, self.complete = [], {}, False
            return
        for row, index in enumerate(indices.tolist()):
            self.views_of[index] = (len(self.batches), row)
        self.batches.append((indices, tuple(views), tuple(feats)))
        self.bytes += size

    def has_views(self, indices: Sequence[int]) -> bool:
        return self.complete and all(i in self.views_of for i in indices)

    def views(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached inputs of both views for `indices`: [B, 3, res1, res1] each."""
        picks = [self.views_of[i] for i in indices]
        view1 = torch.stack([self.batches[b][1][0][r] for b, r in picks])
        view2 = torch.stack([self.batches[b][1][1][r] for b, r in picks])
        if self.channels_last:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        return view1, view2

    def release(self) -> None:
        """Empty the cache once the epoch's training has used it: the next clustering pass and the
        final protocol would otherwise run beside up to --feature_cache_gb of stale views and features."""
        self.batches, self.views_of, self.bytes, self.complete = [], {}, 0, False

    def drop_features(self) -> None:
        self.batches = [(indices, views, ()) for indices, views, _ in self.batches]


@dataclass(frozen=True)
class PseudoLabelSettings:
    """How an epoch's pseudo-labels are made: the k-means schedule (batches, iterations, sample; the
    K of each clustering is its head's, Head.n_clusters), the run's --seed (each head's k-means seed
    derives from it and the epoch; see Head.kmeans_seed), cosine features or not (--metric_train) and
    the budget of the PassCache (--feature_cache_gb, in bytes)."""

    kmeans: KMeansSettings
    seed: int
    l2_normalize: bool
    feature_cache_bytes: float


@dataclass
class EpochClusters:
    """Result of the clustering and labelling passes of one epoch; one entry per head
    (PiCIE: view 1, view 2; see modules/objectives.py)."""

    centroids: list[torch.Tensor]          # per head [K, C]
    counts: list[torch.Tensor]             # per head, pixels per cluster [K]
    labels: list[np.ndarray]               # per head, [N, h, w] uint8/uint16 (allocate_labels)
    kmeans_loss: list[float]
    cache: PassCache
    labelled: np.ndarray                   # bool [N]: labelled this epoch (False: unreadable, not trained on)
    reused_features: bool = False
    stats: dict[str, float] = field(default_factory=dict)


def cluster_and_label(model, loader, view_maker: ViewMaker, epoch: int, heads: Sequence[Head],
                      label_arrays: Sequence[np.ndarray], settings: PseudoLabelSettings, runtime: Runtime,
                      lap: Callable[[str], None] = lambda phase: None) -> EpochClusters:
    """Steps 1-2 of an epoch: online k-means of every head in one pass, then label every pixel.

    heads: the clusterings, (view, K) each (the objective's); label_arrays: one array [N, h, w]
    per head, filled in place with the pseudo-labels; lap(phase): told when k-means and
    labelling end.
    """
    n_views = max(head.view for head in heads) + 1
    schedule, seed, l2_normalize = settings.kmeans, settings.seed, settings.l2_normalize
    kmeans_feeds = [OnlineKMeansFeed(MiniBatchKMeans(head.n_clusters, schedule.n_iter,
                                                     seed=head.kmeans_seed(seed, epoch), backend=schedule.backend,
                                                     device=runtime.device),
                                     schedule,
                                     seed=head.kmeans_seed(seed, epoch), dim=model.feat_dim) for head in heads]
    cache = PassCache(settings.feature_cache_bytes, channels_last=runtime.channels_last)
    pair = SiamesePair(model)
    model.eval()  # BatchNorm statistics stay fixed while clustering (the original drifted them)

    def both_views(batch):
        params = view_maker.params(epoch, batch.indices.tolist(), runtime.device)
        views = make_views(view_maker, batch.images, params, runtime, runtime.amp_dtype)
        feats = features_of_views(pair, view_maker, *views, params, runtime, l2_normalize, n_views)
        cache.add(batch.indices, views, feats)
        return [feats[head.view] for head in heads]

    with torch.inference_mode():
        feed_pass(kmeans_feeds, loader, both_views, f"epoch {epoch} cluster", runtime)
        kmeans = [feed.finish() for feed in kmeans_feeds]
        lap("kmeans")

        # Step 2: pseudo-labels of every pixel with the final centroids.
        counts = [torch.zeros(head.n_clusters, dtype=torch.float64, device=runtime.device) for head in heads]
        # Images unreadable in this pass get no labels this epoch, so training must skip them too
        # (their rows hold an earlier epoch's labels, or zeros).
        labelled = np.zeros(len(label_arrays[0]), dtype=bool)

        def label_batch(indices: torch.Tensor, feats: Sequence[torch.Tensor]) -> None:
            rows = indices.numpy()
            labelled[rows] = True
            for index, (head, km) in enumerate(zip(heads, kmeans, strict=True)):
                feats_view = feats[head.view]
                assigned, _ = km.assign(flatten_pixels(feats_view))
                counts[index] += torch.bincount(assigned, minlength=head.n_clusters).to(counts[index])
                height, width = feats_view.shape[-2:]
                label_arrays[index][rows] = assigned.reshape(-1, height, width).cpu().numpy()

        if cache.complete:
            for indices, _, feats in cache.batches:
                label_batch(indices, feats)
            cache.drop_features()
        else:
            for batch in runtime.bar(loader, f"epoch {epoch} label"):
                if batch.indices.numel() == 0:
                    continue
                params = view_maker.params(epoch, batch.indices.tolist(), runtime.device)
                label_batch(batch.indices, embed_views(pair, view_maker, batch.images, params, runtime, l2_normalize,
                                                       n_views))
        counts = [dist.all_reduce_sum(c) for c in counts]
        lap("label")
    # Clones made outside inference mode: training takes gradients through products with them.
    return EpochClusters(centroids=[km.centroids.clone() for km in kmeans], counts=[c.clone() for c in counts],
                         labels=list(label_arrays),
                         kmeans_loss=[km.loss for km in kmeans], reused_features=cache.complete, cache=cache,
                         labelled=labelled,
                         stats={"kmeans_reseeded": float(sum(km.reseeded for km in kmeans)),
                                "kmeans_peak_mb": sum(feed.peak_bytes for feed in kmeans_feeds) / 2 ** 20,
                                "centroid_rank_diff": max(dist.max_diff_from_rank0(km.centroids) for km in kmeans)})


def training_batches(loader, clusters: EpochClusters):
    """The training pass's batches: the loader's, except that when every view of the epoch is
    cached, only index batches (same order and sizes as the loader's) so no image is decoded
    again. Images not labelled this epoch (unreadable in the clustering pass) are dropped from
    their batch (counted in its n_skipped): they have no labels and are not cached."""
    for batch in _indexed_batches(loader, clusters.cache, clusters.labelled):
        keep = torch.from_numpy(clusters.labelled[batch.indices.numpy()])
        if batch.indices.numel() > 0 and not bool(keep.all()):
            images = None if batch.images is None else batch.images[keep.to(batch.images.device)]
            batch = Batch(batch.indices[keep], images, None, batch.n_skipped + int((~keep).sum()))
        yield batch


def training_views(view_maker: ViewMaker, batch: Batch, epoch: int, clusters: EpochClusters,
                   runtime: Runtime) -> tuple[tuple[torch.Tensor, torch.Tensor], object]:
    """((view1, view2) [B, 3, res1, res1], view params) of a training batch: the same parameters
    as in this epoch's clustering pass, the views themselves reused from its cache when there."""
    indices = batch.indices.tolist()
    params = view_maker.params(epoch, indices, runtime.device)
    if clusters.cache.has_views(indices):
        return clusters.cache.views(indices), params
    return make_views(view_maker, batch.images, params, runtime, runtime.amp_dtype), params


def batch_labels(clusters: EpochClusters, indices: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Every head's pseudo-labels of the images `indices` [B]: int64 [B, h, w] each, on `device`."""
    rows = indices.numpy()
    return [torch.from_numpy(head_labels[rows].astype(np.int64)).to(device) for head_labels in clusters.labels]


def _indexed_batches(loader, cache: PassCache, labelled: np.ndarray):
    sampler = loader.sampler
    if not cache.complete or not hasattr(sampler, "indices"):
        yield from loader
        return
    order = sampler.indices()
    if not cache.has_views([i for i in order if labelled[i]]):
        yield from loader
        return
    for start in range(0, len(order), loader.batch_size):
        chunk = order[start: start + loader.batch_size]
        yield Batch(torch.tensor(chunk, dtype=torch.long), None)


def label_dtype(n_clusters: int):
    return np.uint8 if n_clusters <= 256 else np.uint16


def allocate_labels(n_images: int, grid: int, heads: Sequence[Head], path_prefix: str | None = None,
                    memmap_above_bytes: float = 2 ** 31) -> list[np.ndarray]:
    """One pseudo-label array [N, grid, grid] per head (PiCIE: view1, view2): in memory, or
    memory-mapped files in the run folder (path_prefix + '_<head name>.npy', e.g. '_view1.npy')
    when one would exceed `memmap_above_bytes`."""
    dtypes = [label_dtype(head.n_clusters) for head in heads]
    size = max(n_images * grid * grid * np.dtype(dtype).itemsize for dtype in dtypes)
    if path_prefix is None or size <= memmap_above_bytes:
        return [np.zeros((n_images, grid, grid), dtype=dtype) for dtype in dtypes]
    return [np.lib.format.open_memmap(f"{path_prefix}_{head.name}.npy", mode="w+", dtype=dtype,
                                      shape=(n_images, grid, grid)) for head, dtype in zip(heads, dtypes, strict=True)]
