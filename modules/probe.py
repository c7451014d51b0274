"""Supervised linear probe of frozen features (test_picie.py --linear_probe).

Later unsupervised-segmentation papers report, beside the cluster metrics, how linearly the
learned features separate the ground-truth classes: a 1x1 conv (C -> n_classes, with bias) is
trained on the frozen network's features of the labelled train images, then scored on val.

- Images: the evaluation protocol's input (shorter side to --res, center crop, ImageNet
  normalisation), no augmentation. Features as the network outputs them, not L2-normalised:
  on unit-norm features every logit is bounded by its weight vector's norm, so Adam needs far
  more steps to reach confident predictions; the probe's weights set the scale instead.
- Training: Adam (--probe_lr) for --probe_epochs epochs in batches of --batch_size_test;
  cross-entropy of the logits upsampled bilinearly (align_corners=False) to the label size,
  averaged over the labelled pixels of a batch (unlabelled pixels ignored). Features are
  computed once and reused in later epochs when they fit in --feature_cache_gb (batches then
  come in a new order each epoch); otherwise every epoch recomputes them.
- Scoring: argmax class per pixel on val; pixel accuracy and mIoU over classes (IoU per class,
  nanmean) with no matching, since the probe predicts classes.
Labels needed: COCO-Stuff annotations/train2017 of the (curated) train list; Cityscapes gtFine
of `train`, scored on `val`. A single process (not sharded over DDP ranks).
"""
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data.datasets import EvalImages
from data.source import DataSource
from data.validation import DataError
from modules.evaluation import EvalSettings, eval_features
from modules.metrics import confusion_histogram, segmentation_metrics, thing_stuff_ids
from utils import dist
from utils.loaders import make_loader
from utils.runtime import Runtime

log = logging.getLogger("picie")
# Images per upsampled-logits chunk: bounds the [B, n_classes, res, res] tensors and their graph.
CHUNK = 16


@dataclass(frozen=True)
class ProbeSettings:
    """--probe_epochs, --probe_lr, and the feature cache budget (--feature_cache_gb) in bytes."""

    epochs: int = 5
    lr: float = 1e-3
    cache_bytes: float = 2.0 * 2 ** 30


def probe_datasets(source, res: int, bad_labels: str) -> tuple[EvalImages, EvalImages]:
    """(labelled train images, labelled val images) of the probe; DataError naming what is missing."""
    if source.probe_train_images is None or source.label_lut is None:
        raise DataError(f"--linear_probe: --dataset {source.name} has no labelled train split to fit the probe on "
                        "(COCO-Stuff and Cityscapes have one)")
    images, labels = source.probe_train_images, source.probe_train_labels
    if not images:
        raise DataError(f"--linear_probe: no labelled train images in the {source.name} data "
                        "(Cityscapes: leftImg8bit/train with gtFine/train)")
    missing = [path for path in labels if not path.is_file()]
    if missing:
        raise DataError(f"--linear_probe needs the train split's ground truth: {missing[0]} is missing "
                        f"({len(missing)} of {len(labels)} label maps); add the train annotations")
    val_images = source.probe_val_images if source.probe_val_images is not None else source.val_images
    val_labels = source.probe_val_labels if source.probe_val_labels is not None else source.val_labels
    if not val_images or val_labels is None:
        raise DataError(f"--linear_probe: no labelled val images to score the probe on in the {source.name} data")
    return (EvalImages(images, res, labels, source.label_lut, label_policy=bad_labels),
            EvalImages(val_images, res, val_labels, source.label_lut, label_policy=bad_labels))


