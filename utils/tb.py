"""Optional TensorBoard logging of a training run (`train_picie.py --tensorboard`).

Writes to <run folder>/tensorboard: per epoch the losses (total, within-view, cross-view), both
views' k-means loss, the per-epoch metrics (each view's classifier with Hungarian matching, the
many-to-one matching when K_train exceeds the classes, the fresh K_test clustering when it is
run, view-1 per-class IoU), the time of each phase, and a grid of cluster maps of a few fixed val
images (image | ground truth | view-1 clusters coloured by their matched class); at the end the
final fresh-k-means scores and the untrained network's. Start it with
`tensorboard --logdir <save_root>`.

The tensorboard package is optional: without --tensorboard nothing here imports it, and with
--tensorboard and no package the run stops before it starts, with one line saying what to do.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from data.build import val_dataset
from data.datasets import EvalImages
from utils import dist
from utils.engine import Runtime
from utils.viz import class_palette, colour_map, matched_colours, predict

N_MAP_IMAGES = 4        # val images drawn every epoch: enough to see a trend, small enough to be cheap
TB_FOLDER = "tensorboard"


class TensorBoardUnavailable(ValueError):
    """--tensorboard was asked for but the tensorboard package is not installed."""


class NullLogger:
    """What the run gets without --tensorboard (or on ranks other than 0): every call does nothing."""

    def log_epoch(self, record: Dict, model, centroids: Sequence[torch.Tensor], source, runtime: Runtime) -> None:
        pass

    def close(self, final: Optional[Dict] = None) -> None:
        pass


def open_tensorboard(args):
    """A TensorBoardLogger for the run of `args` if --tensorboard is set (and this is rank 0), else
    a NullLogger. Raises TensorBoardUnavailable when the package is missing."""
    if not getattr(args, "tensorboard", False):
        return NullLogger()
    writer_class = _summary_writer_class()
    if not dist.is_main():
        return NullLogger()
    return TensorBoardLogger(writer_class, Path(args.save_root) / args.run_name / TB_FOLDER, args)


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise TensorBoardUnavailable("--tensorboard needs the optional tensorboard package, which is not installed: "
                                     "pip install tensorboard, or run without --tensorboard") from None
    return SummaryWriter


class TensorBoardLogger:
    """Scalars and cluster maps of each epoch; the writer and the example images are created at the
    first epoch, so a run that stops before it leaves no empty event file."""

    def __init__(self, writer_class, log_dir: Path, args):
        self.writer_class = writer_class
        self.log_dir = log_dir
        self.args = args
        self.writer = None
        self.examples = None   # (uint8 images [N, 3, res, res], labels [N, res, res] or None)

    def _open(self, source) -> None:
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.log_dir))
        if self.examples is None:
            self.examples = _example_images(source, self.args.res, N_MAP_IMAGES, self.args.bad_labels)

    def log_epoch(self, record: Dict, model, centroids: Sequence[torch.Tensor], source, runtime: Runtime) -> None:
        self._open(source)
        step = int(record["epoch"])
        for tag, value in _scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        grid = self._cluster_maps(record, model, centroids[0], source, runtime)
        if grid is not None:
            self.writer.add_image("cluster_maps/view1", grid, step, dataformats="HWC")
        self.writer.flush()

    def _cluster_maps(self, record, model, centroids, source, runtime) -> Optional[np.ndarray]:
        images, labels = self.examples
        if images is None:
            return None
        # The bare network: a DDP wrapper would wait for the other ranks, which do not draw.
        module = model.module if hasattr(model, "module") else model
        clusters = predict(module, images, centroids, None, runtime, self.args.metric_test == "cosine").numpy()
        class_of_cluster = record.get("view1", {}).get("cluster_to_class")
        rows = []
        for i in range(images.shape[0]):
            panels = [images[i].permute(1, 2, 0).numpy().astype(np.float32) / 255]
            if labels is not None and class_of_cluster is not None:
                palette = class_palette(source.n_classes)
                panels += [colour_map(labels[i], palette), matched_colours(clusters[i], class_of_cluster, palette)]
            else:  # no labels: each cluster its own colour
                panels.append(colour_map(clusters[i], class_palette(centroids.shape[0])))
            rows.append(np.concatenate(_with_gaps(panels, axis=1), axis=1))
        return np.clip(np.concatenate(_with_gaps(rows, axis=0), axis=0), 0, 1)

    def close(self, final: Optional[Dict] = None) -> None:
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


def _example_images(source, res: int, n_images: int, bad_labels: str):
    """The first val images (with labels) or, without labels, the first training images."""
    if source.has_labels:
        dataset = val_dataset(source, res, bad_labels)
    elif source.train_images:
        dataset = EvalImages(source.train_images, res)
    else:
        return None, None
    items = [dataset[i] for i in range(min(n_images, len(dataset)))]
    images = torch.stack([image for _, image, _ in items])
    labels = np.stack([label.numpy().astype(np.int64) for _, _, label in items]) if source.has_labels else None
    return images, labels


def _with_gaps(arrays: List[np.ndarray], axis: int, gap: int = 4) -> List[np.ndarray]:
    """The arrays with white strips between them (so panels are told apart)."""
    out = []
    for i, array in enumerate(arrays):
        if i:
            shape = list(array.shape)
            shape[axis] = gap
            out.append(np.ones(shape, dtype=np.float32))
        out.append(array)
    return out


def _scalars(record: Dict) -> Dict[str, float]:
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
