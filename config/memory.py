"""The memory checks of the three scripts: the settings turned into utils/memory.py's estimates,
compared with what the machine has before any work (before a run folder, a checkpoint or an
output is written), one line naming the flag to lower and the largest value that fits.

    training (train_picie.py):  --res1 (with --res2 scaled alike), else --batch_size_train
    evaluation (test_picie.py, and train_picie.py's evaluations): --res, else --batch_size_test
predict.py's check (--res, else the largest image) is modules/segment.py: check_prediction_memory.

`python -m config --memory [flags]` prints the training and evaluation estimates of a data root and
flags by part, and whether they fit here, without training (estimate_report).
"""
import logging
from collections.abc import Sequence
from dataclasses import replace

import torch

from data.build import build_source, train_dataset
from modules.evaluation import EvalSettings
from modules.kmeans import KMeansSettings
from modules.networks import build_model, network_cost
from modules.objectives import build_objective
from utils.memory import (
    EVALUATION_ON_DEVICE,
    TRAINING_ON_DEVICE,
    Available,
    MemoryLimitError,
    NetworkCost,
    check_fits,
    evaluation_parts,
    format_parts,
    format_size,
    training_parts,
)
from utils.runtime import make_runtime

log = logging.getLogger("picie")
LOADER_BATCHES = 2     # a batch in use and about one more in flight (utils/loaders.py bounds the prefetch)
SMALLEST_RES = 32      # config/checks.py: every resolution is at least 32


def init_points(kmeans: KMeansSettings, batch_cluster: int, n_cells: int) -> int:
    """Points per head of the initial k-means sample."""
    per_image = n_cells if kmeans.init_all_pixels else min(kmeans.pixels_per_image, n_cells)
    return kmeans.num_init_batches * batch_cluster * per_image


def training_memory(s, net: NetworkCost, n_images: int, head_clusters: Sequence[int], device,
                    half_precision: bool = False, available: Available | None = None) -> dict[str, float]:
    """Check that training with RunSettings `s` (on `device`; half_precision: under a 16-bit
    autocast) fits (MemoryLimitError otherwise, unless --skip_memory_check); returns the
    breakdown at the run's --res1."""
    available = available or Available.now(device)
    slots = 2 if s.optim.optim_type == "Adam" else (1 if s.optim.momentum else 0)
    ratio = s.train.res2 / s.train.res1

    def parts_at(res1: int) -> dict[str, float]:
        cells = (res1 // net.stride) ** 2
        return training_parts(net, n_images, res1, int(res1 * ratio), s.train.batch_size_cluster,
                              s.train.batch_size_train, head_clusters, s.train.feature_cache_bytes,
                              init_points(s.kmeans, s.train.batch_size_cluster, cells), slots, LOADER_BATCHES,
                              half_precision)

    parts = check_fits("training", parts_at, s.train.res1, "--res1", TRAINING_ON_DEVICE, available, net.stride,
                       max(SMALLEST_RES, net.stride), other="--batch_size_train and --batch_size_cluster",
                       skip=s.skip_memory_check)
    log.info("memory estimate of training at --res1 %d: %s", s.train.res1, format_parts(parts))
    evaluation_memory(s.eval, net, device, s.skip_memory_check, available)
    return parts


def evaluation_memory(settings: EvalSettings, net: NetworkCost, device, skip: bool,
                      available: Available | None = None) -> dict[str, float]:
    """Check that an evaluation with `settings` fits; returns the breakdown at its --res."""
    available = available or Available.now(device)

    def parts_at(res: int) -> dict[str, float]:
        cells = (res // net.stride) ** 2
        return evaluation_parts(net, res, settings.batch_size_test, settings.n_clusters,
                                init_points(settings.kmeans, settings.batch_size_cluster, cells), LOADER_BATCHES)

    return check_fits("evaluation", parts_at, settings.res, "--res", EVALUATION_ON_DEVICE, available, net.stride,
                      max(SMALLEST_RES, net.stride), other="--batch_size_test", skip=skip)


def estimate_report(s, net: NetworkCost, n_images: int, head_clusters: Sequence[int], device,
                    half_precision: bool = False, available: Available | None = None) -> list[str]:
    """The lines of `python -m config --memory`: training's and evaluation's estimates by part (where
    each part lives: RAM, or the accelerator when `device` is one), their totals, and whether each
    fits in `available` (the one-line reason and the largest value that fits when not)."""
    available = available or Available.now(device)
    on_accelerator = available.device is not None  # as Available.shortfall splits the parts
    lines = [f"memory estimate: {n_images} training images, --res1 {s.train.res1} --res2 {s.train.res2} "
             f"--res {s.eval.res}, batches {s.train.batch_size_cluster}/{s.train.batch_size_train}/"
             f"{s.eval.batch_size_test}, clusterings K {', '.join(map(str, head_clusters))}, on {device}"]
    for what, on_device, estimate in (
            ("training", TRAINING_ON_DEVICE, lambda skip: training_memory(
                replace(s, skip_memory_check=skip), net, n_images, head_clusters, device, half_precision, available)),
            ("evaluation", EVALUATION_ON_DEVICE, lambda skip: evaluation_memory(s.eval, net, device, skip, available))):
        parts = estimate(True)
        lines.append(f"{what}:")
        for name, size in sorted(parts.items(), key=lambda item: -item[1]):
            where = "accelerator" if on_accelerator and name in on_device else "RAM"
            lines.append(f"  {name:<24} {format_size(size):>9}  {where}")
        host = sum(v for k, v in parts.items() if not (on_accelerator and k in on_device))
        lines.append(f"  {'total':<24} {format_size(host):>9}  RAM"
                     + (f", {format_size(sum(parts.values()) - host)} on the accelerator" if on_accelerator else ""))
        try:
            estimate(False)
            lines.append(f"  fits: {available.describe()}")
        except MemoryLimitError as exc:
            lines.append(f"  does not fit: {exc}")
    return lines


def memory_report(s) -> list[str]:
    """estimate_report for RunSettings `s`: the data root's training images counted as training
    counts them, the network built as the run builds it (random weights: none are downloaded) and
    measured (modules/networks.py: network_cost), the objective's clusterings, the device and
    precision the run would use. Nothing is trained or written."""
    runtime = make_runtime(s.device, s.precision, s.deterministic)
    n_images = len(train_dataset(build_source(s.data), s.train.res2))
    model = build_model(s.model.arch, s.model.feat_dim, False, None, vit_head=s.model.vit_head,
                        freeze_backbone=s.model.freeze_backbone)
    heads = build_objective(s.objective, model.feat_dim, None, s.seed).heads
    level = log.level
    log.setLevel(logging.WARNING)  # the run's own log line of each estimate would say it all twice
    try:
        return estimate_report(s, network_cost(model), n_images, [head.n_clusters for head in heads],
                               runtime.device, half_precision=runtime.amp_dtype in (torch.bfloat16, torch.float16))
    finally:
        log.setLevel(level)  # in a process that goes on (a test), the run log is as it was
