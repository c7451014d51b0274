"""Evaluation: the confusion histograms of classifiers on labelled images, and the paper's final
protocol (fresh k-means on the train images). The metrics of a histogram: modules/metrics.py.

Protocol of every PiCIE table: features of the center crop, L2-normalised (cosine metric),
logits = <feature, centroid> + bias, upsampled bilinearly (align_corners=False) to the label
size, argmax per pixel; a histogram hist[class, cluster] over labelled pixels; the Hungarian
matching, pixel accuracy and mIoU of modules/metrics.py.

Options of current papers, reported beside the plain protocol (never instead of it), as
"variants" of one pass: "flip" averages the logits of each image and of its horizontal mirror
image (mirrored back), "crf" refines the upsampled logits with a dense CRF (modules/crf.py),
"flip_crf" both.
"""
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from data.build import cluster_dataset, val_dataset
from data.datasets import EvalImages
from data.source import DataSource
from data.transforms import normalize
from modules.crf import CRFSettings, crf_refine, require_crf
from modules.kmeans import KMeansSettings, MiniBatchKMeans, OnlineKMeansFeed, require_points
from modules.loss import centroid_logits
from modules.metrics import confusion_histogram, metrics_from_hist, summarize_repeats, thing_stuff_ids
from modules.networks import forward_features
from utils import dist
from utils.checkpoint import classifier_entry
from utils.loaders import PassLoader, feed_pass, make_loader
from utils.runtime import Runtime, select_amp_dtype

PROTOCOL_RES = 320  # the evaluation size of every PiCIE table


@dataclass(frozen=True)
class EvalSettings:
    """How a network is scored: evaluation crop --res, cosine (L2-normalised) features or not,
    the fresh k-means of the final protocol (K_test clusters, --repeats seeds from --seed),
    batch sizes, loader workers, the label-map policy, the evaluated COCO-Stuff classes and the
    autocast precision of the forward passes (--eval_precision). Built from the flags by
    config/from_args.py: eval_settings; the defaults are the flags' (config/flags.py)."""

    res: int                           # --res, else the protocol's PROTOCOL_RES
    l2_normalize: bool
    n_clusters: int                    # K_test: clusters of the fresh k-means and of the matching
    kmeans: KMeansSettings
    repeats: int
    seed: int
    batch_size_test: int
    batch_size_cluster: int
    num_workers: int
    bad_labels: str
    stuff: bool
    thing: bool
    precision: str
    flip: bool                         # also score the flip-averaged logits (--flip)
    crf: bool                          # also score the CRF-refined logits (--crf)


def evaluation_runtime(runtime: Runtime, settings: EvalSettings) -> Runtime:
    """The runtime of evaluation: the training runtime's device with the evaluation's own precision
    (--eval_precision, float32 by default: bf16 moved the original's accuracy by 0.06 points)."""
    return replace(runtime, amp_dtype=select_amp_dtype(settings.precision, runtime.device, deterministic=False))


def evaluation_record(settings: EvalSettings, source: DataSource, matching: str = "hungarian") -> dict:
    """How a score was obtained, written beside it in every JSON: size, crop, precision, matching, split."""
    return {"res": settings.res, "crop": f"shorter side to {settings.res}, center {settings.res}x{settings.res}",
            "precision": settings.precision, "matching": matching,
            "metric": "cosine" if settings.l2_normalize else "euclidean", "split": source.eval_split,
            **({"label_set": source.label_set} if source.label_set else {}),
            "n_images": len(source.val_images), "n_classes": source.n_classes}


