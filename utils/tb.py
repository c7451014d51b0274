"""Optional TensorBoard logging of a training run (`train_picie.py --tensorboard`).

Writes to <run folder>/tensorboard: per epoch the losses (total, within-view, cross-view), both
views' k-means loss, the per-epoch metrics (each view's classifier with Hungarian matching, the
many-to-one matching when K_train exceeds the classes, the fresh K_test clustering when it is
run, view-1 per-class IoU), the time of each phase, and an image grid the caller draws (the
training loop passes ExampleMaps below: cluster maps of a few fixed val images); at the end the
final fresh-k-means scores and the untrained network's. Start it with
`tensorboard --logdir <save_root>`.

The tensorboard package is optional: without --tensorboard nothing here imports it, and with
--tensorboard and no package the run stops before it starts, with one line saying what to do.
"""
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from utils import dist
from utils.errors import UserError
from utils.viz import class_palette, colour_map, matched_colours, panel_grid

TB_FOLDER = "tensorboard"


class TensorBoardUnavailable(UserError):
    """--tensorboard was asked for but the tensorboard package is not installed."""


class NullLogger:
    """What the run gets without --tensorboard (or on ranks other than 0): every call does nothing."""

    def log_epoch(self, record: dict, draw_image: Callable[[], np.ndarray | None] | None = None) -> None:
        pass

    def close(self, final: dict | None = None) -> None:
        pass


def open_tensorboard(enabled: bool, run_folder: Path):
    """A TensorBoardLogger writing to <run_folder>/tensorboard if `enabled` (and this is rank 0),
    else a NullLogger. Raises TensorBoardUnavailable when the package is missing."""
    if not enabled:
        return NullLogger()
    writer_class = _summary_writer_class()
    if not dist.is_main():
        return NullLogger()
    return TensorBoardLogger(writer_class, Path(run_folder) / TB_FOLDER)


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise TensorBoardUnavailable("--tensorboard needs the optional tensorboard package, which is not installed: "
                                     "pip install tensorboard, or run without --tensorboard") from None
    return SummaryWriter


class TensorBoardLogger:
    """Scalars of each epoch and an image the caller draws; the writer is created at the first
    epoch, so a run that stops before it leaves no empty event file."""

    def __init__(self, writer_class, log_dir: Path):
        self.writer_class = writer_class
        self.log_dir = log_dir
        self.writer = None

    def log_epoch(self, record: dict, draw_image: Callable[[], np.ndarray | None] | None = None) -> None:
        """Scalars of one metrics.jsonl record; draw_image() -> [H, W, 3] in [0, 1] (or None) is
        called only here, so nothing is drawn without --tensorboard."""
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.log_dir))
        step = int(record["epoch"])
        for tag, value in _scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        image = draw_image() if draw_image is not None else None
        if image is not None:
            self.writer.add_image("cluster_maps/view1", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self, final: dict | None = None) -> None:
        if final:
            if self.writer is None:  # --num_epoch 0: only the final scores
                self.writer = self.writer_class(log_dir=str(self.log_dir))
            step = int(final.get("epochs", 0))
            for name in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU"):
                if final.get(name) is not None:
                    self.writer.add_scalar(f"final/{name}", final[name], step)
            for key in ("untrained", "untrained_bn_calibrated"):
                for name in ("acc", "mIoU"):
                    if final.get(key, {}).get(name) is not None:
                        self.writer.add_scalar(f"final/{key}_{name}", final[key][name], 0)
        if self.writer is not None:
            self.writer.close()


def _scalars(record: dict) -> dict[str, float]:
    """TensorBoard tags and values of one metrics.jsonl record."""
    out = {}
    for key, tag in (("loss", "loss/total"), ("loss_within", "loss/within_view"), ("loss_cross", "loss/cross_view")):
        if record.get(key) is not None:
            out[tag] = float(record[key])
    for view, value in enumerate(record.get("kmeans_loss") or []):
        out[f"kmeans_loss/view{view + 1}"] = float(value)
    for key in ("view1", "view2", "fresh_K_test"):
        metrics = record.get(key)
        if not metrics:
            continue
        for name in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU"):
            if metrics.get(name) is not None:
                out[f"{key}/{name}"] = float(metrics[name])
        for name in ("acc", "mIoU"):
            if metrics.get("majority", {}).get(name) is not None:
                out[f"{key}_majority/{name}"] = float(metrics["majority"][name])
    for name, value in (record.get("view1", {}).get("per_class_iou") or {}).items():
        if value is not None:
            out[f"per_class_iou_view1/{name}"] = float(value)
    for phase, seconds in (record.get("phase_s") or {}).items():
        out[f"time_s/{phase}"] = float(seconds)
    return out


class ExampleMaps:
    """Cluster maps of a few fixed images, drawn once per epoch for TensorBoard: per image a row
    image | ground truth | clusters coloured by their matched class (labelled images), or
    image | clusters (each its own colour) when there are no labels.

    read() -> (uint8 images [N, 3, H, W] or None, class ids [N, H, W] (-1 unlabelled) or None) is
    called at the first drawing (modules/evaluation.py: example_images); clusters_of(images,
    centroids) -> cluster id per pixel [N, H, W] (modules/evaluation.py: cluster_ids)."""

    def __init__(self, read: Callable[[], tuple[torch.Tensor | None, np.ndarray | None]],
                 clusters_of: Callable[[torch.Tensor, torch.Tensor], np.ndarray], n_classes: int):
        self.read, self.clusters_of, self.n_classes = read, clusters_of, n_classes
        self.images: torch.Tensor | None = None   # uint8 [N, 3, res, res], read at the first call
        self.labels: np.ndarray | None = None     # [N, res, res] class ids (-1 unlabelled)
        self._read_done = False

    def __call__(self, centroids: torch.Tensor, class_of_cluster: Sequence[int] | None) -> np.ndarray | None:
        """centroids [K, C] of view 1 and its cluster -> class matching (None without labels) ->
        the grid [H, W, 3] in [0, 1], or None when there is no image to draw."""
        if not self._read_done:
            self.images, self.labels = self.read()
            self._read_done = True
        if self.images is None:
            return None
        clusters = self.clusters_of(self.images, centroids)
        rows = []
        for i in range(self.images.shape[0]):
            panels = [self.images[i].permute(1, 2, 0).numpy().astype(np.float32) / 255]
            if self.labels is not None and class_of_cluster is not None:
                palette = class_palette(self.n_classes)
                panels += [colour_map(self.labels[i], palette), matched_colours(clusters[i], class_of_cluster, palette)]
            else:
                panels.append(colour_map(clusters[i], class_palette(centroids.shape[0])))
            rows.append(panels)
        return panel_grid(rows)
