"""Cityscapes-27 in the official layout, under --data_root (default of the sh_files script:
datasets/cityscapes/):

    leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<frame>_gtFine_labelIds.png       uint8 labelIds 0..33

PiCIE evaluates the 27 classes with labelIds 7..33 (road .. bicycle), renumbered 0..26; labelIds
0..6 (unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground) are
ignored. As in the original, training uses images only (default: the unlabelled `train_extra`
and `test` splits, about 21.5k frames) and evaluation the labelled `val` + `train` splits
(3,475 frames); both lists are flags. The final fresh-k-means evaluation clusters the training
images, as on COCO-Stuff.
"""
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.source import DataSource
from data.validation import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "train_extra")
DEFAULT_TRAIN_SPLITS = ("train_extra", "test")
DEFAULT_EVAL_SPLITS = ("val", "train")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
#: labelIds FIRST_ID..FIRST_ID+26 are the evaluated classes 0..26.
FIRST_ID = 7
#: Cityscapes label names of labelIds 7..33, index = PiCIE class id.
CLASS_NAMES = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)


def label_lut() -> np.ndarray:
    """int16 [256]: labelId 7..33 -> class 0..26, every other value -> -1 (ignored)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[FIRST_ID: FIRST_ID + len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES), dtype=np.int16)
    return lut


def split_images(data_root: Path, split: str) -> list[Path]:
    """Frames of one split, sorted by city then name; [] if the split folder is absent."""
    folder = data_root / "leftImg8bit" / split
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*/*{IMAGE_SUFFIX}"))


def label_path(data_root: Path, split: str, image: Path) -> Path:
    """gtFine labelIds map of a leftImg8bit frame."""
    frame = image.name[: -len(IMAGE_SUFFIX)]
    return data_root / "gtFine" / split / image.parent.name / f"{frame}{LABEL_SUFFIX}"


def _collect(data_root: Path, splits: Sequence[str], flag: str, with_labels: bool) -> tuple[list[Path], list[Path]]:
    """Images (and label maps) of the listed splits; absent or empty splits are skipped with a
    warning that lists the splits that do exist; nothing at all is an error naming the flag."""
    found = sorted(p.name for p in (data_root / "leftImg8bit").iterdir() if p.is_dir())
    images, labels = [], []
    for split in splits:
        frames = split_images(data_root, split)
        if not frames:
            log.warning("Cityscapes split %r (%s) has no *%s frames under %s; skipped (splits found: %s)",
                        split, flag, IMAGE_SUFFIX, data_root / "leftImg8bit" / split, ", ".join(found) or "none")
            continue
        images += frames
        if with_labels:
            labels += [label_path(data_root, split, frame) for frame in frames]
    if not images:
        raise DataError(f"no Cityscapes frames for {flag} {' '.join(splits)} under {data_root / 'leftImg8bit'} "
                        f"(splits found: {', '.join(found) or 'none'}); pass {flag} with splits that exist")
    for path in labels:
        if not path.is_file():
            raise DataError(f"label map {path} is missing; restore gtFine or drop its split from {flag}")
    return images, labels


def cityscapes_source(data_root, train_splits: Sequence[str] = DEFAULT_TRAIN_SPLITS,
                      eval_splits: Sequence[str] = DEFAULT_EVAL_SPLITS, need_train: bool = True) -> DataSource:
    """Cityscapes-27 data source: training frames of `train_splits` (no labels needed), labelled
    evaluation frames of `eval_splits`; linear probe: `train` labels, scored on `val`."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DataError(f"--data_root {data_root} not found; give the Cityscapes root holding leftImg8bit/ and gtFine/")
    if not (data_root / "leftImg8bit").is_dir():
        raise DataError(f"image folder not found: {data_root / 'leftImg8bit'} (Cityscapes layout: "
                        "leftImg8bit/<split>/<city>/*_leftImg8bit.png)")
    # Scoring a stored classifier (need_train=False) reads only the evaluation splits.
    train_images = (_collect(data_root, train_splits, "--cityscapes_train_splits", with_labels=False)[0]
                    if need_train else [])
    val_images, val_labels = _collect(data_root, eval_splits, "--cityscapes_eval_splits", with_labels=True)
    # Linear probe: ground truth of `train`, scored on `val` (paths only; the probe checks them).
    probe_train = split_images(data_root, "train")
    probe_val = split_images(data_root, "val")
    return DataSource(
        name="cityscapes",
        eval_split="+".join(eval_splits),
        train_images=train_images,
        cluster_images=train_images,
        val_images=val_images,
        val_labels=val_labels,
        label_lut=label_lut(),
        class_names=list(CLASS_NAMES),
        probe_train_images=probe_train,
        probe_train_labels=[label_path(data_root, "train", p) for p in probe_train],
        probe_val_images=probe_val,
        probe_val_labels=[label_path(data_root, "val", p) for p in probe_val],
    )