def eval_features(model, images: torch.Tensor, runtime: Runtime, l2_normalize: bool) -> torch.Tensor:
    """The evaluation feature path, shared by every evaluation: uint8 images [B, 3, H, W] ->
    ImageNet-normalised input -> network features [B, C, H/s, W/s] float32 (s = model.stride),
    L2-normalised per pixel when l2_normalize (cosine metric). No gradient is needed: call under
    inference_mode.

    A side that is not a multiple of s is first resized (bilinear, antialiased) to the largest
    multiple of s below it: a ViT accepts only whole patches, and every caller upsamples the logits
    to the label size, so the predictions still cover every labelled pixel."""
    inputs = images.to(runtime.device, non_blocking=True).float().div_(255)
    stride = getattr(model, "stride", 1)  # a network without a declared stride takes any size
    height, width = inputs.shape[-2:]
    if height % stride or width % stride:
        size = (max(stride, height // stride * stride), max(stride, width // stride * stride))
        inputs = F.interpolate(inputs, size=size, mode="bilinear", align_corners=False, antialias=True)
    feats = forward_features(model, runtime.to_device(normalize(inputs)), runtime)
    return F.normalize(feats, dim=1) if l2_normalize else feats


def upsampled_logits(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     size: tuple[int, int]) -> torch.Tensor:
    """Frozen-classifier logits upsampled to the label size: feats [B, C, h, w], weight [K, C],
    bias [K] or None -> [B, K, *size] (bilinear, align_corners=False, as the protocol)."""
    logits = centroid_logits(feats, weight.to(feats.device), None if bias is None else bias.to(feats.device))
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def flip_averaged_features(model, images: torch.Tensor, runtime: Runtime, l2_normalize: bool,
                           feats: torch.Tensor | None = None) -> torch.Tensor:
    """--flip: the mean of the features of uint8 images [B, 3, H, W] and of their horizontal mirror
    images, mirrored back -> [B, C, H/s, W/s] (s = model.stride: 4 for the FPN, the patch size for
    a ViT). The classifiers are linear in the features, so the logits of this mean are the mean of
    the two passes' logits. W must be a multiple of s for the mirrored feature grid to line up
    with the image's. `feats`: the plain pass's eval_features when the caller has them already."""
    feats = eval_features(model, images, runtime, l2_normalize) if feats is None else feats
    mirrored = eval_features(model, images.flip(-1), runtime, l2_normalize).flip(-1)
    return (feats + mirrored) / 2


VARIANTS = ("plain", "flip", "crf", "flip_crf")


def eval_variants(flip: bool, crf: bool) -> tuple[str, ...]:
    """The variants one evaluation pass scores: plain always, flip / crf / flip_crf as asked."""
    wanted = {"plain": True, "flip": flip, "crf": crf, "flip_crf": flip and crf}
    return tuple(v for v in VARIANTS if wanted[v])


class _Clock:
    """Seconds between laps; with `sync` the GPU is synchronised first, so that its work is
    counted in the stage that queued it (only when the variants are compared: syncs cost time)."""

    def __init__(self, device: torch.device, sync: bool):
        self.device, self.sync = device, sync
        self.last = time.perf_counter()

    def lap(self) -> float:
        if self.sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


def evaluate_variants(model, loader, classifiers: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                      n_classes: int, runtime: Runtime, l2_normalize: bool, variants: Sequence[str] = ("plain",),
                      crf: CRFSettings = CRFSettings(), desc: str = "eval"
                      ) -> tuple[dict[str, list[torch.Tensor]], dict[str, float]]:
    """Confusion histograms hist[class, cluster] ([n_classes, K]) of each classifier (weight [K, C],
    bias [K] or None) under each variant of `variants` (see VARIANTS), from one pass over the
    loader's labelled images: {variant: [hist per classifier]}, and the seconds per image each
    variant costs one classifier (network passes and CRF; loading and histograms not counted)."""
    if any(v.endswith("crf") for v in variants):
        require_crf()
    model.eval()
    hists = {v: [torch.zeros((n_classes, w.shape[0]), dtype=torch.int64, device=runtime.device)
                 for w, _ in classifiers] for v in variants}
    spent = dict.fromkeys(("plain", "flip", "crf", "flip_crf"), 0.0)
    n_images = 0
    with torch.inference_mode():
        for batch in runtime.bar(loader, desc):
            clock = _Clock(runtime.device, sync=len(variants) > 1)
            feats = {"plain": eval_features(model, batch.images, runtime, l2_normalize)}
            spent["plain"] += clock.lap()
            if "flip" in variants or "flip_crf" in variants:
                feats["flip"] = flip_averaged_features(model, batch.images, runtime, l2_normalize, feats["plain"])
                spent["flip"] += clock.lap()
            labels = batch.labels.to(runtime.device, non_blocking=True)
            n_images += labels.shape[0]
            # Chunks of 16 images bound the memory of the upsampled [B, K, res, res] logits.
            for start in range(0, labels.shape[0], 16):
                chunk = slice(start, start + 16)
                for i, (weight, bias) in enumerate(classifiers):
                    for base, base_feats in feats.items():
                        logits = upsampled_logits(base_feats[chunk], weight, bias, labels.shape[-2:])
                        if base in hists:
                            hists[base][i] += confusion_histogram(labels[chunk], logits.argmax(1), n_classes,
                                                                  weight.shape[0])
                        refined = "crf" if base == "plain" else "flip_crf"
                        if refined in hists:
                            clock.lap()
                            preds = torch.stack([crf_refine(image_logits, image, crf).argmax(0) for image_logits, image
                                                 in zip(logits, batch.images[chunk], strict=True)])
                            spent[refined] += clock.lap() / len(classifiers)
                            hists[refined][i] += confusion_histogram(labels[chunk], preds.to(runtime.device),
                                                                     n_classes, weight.shape[0])
    # A variant costs its own stage and the stages it builds on.
    cost = {"plain": spent["plain"], "flip": spent["plain"] + spent["flip"],
            "crf": spent["plain"] + spent["crf"], "flip_crf": spent["plain"] + spent["flip"] + spent["flip_crf"]}
    seconds = {v: cost[v] / max(n_images, 1) for v in variants}
    return {v: [dist.all_reduce_sum(h) for h in hs] for v, hs in hists.items()}, seconds


def evaluate(model, loader, classifiers: Sequence[tuple[torch.Tensor, torch.Tensor | None]], n_classes: int,
             runtime: Runtime, l2_normalize: bool, desc: str = "eval") -> list[torch.Tensor]:
    """Confusion histograms hist[class, cluster] ([n_classes, K]) of each classifier (weight [K, C],
    bias [K] or None), from one pass over the loader's labelled images (the plain protocol)."""
    hists, _ = evaluate_variants(model, loader, classifiers, n_classes, runtime, l2_normalize, ("plain",), desc=desc)
    return hists["plain"]


def cluster_ids(model, images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, runtime: Runtime,
                l2_normalize: bool) -> torch.Tensor:
    """Cluster id per pixel [B, H, W] (CPU, int64) of uint8 images [B, 3, H, W], as `evaluate` assigns them."""
    model.eval()
    with torch.inference_mode():
        feats = eval_features(model, images, runtime, l2_normalize)
        return upsampled_logits(feats, weight, bias, images.shape[-2:]).argmax(1).cpu()


def fresh_kmeans(model, loader, n_clusters: int, settings: KMeansSettings, runtime: Runtime, seeds: Sequence[int],
                 l2_normalize: bool, desc: str = "fresh k-means") -> list[torch.Tensor]:
    """Final-evaluation clustering: one pass over un-augmented images feeding one online
    k-means with n_clusters per seed (the `--repeats`); returns their centroids [K, C]."""
    feeds = [OnlineKMeansFeed(MiniBatchKMeans(n_clusters, settings.n_iter, seed=seed,
                                              backend=settings.backend, device=runtime.device), settings, seed=seed,
                              dim=model.feat_dim)
             for seed in seeds]
    model.eval()

    def plain_features(batch):
        return [eval_features(model, batch.images, runtime, l2_normalize)] * len(feeds)

    with torch.inference_mode():
        feed_pass(feeds, loader, plain_features, desc, runtime)
    return [feed.finish().centroids for feed in feeds]


def val_loader(source: DataSource, settings: EvalSettings, runtime: Runtime) -> PassLoader:
    """The labelled evaluation images of `source` at the evaluation crop, in file order."""
    dataset = val_dataset(source, settings.res, settings.bad_labels)
    sampler = dist.EpochSampler(len(dataset), settings.seed, shuffle=False)
    return make_loader(dataset, settings.batch_size_test, sampler, settings.num_workers, runtime.device)


def score_classifiers(model, loader, classifiers: dict[str, dict[str, torch.Tensor]], source: DataSource,
                      settings: EvalSettings, runtime: Runtime, desc: str) -> dict[str, dict]:
    """Metrics of each named classifier {"weight" [K, C], "bias" [K]} from one pass over val; with
    --flip / --crf also the metrics of each variant under its name ("flip", "crf", "flip_crf")
    and the seconds per image of every variant ("seconds_per_image")."""
    names = list(classifiers)
    variants = eval_variants(settings.flip, settings.crf)
    hists, seconds = evaluate_variants(model, loader, [(classifiers[n]["weight"], classifiers[n].get("bias"))
                                                       for n in names],
                                       source.n_classes, runtime, settings.l2_normalize, variants, desc=desc)
    thing_ids, stuff_ids = thing_stuff_ids(source)
    scored = {}
    for i, name in enumerate(names):
        scored[name] = metrics_from_hist(hists["plain"][i], source.class_names, thing_ids, stuff_ids)
        for variant in variants[1:]:
            scored[name][variant] = metrics_from_hist(hists[variant][i], source.class_names, thing_ids, stuff_ids)
        if len(variants) > 1:
            scored[name]["seconds_per_image"] = seconds
    return scored


def _repeat_summary(results: list[dict]) -> dict:
    """summarize_repeats, with the many-to-one (majority) scores summarised beside it when present."""
    summary = summarize_repeats(results)
    if results and all("majority" in r for r in results):
        summary["majority"] = dict(summarize_repeats([r["majority"] for r in results]), matching="majority")
    return summary


def check_fresh_kmeans(source: DataSource, settings: EvalSettings, stride: int) -> None:
    """Before any work: the protocol's fresh k-means (K_test clusters over every feature cell of the
    un-augmented cluster images at settings.res; `stride` input pixels per cell) has at least K_test
    feature vectors, else one line naming --K_test, the vectors and the largest K that fits."""
    side = max(1, settings.res // stride)
    n_images = len(source.cluster_images)
    require_points(n_images * side ** 2, settings.n_clusters, "--K_test",
                   f"the {n_images} images of the fresh k-means at --res {settings.res} ({side}x{side} feature "
                   "cells each)")


def fresh_cluster_evaluation(model, source: DataSource, settings: EvalSettings, runtime: Runtime,
                             val_loader_: PassLoader, desc: str = "final", repeats: int | None = None) -> dict:
    """The paper's final protocol: k-means with K_test clusters on the un-augmented train images,
    `repeats` times (default `--repeats`; seeds seed, seed+1, ...), each scored on val; mean +- std."""
    dataset = cluster_dataset(source, settings.res)
    sampler = dist.EpochSampler(len(dataset), settings.seed, epoch=10 ** 6, shuffle=True)
    loader = make_loader(dataset, settings.batch_size_cluster, sampler, settings.num_workers, runtime.device)
    seeds = [settings.seed + r for r in range(max(settings.repeats if repeats is None else repeats, 1))]
    centroids = fresh_kmeans(model, loader, settings.n_clusters, settings.kmeans, runtime, seeds, settings.l2_normalize,
                             desc=f"{desc} k-means")
    classifiers = {f"repeat{r}": classifier_entry(c) for r, c in enumerate(centroids)}
    per_repeat = score_classifiers(model, val_loader_, classifiers, source, settings, runtime, desc=f"{desc} eval")
    results = [per_repeat[f"repeat{r}"] for r in range(len(seeds))]
    summary = _repeat_summary(results)
    for variant in eval_variants(settings.flip, settings.crf)[1:]:
        summary[variant] = _repeat_summary([r[variant] for r in results])
    if "seconds_per_image" in results[0]:
        summary["seconds_per_image"] = results[0]["seconds_per_image"]
    # Per-class IoU averaged over repeats (classes with no value in a repeat are skipped).
    per_class = {}
    for name in source.class_names:
        values = [r["per_class_iou"].get(name) for r in results if r["per_class_iou"].get(name) is not None]
        per_class[name] = float(np.mean(values)) if values else None
    summary.update(per_class_iou=per_class, runs=results, seeds=seeds, K=settings.n_clusters)
    return summary


def example_images(source: DataSource, settings: EvalSettings, n_images: int = 4
                   ) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """The images the TensorBoard example maps show (utils/tb.py: ExampleMaps): uint8 [N, 3, res, res]
    of the first val images and their class ids [N, res, res] (-1 unlabelled), or without labels
    the first training images and None; (None, None) when there is no image."""
    if source.has_labels:
        dataset = val_dataset(source, settings.res, settings.bad_labels)
    else:
        dataset = EvalImages(source.train_images, settings.res)
    items = [dataset[i] for i in range(min(n_images, len(dataset)))]
    if not items:
        return None, None
    images = torch.stack([image for _, image, _ in items])
    labels = np.stack([label.numpy().astype(np.int64) for _, _, label in items]) if source.has_labels else None
    return images, labels
