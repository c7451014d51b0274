"""The passes of a PiCIE epoch: cluster both views, label every pixel, train, evaluate.

One clustering pass reads and decodes each training image once, forms both views on the
device and feeds both views' features to their own online k-means. Labelling reuses the
features of that pass when they fit in `--feature_cache_gb`, and recomputes them otherwise.
Evaluation forwards each validation image once for all classifiers being scored.
"""
import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.datasets import Batch
from data.transforms import ViewMaker, normalize
from modules.loss import PiCIELoss, centroid_logits
from modules.methods import Head, Objective, PiCIEObjective, picie_heads
from modules.siamese import SiamesePair
from utils import dist
from utils.kmeans import MiniBatchKMeans
from utils.metrics import confusion_histogram

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


@dataclass
class Runtime:
    """Where and how the network runs."""

    device: torch.device
    amp_dtype: Optional[torch.dtype] = None   # None: float32
    channels_last: bool = False
    progress: bool = True                     # tqdm bars (rank 0 only)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def bar(self, iterable, desc: str, total: Optional[int] = None):
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                    disable=not (self.progress and dist.is_main()))


@dataclass
class KMeansSettings:
    n_clusters: int
    n_iter: int = 20
    num_init_batches: int = 20
    num_batches: int = 1
    pixels_per_image: int = 128
    init_all_pixels: bool = False
    backend: str = "auto"


