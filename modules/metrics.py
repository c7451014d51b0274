"""The metrics of every PiCIE table, from a confusion histogram hist[class, cluster].

A histogram hist[class, cluster] counts labelled pixels (labels outside 0..n_classes-1 are
ignored); a one-to-one (Hungarian) matching of clusters to classes maximises matched pixels;
pixel accuracy = matched / labelled; IoU per class after the matching, averaged with nanmean
(a class with no pixels and no prediction is skipped). Thing / stuff mIoU average the IoU of
ground-truth classes 0-11 / 12-26 after matching (0-79 / 80-170 on COCO-Stuff-171; the original
printed them in cluster order, which was meaningless). With more clusters than classes the
many-to-one (majority) matching is reported beside it. How the histograms are made:
modules/evaluation.py.
"""
from collections.abc import Sequence

import numpy as np
import torch

from data.source import DataSource


def confusion_histogram(labels: torch.Tensor, preds: torch.Tensor, n_classes: int,
                        n_clusters: int | None = None) -> torch.Tensor:
    """hist[class, cluster] (int64 [n_classes, n_clusters]) from labels and predictions of any
    matching shape; pixels whose label is outside 0..n_classes-1 are ignored."""
    n_clusters = n_clusters or n_classes
    labels = labels.reshape(-1).long()
    preds = preds.reshape(-1).long()
    keep = (labels >= 0) & (labels < n_classes) & (preds >= 0) & (preds < n_clusters)
    flat = labels[keep] * n_clusters + preds[keep]
    return torch.bincount(flat, minlength=n_classes * n_clusters).reshape(n_classes, n_clusters)


def hungarian_match(hist: np.ndarray) -> np.ndarray:
    """One-to-one matching maximising matched pixels: cluster_of_class [n_classes] (-1 unmatched)."""
    # Imported here: scipy.optimize takes ~0.5 s to import, paid by every command that never matches.
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415

    rows, cols = linear_sum_assignment(np.asarray(hist, dtype=np.float64), maximize=True)
    cluster_of_class = np.full(hist.shape[0], -1, dtype=np.int64)
    cluster_of_class[rows] = cols
    return cluster_of_class


def _iou_and_acc(hist: np.ndarray, class_of_cluster: np.ndarray) -> tuple:
    """Per-class IoU and pixel accuracy once every cluster is mapped to a class (-1 = none)."""
    n_classes = hist.shape[0]
    # merged[c, c'] = pixels of class c predicted as (clusters mapped to) class c'
    merged = np.zeros((n_classes, n_classes), dtype=np.float64)
    for cluster, cls in enumerate(class_of_cluster):
        if cls >= 0:
            merged[:, cls] += hist[:, cluster]
    tp = np.diag(merged)
    fp = merged.sum(0) - tp
    fn = hist.sum(1) - tp  # pixels of the class not predicted as it (incl. unmapped clusters)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (tp + fp + fn)
        class_acc = tp / hist.sum(1)
    total = hist.sum()
    acc = tp.sum() / total if total > 0 else float("nan")
    return iou, class_acc, acc


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def segmentation_metrics(hist, class_names: Sequence[str], thing_classes: Sequence[int] = (),
                         stuff_classes: Sequence[int] = (), matching: str = "hungarian") -> dict:
    """Metrics in percent from hist[class, cluster].

    matching="hungarian": one-to-one (needs n_clusters >= n_classes for every class to get a
    cluster); "majority": many-to-one, every cluster votes for the class it overlaps most
    (for over-clustering, K_train > number of classes); "identity": prediction k is class k
    (linear probe).
    Returns acc, mIoU, per_class_iou {name: IoU}, mean_class_acc, thing_mIoU, stuff_mIoU,
    cluster_to_class (list, -1 = unmatched) and matching.
    """
    hist = np.asarray(hist.cpu() if isinstance(hist, torch.Tensor) else hist, dtype=np.float64)
    n_classes, n_clusters = hist.shape
    if matching == "hungarian":
        class_of_cluster = np.full(n_clusters, -1, dtype=np.int64)
        cluster_of_class = hungarian_match(hist)
        for cls, cluster in enumerate(cluster_of_class):
            if cluster >= 0:
                class_of_cluster[cluster] = cls
    elif matching == "majority":
        class_of_cluster = hist.argmax(0)
        class_of_cluster[hist.sum(0) == 0] = -1
    elif matching == "identity":
        # Predictions are classes already (a supervised linear probe): prediction k is class k.
        class_of_cluster = np.arange(n_clusters, dtype=np.int64)
        class_of_cluster[class_of_cluster >= n_classes] = -1
    else:
        raise ValueError(f"unknown matching {matching!r}")
    iou, class_acc, acc = _iou_and_acc(hist, class_of_cluster)
    names = list(class_names) + [f"class_{i}" for i in range(len(class_names), n_classes)]
    result = {
        "matching": matching,
        "acc": 100 * float(acc),
        "mIoU": 100 * _nanmean(iou),
        "mean_class_acc": 100 * _nanmean(class_acc),
        "per_class_iou": {names[i]: (None if np.isnan(iou[i]) else 100 * float(iou[i])) for i in range(n_classes)},
        "cluster_to_class": class_of_cluster.tolist(),
        "n_pixels": int(hist.sum()),
    }
    thing = [c for c in thing_classes if c < n_classes]
    stuff = [c for c in stuff_classes if c < n_classes]
    result["thing_mIoU"] = 100 * _nanmean(iou[thing]) if thing else None
    result["stuff_mIoU"] = 100 * _nanmean(iou[stuff]) if stuff else None
    return result


def summarize_repeats(results: list[dict]) -> dict:
    """Mean and std (population, as numpy's default) of acc / mIoU over repeated clusterings."""
    summary = {}
    for key in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU"):
        values = [r[key] for r in results if r.get(key) is not None]
        if values:
            summary[key] = float(np.mean(values))
            summary[f"{key}_std"] = float(np.std(values))
    summary["repeats"] = len(results)
    return summary


def thing_stuff_ids(source: DataSource) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ground-truth class ids of the thing and stuff groups in evaluation numbering (COCO-Stuff with
    both groups evaluated: 0-11 / 12-26 of 27, 0-79 / 80-170 of 171; else none)."""
    return tuple(source.thing_classes), tuple(source.stuff_classes)


def metrics_from_hist(hist: torch.Tensor, class_names: Sequence[str], thing_ids, stuff_ids) -> dict:
    """Hungarian metrics; also many-to-one (majority) when there are more clusters than classes."""
    result = segmentation_metrics(hist, class_names, thing_ids, stuff_ids, matching="hungarian")
    if hist.shape[1] > hist.shape[0]:
        result["majority"] = segmentation_metrics(hist, class_names, thing_ids, stuff_ids, matching="majority")
    return result
