"""Tests for modules/metrics.py: confusion histogram, Hungarian / majority matching, acc, mIoU,
thing/stuff mIoU over ground-truth classes."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from modules.metrics import confusion_histogram, hungarian_match, segmentation_metrics, summarize_repeats

THING = list(range(12))
STUFF = list(range(12, 27))

# hist[class, cluster]; class 0 <-> cluster 2, class 1 <-> cluster 0, class 2 <-> cluster 1.
HIST3 = np.array([[1, 0, 5],
                  [6, 1, 2],
                  [3, 4, 0]])


def _pixels_from_hist(hist, seed=0):
    """Label / prediction arrays (shuffled, shaped like a small batch of maps) with this histogram."""
    labels, preds = [], []
    for c in range(hist.shape[0]):
        for k in range(hist.shape[1]):
            labels += [c] * int(hist[c, k])
            preds += [k] * int(hist[c, k])
    order = np.random.default_rng(seed).permutation(len(labels))
    return torch.tensor(labels)[order], torch.tensor(preds)[order]


# ----------------------------------------------------------------------------------------
# Hand-computed 3-class case
# ----------------------------------------------------------------------------------------
def test_confusion_histogram_by_hand():
    labels, preds = _pixels_from_hist(HIST3)
    hist = confusion_histogram(labels, preds, 3)
    assert hist.dtype == torch.int64 and hist.shape == (3, 3)
    assert np.array_equal(hist.numpy(), HIST3)
    # Shape does not matter, only the pairing of pixels.
    hist2 = confusion_histogram(labels.reshape(2, 11), preds.reshape(2, 11), 3)
    assert np.array_equal(hist2.numpy(), HIST3)


def test_ignored_labels_are_excluded():
    labels, preds = _pixels_from_hist(HIST3)
    ignored_labels = torch.tensor([-1, -1, 3, 255, 27, -1])
    ignored_preds = torch.tensor([0, 1, 2, 0, 1, 2])
    hist = confusion_histogram(torch.cat([labels, ignored_labels]), torch.cat([preds, ignored_preds]), 3)
    assert np.array_equal(hist.numpy(), HIST3)
    m = segmentation_metrics(hist, ["a", "b", "c"])
    assert m["n_pixels"] == 22
    assert m["acc"] == pytest.approx(100 * 15 / 22)
    # uint8 maps with 255 = unlabeled, as stored on disk.
    hist_u8 = confusion_histogram(torch.cat([labels, torch.tensor([255, 255])]).to(torch.uint8),
                                  torch.cat([preds, torch.tensor([0, 1])]), 3)
    assert np.array_equal(hist_u8.numpy(), HIST3)


def test_rectangular_histogram():
    labels = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([4, 4, 0, 5, 1])
    hist = confusion_histogram(labels, preds, 3, n_clusters=6)
    expected = np.zeros((3, 6), dtype=np.int64)
    expected[0, 4], expected[1, 0], expected[1, 5], expected[2, 1] = 2, 1, 1, 1
    assert np.array_equal(hist.numpy(), expected)


def test_hand_computed_metrics():
    m = segmentation_metrics(torch.tensor(HIST3), ["a", "b", "c"])
    assert m["matching"] == "hungarian"
    assert m["cluster_to_class"] == [1, 2, 0]
    assert list(hungarian_match(HIST3)) == [2, 0, 1]
    assert m["acc"] == pytest.approx(100 * 15 / 22)
    # class a: tp 5, fp (5+2+0)-5 = 2, fn 6-5 = 1; class b: tp 6, fp 10-6, fn 9-6; class c: tp 4, fp 1, fn 3.
    iou = {"a": 5 / 8, "b": 6 / 13, "c": 4 / 8}
    for name, value in iou.items():
        assert m["per_class_iou"][name] == pytest.approx(100 * value)
    assert m["mIoU"] == pytest.approx(100 * sum(iou.values()) / 3)
    assert m["mean_class_acc"] == pytest.approx(100 * (5 / 6 + 6 / 9 + 4 / 7) / 3)
    assert m["n_pixels"] == 22
    assert m["thing_mIoU"] is None and m["stuff_mIoU"] is None


def test_matching_maximises_matched_pixels_not_greedy():
    """A greedy row-by-row matching would give class 0 cluster 0 (10) and then class 1 cluster 1 (1):
    11 matched pixels. The optimum is 9 + 8 = 17."""
    hist = np.array([[10, 9],
                     [8, 1]])
    m = segmentation_metrics(hist, ["a", "b"])
    assert m["cluster_to_class"] == [1, 0]
    assert m["acc"] == pytest.approx(100 * 17 / 28)


@pytest.mark.parametrize("seed", range(3))
def test_permuted_perfect_clustering(seed):
    rng = np.random.default_rng(seed)
    n = 7
    perm = rng.permutation(n)
    labels = torch.tensor(rng.integers(0, n, size=(4, 16, 16)))
    preds = torch.tensor(perm)[labels]
    labels[0, :3] = -1  # some unlabeled pixels with arbitrary predictions
    m = segmentation_metrics(confusion_histogram(labels, preds, n), [f"c{i}" for i in range(n)])
    assert m["acc"] == pytest.approx(100.0)
    assert m["mIoU"] == pytest.approx(100.0)
    assert m["mean_class_acc"] == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in m["per_class_iou"].values())
    assert m["cluster_to_class"] == [int(np.where(perm == k)[0][0]) for k in range(n)]


def test_class_names_and_defaults():
    m = segmentation_metrics(HIST3, ["a"])
    assert list(m["per_class_iou"]) == ["a", "class_1", "class_2"]


# ----------------------------------------------------------------------------------------
# nanmean and empty classes
# ----------------------------------------------------------------------------------------
def test_nanmean_skips_class_without_pixels_and_predictions():
    hist = np.zeros((4, 4))
    hist[:3, :3] = HIST3  # class 3 has no pixels, cluster 3 no predictions
    m = segmentation_metrics(hist, ["a", "b", "c", "d"])
    assert m["per_class_iou"]["d"] is None
    assert m["mIoU"] == pytest.approx(100 * (5 / 8 + 6 / 13 + 4 / 8) / 3)
    assert m["mean_class_acc"] == pytest.approx(100 * (5 / 6 + 6 / 9 + 4 / 7) / 3)
    assert m["acc"] == pytest.approx(100 * 15 / 22)


def test_class_without_pixels_but_with_predictions_counts_as_zero():
    """Class 2 has no pixels; its matched cluster takes pixels of class 0: IoU 0, not skipped."""
    hist = np.array([[5, 0, 3],
                     [0, 4, 0],
                     [0, 0, 0]])
    m = segmentation_metrics(hist, ["a", "b", "c"])
    assert m["per_class_iou"]["c"] == pytest.approx(0.0)
    assert m["per_class_iou"]["a"] == pytest.approx(100 * 5 / 8)
    assert m["mIoU"] == pytest.approx(100 * (5 / 8 + 1 + 0) / 3)
    # mean class accuracy skips the class with no pixels.
    assert m["mean_class_acc"] == pytest.approx(100 * (5 / 8 + 1) / 2)


def test_empty_histogram_is_nan_not_an_error():
    m = segmentation_metrics(np.zeros((3, 3)), ["a", "b", "c"])
    assert np.isnan(m["acc"]) and np.isnan(m["mIoU"])
    assert all(v is None for v in m["per_class_iou"].values())


# ----------------------------------------------------------------------------------------
# Thing / stuff over ground-truth classes
# ----------------------------------------------------------------------------------------
def _stuff_good_thing_bad(perm):
    """27 classes: stuff classes all on their own cluster, thing classes smeared over the thing
    clusters; columns (clusters) permuted by perm."""
    hist = np.zeros((27, 27))
    for c in STUFF:
        hist[c, c] = 100
    for c in THING:
        hist[c, THING] = 5
        hist[c, c] = 10
    return hist[:, perm]


@pytest.mark.parametrize("seed", range(3))
def test_thing_stuff_over_ground_truth_classes(seed):
    perm = np.random.default_rng(seed).permutation(27)
    names = [f"c{i}" for i in range(27)]
    m = segmentation_metrics(_stuff_good_thing_bad(perm), names, THING, STUFF)
    # thing: tp 10, fp 11 * 5, fn 11 * 5 -> 10 / 120
    assert m["stuff_mIoU"] == pytest.approx(100.0)
    assert m["thing_mIoU"] == pytest.approx(100 * 10 / 120)
    assert m["mIoU"] == pytest.approx(100 * (15 + 12 * 10 / 120) / 27)
    # Independent of the cluster order.
    ref = segmentation_metrics(_stuff_good_thing_bad(np.arange(27)), names, THING, STUFF)
    for key in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "mean_class_acc", "per_class_iou"):
        assert m[key] == pytest.approx(ref[key]), key


def test_thing_stuff_subset_and_missing():
    # Only classes below n_classes are used; an empty list gives None.
    m = segmentation_metrics(HIST3, ["a", "b", "c"], thing_classes=[0, 1], stuff_classes=[2, 26])
    assert m["thing_mIoU"] == pytest.approx(100 * (5 / 8 + 6 / 13) / 2)
    assert m["stuff_mIoU"] == pytest.approx(100 * 4 / 8)
    m = segmentation_metrics(HIST3, ["a", "b", "c"], thing_classes=[0], stuff_classes=[])
    assert m["stuff_mIoU"] is None


# ----------------------------------------------------------------------------------------
# Majority matching (over-clustering)
# ----------------------------------------------------------------------------------------
def test_majority_matching_for_over_clustering():
    rng = np.random.default_rng(0)
    labels = torch.tensor(rng.integers(0, 3, size=(2, 20, 20)))
    # Each class split into two clusters, cluster ids scrambled.
    cluster_pairs = torch.tensor([[4, 1], [0, 5], [3, 2]])
    half = torch.tensor(rng.integers(0, 2, size=(2, 20, 20)))
    preds = cluster_pairs[labels, half]
    hist = confusion_histogram(labels, preds, 3, n_clusters=6)
    m = segmentation_metrics(hist, ["a", "b", "c"], matching="majority")
    assert m["matching"] == "majority"
    assert m["acc"] == pytest.approx(100.0)
    assert m["mIoU"] == pytest.approx(100.0)
    assert m["cluster_to_class"] == [1, 0, 2, 2, 0, 1]
    # One-to-one matching of the same histogram cannot reach 100.
    hung = segmentation_metrics(hist, ["a", "b", "c"], matching="hungarian")
    assert hung["acc"] < 75
    assert sorted(c for c in hung["cluster_to_class"] if c >= 0) == [0, 1, 2]
    assert hung["cluster_to_class"].count(-1) == 3


def test_majority_matching_by_hand_and_empty_cluster():
    hist = np.array([[6, 1, 0, 0],
                     [2, 3, 4, 0],
                     [0, 0, 0, 0]])
    m = segmentation_metrics(hist, ["a", "b", "c"], matching="majority")
    assert m["cluster_to_class"] == [0, 1, 1, -1]
    # class a: tp 6, fp 2, fn 1; class b: tp 7, fp 1, fn 2; class c: nan (skipped).
    assert m["acc"] == pytest.approx(100 * 13 / 16)
    assert m["per_class_iou"]["c"] is None
    assert m["mIoU"] == pytest.approx(100 * (6 / 9 + 7 / 10) / 2)


def test_unknown_matching_raises():
    with pytest.raises(ValueError):
        segmentation_metrics(HIST3, ["a", "b", "c"], matching="greedy")


def test_fewer_clusters_than_classes():
    hist = np.array([[5, 0],
                     [1, 4],
                     [2, 2]])
    m = segmentation_metrics(hist, ["a", "b", "c"])
    assert m["cluster_to_class"] == [0, 1]
    assert m["per_class_iou"]["c"] == pytest.approx(0.0)  # unmatched class with pixels
    assert m["acc"] == pytest.approx(100 * 9 / 14)


# ----------------------------------------------------------------------------------------
# Against a straightforward implementation of the original protocol
# ----------------------------------------------------------------------------------------
def _original_protocol(hist, thing=(), stuff=()):
    """The original PiCIE evaluation, written out: square histogram, matching by
    linear_sum_assignment(hist.max() - hist), the histogram's rows moved to their matched
    cluster, tp/fp/fn per matched pair, nanmean. Thing/stuff over ground-truth classes."""
    k = hist.shape[0]
    rows, cols = linear_sum_assignment(hist.max() - hist)
    acc = hist[rows, cols].sum() / hist.sum()
    new_hist = np.zeros((k, k))
    for r, c in zip(rows, cols, strict=True):
        new_hist[c] = hist[r]
    tp = np.diag(new_hist)
    fp = new_hist.sum(0) - tp
    fn = new_hist.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou_by_cluster = tp / (tp + fp + fn)
        prc_by_cluster = tp / (tp + fn)
    iou_by_class = np.empty(k)
    prc_by_class = np.empty(k)
    iou_by_class[rows] = iou_by_cluster[cols]
    prc_by_class[rows] = prc_by_cluster[cols]
    out = {"acc": 100 * acc, "mIoU": 100 * np.nanmean(iou_by_cluster),
           "mean_class_acc": 100 * np.nanmean(prc_by_cluster), "iou": 100 * iou_by_class}
    if thing:
        out["thing_mIoU"] = 100 * np.nanmean(iou_by_class[list(thing)])
    if stuff:
        out["stuff_mIoU"] = 100 * np.nanmean(iou_by_class[list(stuff)])
    return out


def _random_hist(seed, k):
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:    # uniform counts
        hist = rng.integers(0, 1000, size=(k, k))
    elif kind == 1:  # heavy-tailed counts, many zeros
        hist = np.floor(rng.pareto(1.0, size=(k, k)) * 50) * (rng.random((k, k)) < 0.5)
    elif kind == 2:  # a noisy permuted diagonal (a decent clustering)
        hist = rng.integers(0, 200, size=(k, k)) + np.diag(rng.integers(1000, 50_000, size=k))[:, rng.permutation(k)]
    else:            # one class without pixels
        hist = rng.integers(0, 5000, size=(k, k))
        hist[rng.integers(k)] = 0
    hist = hist.astype(np.float64)
    if hist.sum() == 0:
        hist[0, 0] = 1
    return hist


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("k", [3, 6, 27])
def test_agrees_with_original_protocol(seed, k):
    hist = _random_hist(seed, k)
    thing, stuff = (THING, STUFF) if k == 27 else ((0,), tuple(range(1, k)))
    ref = _original_protocol(hist, thing, stuff)
    names = [f"c{i}" for i in range(k)]
    got = segmentation_metrics(torch.tensor(hist.astype(np.int64)), names, thing, stuff)
    for key in ("acc", "mIoU", "mean_class_acc", "thing_mIoU", "stuff_mIoU"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9, rel=0), key
    per_class = np.array([np.nan if v is None else v for v in got["per_class_iou"].values()])
    np.testing.assert_allclose(per_class, ref["iou"], atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------------------
# Repeats
# ----------------------------------------------------------------------------------------
def test_summarize_repeats():
    results = [{"acc": 50.0, "mIoU": 10.0, "thing_mIoU": None, "stuff_mIoU": 20.0},
               {"acc": 52.0, "mIoU": 14.0, "thing_mIoU": None, "stuff_mIoU": 22.0}]
    s = summarize_repeats(results)
    assert s["acc"] == pytest.approx(51.0) and s["acc_std"] == pytest.approx(1.0)
    assert s["mIoU"] == pytest.approx(12.0) and s["mIoU_std"] == pytest.approx(2.0)
    assert s["stuff_mIoU"] == pytest.approx(21.0)
    assert "thing_mIoU" not in s
    assert s["repeats"] == 2