def forward_features(model, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Network features in float32: images [B, 3, H, W] -> [B, C, H/4, W/4]."""
    with runtime.autocast():
        feats = model(runtime.to_device(images) if images.device != runtime.device else images)
    return feats.float()


def make_views(view_maker: ViewMaker, base_images: torch.Tensor, params, runtime: Runtime,
               cache_dtype: Optional[torch.dtype] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network inputs of both views, [B, 3, res1, res1] each, on the device."""
    view1, view2 = view_maker.views(base_images.to(runtime.device, non_blocking=True), params)
    if cache_dtype is not None:
        view1, view2 = view1.to(cache_dtype), view2.to(cache_dtype)
    if runtime.channels_last:
        view1 = view1.contiguous(memory_format=torch.channels_last)
        view2 = view2.contiguous(memory_format=torch.channels_last)
    return view1, view2


def as_pair(model) -> torch.nn.Module:
    """The model as a Siamese pair (a SiamesePair, or DDP around one, is returned as is)."""
    if isinstance(model, SiamesePair) or isinstance(getattr(model, "module", None), SiamesePair):
        return model
    return SiamesePair(model)


def features_of_views(model, view_maker: ViewMaker, view1: torch.Tensor, view2: torch.Tensor, params,
                      runtime: Runtime, l2_normalize: bool, n_views: int = 2) -> Tuple[torch.Tensor, ...]:
    """z1 = f(view1) = f(G(P1 x)) and z2 = G(f(view2)) = G(f(P2 x)), each [B, C, h, w], pixel-aligned.

    `model` is the network, a SiamesePair, or DDP around a SiamesePair (training on several ranks).
    n_views=1 (MDC) forwards view 1 only and returns (z1,).
    """
    with runtime.autocast():
        feats = list(as_pair(model)(view1, view2 if n_views > 1 else None))
    feats = [f.float() for f in feats]
    if n_views > 1:
        feats[1] = view_maker.geometric_on_features(feats[1], params)
    if l2_normalize:
        feats = [F.normalize(f, dim=1) for f in feats]
    return tuple(feats)


def embed_views(model, view_maker: ViewMaker, base_images: torch.Tensor, params, runtime: Runtime,
                l2_normalize: bool, n_views: int = 2) -> Tuple[torch.Tensor, ...]:
    """The views' features straight from base images (uint8 [B, 3, res2, res2])."""
    view1, view2 = make_views(view_maker, base_images, params, runtime, runtime.amp_dtype)
    return features_of_views(model, view_maker, view1, view2, params, runtime, l2_normalize, n_views)


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
        self.init_points: List[torch.Tensor] = []
        self.init_indices: List[torch.Tensor] = []  # image index of every initial point (for a canonical order)
        self.init_pixels = 0
        self.pending: List[torch.Tensor] = []
        self.n_batches = 0
        self.initialized = False
        self.peak_bytes = 0  # largest k-means-owned feature memory held at once (init sample or update group)

    def _sample(self, feats: torch.Tensor, indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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

    def add(self, feats: torch.Tensor, indices: Optional[torch.Tensor] = None) -> None:
        """feats [B, C, h, w] of one batch (already normalised if the metric is cosine) and the
        images' dataset indices [B] (used to order the initial sample; default 0..B-1)."""
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


def feed_pass(feeds: Sequence[OnlineKMeansFeed], loader, batch_features: Callable, desc: str,
              runtime: "Runtime") -> None:
    """Run one pass of `loader`, feeding `batch_features(batch) -> [feats per feed]` to the feeds;
    batches with no readable image, and batches this rank lacks, are fed as empty."""
    n_local = 0
    for batch in runtime.bar(loader, desc):
        n_local += 1
        if batch.indices.numel() == 0:
            for feed in feeds:
                feed.add_empty()
            continue
        for feed, feats in zip(feeds, batch_features(batch)):
            feed.add(feats, batch.indices)
    for _ in range(dist.max_over_ranks(n_local) - n_local):
        for feed in feeds:
            feed.add_empty()


class PassCache:
    """What the clustering pass of an epoch computed, kept while it fits in `budget_bytes`:
    per batch the image indices, both views' network inputs (reused by the training pass,
    whose views are identical by construction) and both views' features (reused to label).
    Once over budget it is emptied and the later passes recompute instead."""

    def __init__(self, budget_bytes: float, channels_last: bool = False):
        self.budget = budget_bytes
        self.channels_last = channels_last  # hand views back in the layout make_views gives them
        self.batches: List[Tuple[torch.Tensor, Tuple[torch.Tensor, ...], Tuple[torch.Tensor, ...]]] = []
        self.views_of: Dict[int, Tuple[int, int]] = {}  # image index -> (batch number, row)
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

    def views(self, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cached inputs of both views for `indices`: [B, 3, res1, res1] each."""
        picks = [self.views_of[i] for i in indices]
        view1 = torch.stack([self.batches[b][1][0][r] for b, r in picks])
        view2 = torch.stack([self.batches[b][1][1][r] for b, r in picks])
        if self.channels_last:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        return view1, view2

    def drop_features(self) -> None:
        self.batches = [(indices, views, ()) for indices, views, _ in self.batches]


@dataclass
class EpochClusters:
    """Result of the clustering and labelling passes of one epoch; one entry per head
    (PiCIE: view 1, view 2; see modules/methods.py)."""

    centroids: List[torch.Tensor]          # per head [K, C]
    counts: List[torch.Tensor]             # per head, pixels per cluster [K]
    labels: List[np.ndarray]               # per head, [N, h, w] uint8/uint16 (-> LabelStore)
    kmeans_loss: List[float]
    reused_features: bool = False
    stats: Dict[str, float] = field(default_factory=dict)
    cache: Optional[PassCache] = None
    labelled: Optional[np.ndarray] = None  # bool [N]: labelled this epoch (False: unreadable, not trained on)


def cluster_and_label(model, loader, view_maker: ViewMaker, epoch: int, settings: KMeansSettings,
                      runtime: Runtime, label_arrays: Sequence[np.ndarray], seed: int, l2_normalize: bool,
                      feature_cache_bytes: float, timer: Optional[Callable[[str], None]] = None,
                      heads: Optional[Sequence[Head]] = None) -> EpochClusters:
    """Steps 1-2 of an epoch: online k-means of every head in one pass, then label every pixel.

    heads: the clusterings, (view, K) each (default: PiCIE's, one per view with settings.n_clusters);
    label_arrays: one array [N, h, w] per head, filled in place with the pseudo-labels.
    """
    heads = tuple(heads) if heads is not None else picie_heads(settings.n_clusters)
    n_views = max(head.view for head in heads) + 1
    kmeans_feeds = [OnlineKMeansFeed(MiniBatchKMeans(head.n_clusters, settings.n_iter,
                                                     seed=head.kmeans_seed(seed, epoch), backend=settings.backend,
                                                     device=runtime.device),
                                     replace(settings, n_clusters=head.n_clusters),
                                     seed=head.kmeans_seed(seed, epoch), dim=model.feat_dim) for head in heads]
    cache = PassCache(feature_cache_bytes, channels_last=runtime.channels_last)
    model.eval()  # BatchNorm statistics stay fixed while clustering (the original drifted them)

    def both_views(batch):
        params = view_maker.params(epoch, batch.indices.tolist(), runtime.device)
        views = make_views(view_maker, batch.images, params, runtime, runtime.amp_dtype)
        feats = features_of_views(model, view_maker, *views, params, runtime, l2_normalize, n_views)
        cache.add(batch.indices, views, feats)
        return [feats[head.view] for head in heads]

    with torch.inference_mode():
        feed_pass(kmeans_feeds, loader, both_views, f"epoch {epoch} cluster", runtime)
        kmeans = [feed.finish() for feed in kmeans_feeds]
        if timer:
            timer("kmeans")

        # Step 2: pseudo-labels of every pixel with the final centroids.
        counts = [torch.zeros(head.n_clusters, dtype=torch.float64, device=runtime.device) for head in heads]
        # Images unreadable in this pass get no labels this epoch, so training must skip them too
        # (their rows hold an earlier epoch's labels, or zeros).
        labelled = np.zeros(len(label_arrays[0]), dtype=bool)

        def label_batch(indices: torch.Tensor, feats: Sequence[torch.Tensor]) -> None:
            rows = indices.numpy()
            labelled[rows] = True
            for index, (head, km) in enumerate(zip(heads, kmeans)):
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
                label_batch(batch.indices, embed_views(model, view_maker, batch.images, params, runtime, l2_normalize,
                                                       n_views))
        counts = [dist.all_reduce_sum(c) for c in counts]
        if timer:
            timer("label")
    # Clones made outside inference mode: training takes gradients through products with them.
    return EpochClusters(centroids=[km.centroids.clone() for km in kmeans], counts=[c.clone() for c in counts], labels=list(label_arrays),
                         kmeans_loss=[km.loss for km in kmeans], reused_features=cache.complete, cache=cache,
                         labelled=labelled,
                         stats={"kmeans_reseeded": float(sum(km.reseeded for km in kmeans)),
                                "kmeans_peak_mb": sum(feed.peak_bytes for feed in kmeans_feeds) / 2 ** 20,
                                "centroid_rank_diff": max(dist.max_diff_from_rank0(km.centroids) for km in kmeans)})


def _training_batches(loader, cache: Optional[PassCache], labelled: Optional[np.ndarray] = None):
    """The loader's batches; when every view of the epoch is cached, only the index batches
    (same order and sizes as the loader's), so no image is decoded again. Images not labelled
    this epoch (unreadable in the clustering pass) are not cached and need no views."""
    sampler = loader.sampler
    if cache is None or not cache.complete or not hasattr(sampler, "indices"):
        yield from loader
        return
    order = sampler.indices()
    if not cache.has_views([i for i in order if labelled is None or labelled[i]]):
        yield from loader
        return
    for start in range(0, len(order), loader.batch_size):
        chunk = order[start: start + loader.batch_size]
        yield Batch(torch.tensor(chunk, dtype=torch.long), None)


def train_one_epoch(model, loss_fn: Objective, optimizer, loader, view_maker: ViewMaker, epoch: int,
                    clusters: EpochClusters, runtime: Runtime, l2_normalize: bool, balance: bool = True,
                    skip_nonfinite: bool = False, should_stop: Callable[[], bool] = lambda: False) -> Dict[str, float]:
    """Step 3 of an epoch: train the network against every head's pseudo-labels.

    loss_fn: the method's objective (modules/methods.py; a plain PiCIELoss means PiCIE).
    Returns averages over steps: loss, its parts (PiCIE: loss_within, loss_cross, + loss_aux for
    PiCIE+H; MDC: loss_ce), and counts of steps, skipped non-finite steps and unreadable images.
    """
    model.train()
    objective = PiCIEObjective(clusters.centroids[0].shape[0]) if isinstance(loss_fn, PiCIELoss) else loss_fn
    objective.start_epoch(clusters.centroids, clusters.counts, balance, runtime.device)
    sums: Dict[str, float] = {"loss": 0.0}  # the parts' keys are added by the first step
    n_steps = n_nonfinite = n_bad_images = 0
    for batch in runtime.bar(_training_batches(loader, clusters.cache, clusters.labelled), f"epoch {epoch} train",
                             total=len(loader)):
        n_bad_images += batch.n_skipped
        if clusters.labelled is not None and batch.indices.numel() > 0:
            keep = torch.from_numpy(clusters.labelled[batch.indices.numpy()])
            if not bool(keep.all()):  # unreadable in the clustering pass: no labels this epoch
                n_bad_images += int((~keep).sum())
                batch = Batch(batch.indices[keep], None if batch.images is None else
                              batch.images[keep.to(batch.images.device)], None, batch.n_skipped)
        if dist.any_over_ranks(batch.indices.numel() == 0):
            continue  # every rank skips together: DDP ranks must run the same steps
        # Views with the same parameters as in the clustering pass of this epoch (reused if cached).
        indices = batch.indices.tolist()
        params = view_maker.params(epoch, indices, runtime.device)
        if clusters.cache is not None and clusters.cache.has_views(indices):
            views = clusters.cache.views(indices)
        else:
            views = make_views(view_maker, batch.images, params, runtime, runtime.amp_dtype)
        feats = features_of_views(model, view_maker, *views, params, runtime, l2_normalize, objective.n_views)
        rows = batch.indices.numpy()
        labels = [torch.from_numpy(head_labels[rows].astype(np.int64)).to(runtime.device)
                  for head_labels in clusters.labels]
        loss, parts = objective(feats, labels)
        optimizer.zero_grad(set_to_none=True)
        objective.zero_grad()
        if dist.any_over_ranks(not torch.isfinite(loss)):
            if not skip_nonfinite:
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) in epoch {epoch + 1}, training step "
                                         f"{n_steps + n_nonfinite + 1} of {len(loader)}")
            n_nonfinite += 1
            if dist.is_distributed():
                (loss.nan_to_num() * 0).backward()  # DDP needs the backward its forward prepared
            optimizer.zero_grad(set_to_none=True)
            objective.zero_grad()
            continue
        loss.backward()
        optimizer.step()
        objective.step()
        n_steps += 1
        for key, value in (("loss", loss), *((f"loss_{name}", part) for name, part in parts.items())):
            sums[key] = sums.get(key, 0.0) + value.item()
        if dist.any_over_ranks(should_stop()):  # all DDP ranks stop after the same step
            break
    averages = {k: v / max(n_steps, 1) for k, v in sums.items()}
    averages.update(n_steps=n_steps, n_nonfinite_steps=n_nonfinite, n_bad_images=n_bad_images)
    return averages


def evaluate(model, loader, classifiers: Sequence[Tuple[torch.Tensor, Optional[torch.Tensor]]], n_classes: int,
             runtime: Runtime, l2_normalize: bool, desc: str = "eval") -> List[torch.Tensor]:
    """Confusion histograms hist[class, cluster] ([n_classes, K]) of each classifier.

    Protocol: features of the center crop, L2-normalised (cosine), logits = <feat, centroid> +
    bias, upsampled bilinearly (align_corners=False) to the label size, argmax per pixel.
    """
    model.eval()
    hists = [torch.zeros((n_classes, w.shape[0]), dtype=torch.int64, device=runtime.device) for w, _ in classifiers]
    with torch.inference_mode():
        for batch in runtime.bar(loader, desc):
            images = normalize(batch.images.to(runtime.device, non_blocking=True).float().div_(255))
            feats = forward_features(model, runtime.to_device(images), runtime)
            if l2_normalize:
                feats = F.normalize(feats, dim=1)
            labels = batch.labels.to(runtime.device, non_blocking=True)
            # Chunks of 16 images bound the memory of the upsampled [B, K, res, res] logits.
            for start in range(0, feats.shape[0], 16):
                chunk = slice(start, start + 16)
                for hist, (weight, bias) in zip(hists, classifiers):
                    logits = centroid_logits(feats[chunk], weight.to(runtime.device),
                                             None if bias is None else bias.to(runtime.device))
                    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
                    hist += confusion_histogram(labels[chunk], logits.argmax(1), n_classes, weight.shape[0])
    return [dist.all_reduce_sum(h) for h in hists]


def fresh_kmeans(model, loader, settings: KMeansSettings, runtime: Runtime, seeds: Sequence[int],
                 l2_normalize: bool, desc: str = "fresh k-means") -> List[torch.Tensor]:
    """Final-evaluation clustering: one pass over un-augmented images feeding one online
    k-means per seed (the `--repeats`); returns their centroids [K, C]."""
    feeds = [OnlineKMeansFeed(MiniBatchKMeans(settings.n_clusters, settings.n_iter, seed=seed,
                                              backend=settings.backend, device=runtime.device), settings, seed=seed,
                              dim=model.feat_dim)
             for seed in seeds]
    model.eval()

    def plain_features(batch):
        images = normalize(batch.images.to(runtime.device, non_blocking=True).float().div_(255))
        feats = forward_features(model, runtime.to_device(images), runtime)
        feats = F.normalize(feats, dim=1) if l2_normalize else feats
        return [feats] * len(feeds)

    with torch.inference_mode():
        feed_pass(feeds, loader, plain_features, desc, runtime)
    return [feed.finish().centroids for feed in feeds]


def calibrate_batchnorm(model, loader, view_maker: ViewMaker, runtime: Runtime, n_batches: int) -> int:
    """Set BatchNorm running statistics to the average over `n_batches` batches of un-augmented
    training images (resized to res1). A randomly initialised network carries the default
    statistics (mean 0, var 1), which are wrong for every layer; since clustering runs the
    network in eval mode (fixing the original's train-mode pass), it needs real statistics.
    Returns the number of images used."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or n_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    n_images = 0
    with torch.no_grad():
        for step, batch in enumerate(loader):
            if step >= n_batches:
                break
            if batch.indices.numel() == 0:
                continue
            images = view_maker.plain_view(batch.images.to(runtime.device, non_blocking=True))
            forward_features(model, runtime.to_device(images), runtime)
            n_images += batch.indices.numel()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return n_images


def label_dtype(n_clusters: int):
    return np.uint8 if n_clusters <= 256 else np.uint16


def allocate_labels(n_images: int, grid: int, n_clusters: int, path_prefix: Optional[str] = None,
                    memmap_above_bytes: float = 2 ** 31, heads: Optional[Sequence[Head]] = None) -> List[np.ndarray]:
    """One pseudo-label array [N, grid, grid] per head (default: PiCIE's two views): in memory, or
    memory-mapped files in the run folder (path_prefix + '_<head name>.npy', e.g. '_view1.npy')
    when one would exceed `memmap_above_bytes`."""
    heads = tuple(heads) if heads is not None else picie_heads(n_clusters)
    dtypes = [label_dtype(head.n_clusters) for head in heads]
    size = max(n_images * grid * grid * np.dtype(dtype).itemsize for dtype in dtypes)
    if path_prefix is None or size <= memmap_above_bytes:
        return [np.zeros((n_images, grid, grid), dtype=dtype) for dtype in dtypes]
    return [np.lib.format.open_memmap(f"{path_prefix}_{head.name}.npy", mode="w+", dtype=dtype,
                                      shape=(n_images, grid, grid)) for head, dtype in zip(heads, dtypes)]


def num_batches(n_items: int, batch_size: int) -> int:
    return math.ceil(n_items / batch_size)