def _frozen_features(model, images: torch.Tensor, runtime: Runtime, l2_normalize: bool) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> float32 features [B, C, H/s, W/s] of the frozen network (s = its stride)."""
    with torch.no_grad():
        return eval_features(model, images, runtime, l2_normalize)


def train_probe(model, loader, n_classes: int, runtime: Runtime, l2_normalize: bool, epochs: int, lr: float,
                seed: int, cache_bytes: float) -> tuple[nn.Conv2d, list[float]]:
    """Fit the 1x1 conv on frozen features; returns it and the mean training loss of each epoch."""
    torch.manual_seed(seed)
    probe = None
    optimizer = None
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    cached_bytes, cache_complete = 0, False
    order_generator = torch.Generator().manual_seed(seed)
    losses = []
    model.eval()
    for epoch in range(epochs):
        if cache_complete:
            batches = [cache[i] for i in torch.randperm(len(cache), generator=order_generator).tolist()]
        else:
            loader.sampler.epoch = epoch
            batches = ((_frozen_features(model, b.images, runtime, l2_normalize),
                        b.labels.to(runtime.device, non_blocking=True)) for b in loader)
        total, steps, filling = 0.0, 0, epoch == 0
        for feats, labels in runtime.bar(batches, f"probe epoch {epoch}", total=len(loader)):
            if filling:
                cached_bytes += feats.numel() * feats.element_size() + labels.numel() * labels.element_size()
                if cached_bytes <= cache_bytes:
                    cache.append((feats, labels))
                else:  # over budget: later epochs recompute
                    filling, cache = False, []
            if probe is None:
                probe = nn.Conv2d(feats.shape[1], n_classes, kernel_size=1).to(runtime.device)
                optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
            n_labelled = int((labels >= 0).sum())
            if n_labelled == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            batch_loss = 0.0
            for start in range(0, feats.shape[0], CHUNK):
                chunk = slice(start, start + CHUNK)
                logits = F.interpolate(probe(feats[chunk]), size=labels.shape[-2:], mode="bilinear",
                                       align_corners=False)
                # Sum over the chunk's labelled pixels / the batch's: the batch mean, chunk by chunk.
                loss = F.cross_entropy(logits, labels[chunk].long(), ignore_index=-1, reduction="sum") / n_labelled
                loss.backward()
                batch_loss += loss.item()
            optimizer.step()
            total += batch_loss
            steps += 1
        if epoch == 0:
            cache_complete = filling
        losses.append(total / max(steps, 1))
        log.info("linear probe epoch %d/%d: loss %.4f%s", epoch + 1, epochs, losses[-1],
                 " (features cached)" if cache_complete and epoch == 0 else "")
    if probe is None:
        raise DataError("--linear_probe: the train images gave no batch")
    return probe, losses


def score_probe(model, probe: nn.Conv2d, loader, n_classes: int, runtime: Runtime, l2_normalize: bool) -> torch.Tensor:
    """Confusion histogram hist[class, predicted class] ([n_classes, n_classes]) on the loader's images."""
    hist = torch.zeros((n_classes, n_classes), dtype=torch.int64, device=runtime.device)
    with torch.no_grad():
        for batch in runtime.bar(loader, "probe eval"):
            feats = _frozen_features(model, batch.images, runtime, l2_normalize)
            labels = batch.labels.to(runtime.device, non_blocking=True)
            for start in range(0, feats.shape[0], CHUNK):
                chunk = slice(start, start + CHUNK)
                logits = F.interpolate(probe(feats[chunk]), size=labels.shape[-2:], mode="bilinear",
                                       align_corners=False)
                hist += confusion_histogram(labels[chunk], logits.argmax(1), n_classes, n_classes)
    return dist.all_reduce_sum(hist)


def linear_probe(model, source: DataSource, settings: EvalSettings, probe: ProbeSettings, runtime: Runtime) -> dict:
    """Train the probe on the labelled train images and score it on val. Returns acc, mIoU,
    per_class_iou, mean_class_acc, thing/stuff mIoU (percent) and the probe's settings and losses."""
    train_set, val_set = probe_datasets(source, settings.res, settings.bad_labels)
    l2_normalize = False  # raw features: normalised ones cap every logit at the weight norm (slow to fit)
    train_loader = make_loader(train_set, settings.batch_size_test,
                               dist.EpochSampler(len(train_set), settings.seed, shuffle=True, reshuffle=True),
                               settings.num_workers, runtime.device)
    val_loader = make_loader(val_set, settings.batch_size_test,
                             dist.EpochSampler(len(val_set), settings.seed, shuffle=False),
                             settings.num_workers, runtime.device)
    log.info("linear probe: %d labelled train images, %d val images, %d classes, %d epochs, Adam lr %g",
             len(train_set), len(val_set), source.n_classes, probe.epochs, probe.lr)
    classifier, losses = train_probe(model, train_loader, source.n_classes, runtime, l2_normalize, probe.epochs,
                                     probe.lr, settings.seed, probe.cache_bytes)
    hist = score_probe(model, classifier, val_loader, source.n_classes, runtime, l2_normalize)
    thing_ids, stuff_ids = thing_stuff_ids(source)
    result = segmentation_metrics(hist, source.class_names, thing_ids, stuff_ids, matching="identity")
    result.pop("cluster_to_class")
    result.update(protocol="linear_probe", n_images=len(val_set),
                  probe={"epochs": probe.epochs, "lr": probe.lr, "n_train_images": len(train_set),
                         "n_val_images": len(val_set), "train_loss": losses})
    return result
