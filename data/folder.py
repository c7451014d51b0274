"""Any folder of images (`--dataset folder --data_root DIR`): every *.jpg / *.jpeg / *.png under
DIR, recursively, any size (each is resized and center-cropped like COCO images). No labels are
needed to train; evaluation runs only when `--label_root` holds label PNGs with the images'
file stems and `--n_classes` says how many classes they use:

    DIR/any/sub/folder/<name>.jpg          training image (also clustered by the final evaluation)
    LABEL_ROOT/any/sub/folder/<name>.png   its label map: uint8 class ids 0..n_classes-1,
                                           every other value (e.g. 255) ignored

A label is looked up at the image's relative path first, then by file stem anywhere under
LABEL_ROOT (when that stem is unique there). Labelled images are both clustered and evaluated,
the usual setting of unsupervised segmentation on a single image collection.
"""
import logging
from pathlib import Path

import numpy as np

from data.source import DataSource
from data.validation import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under `root` (recursive, suffix case ignored), sorted; files under `exclude`
    (a label folder inside the image folder) are left out."""
    exclude = exclude.resolve() if exclude is not None else None
    images = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude):
            continue
        images.append(path)
    return images


def folder_lut(n_classes: int) -> np.ndarray:
    """int16 [256]: values 0..n_classes-1 are classes, the rest is ignored (-1)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:n_classes] = np.arange(n_classes, dtype=np.int16)
    return lut


def match_labels(images: list[Path], image_root: Path, label_root: Path) -> dict[Path, Path]:
    """image -> label PNG: same relative path with .png, else the unique PNG with the same stem."""
    by_stem: dict[str, list[Path]] = {}
    for path in label_root.rglob("*"):
        if path.suffix.lower() == ".png" and path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    matched = {}
    for image in images:
        same_place = label_root / image.relative_to(image_root).with_suffix(".png")
        if same_place.is_file():
            matched[image] = same_place
        elif len(by_stem.get(image.stem, ())) == 1:
            matched[image] = by_stem[image.stem][0]
    return matched


def folder_source(data_root, label_root=None, n_classes: int | None = None) -> DataSource:
    """Data source of an image folder; labelled evaluation only with label_root and n_classes."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise DataError(f"--data_root {data_root} is not a folder; give the folder of images for --dataset folder")
    label_root = Path(label_root) if label_root is not None else None
    if label_root is not None and not label_root.is_dir():
        raise DataError(f"--label_root {label_root} is not a folder; give the folder of label PNGs or leave it out")
    images = find_images(data_root, exclude=label_root)
    if not images:
        raise DataError(f"no images ({', '.join('*' + s for s in IMAGE_SUFFIXES)}) under --data_root {data_root} "
                        "(searched recursively); point it at a folder of images")
    source = DataSource(name="folder", train_images=images, cluster_images=images, val_images=[],
                        val_labels=None, label_lut=None, class_names=[])
    if label_root is None:
        return source
    if n_classes is None:
        raise DataError("--label_root needs --n_classes (the number of classes the label maps use)")
    matched = match_labels(images, data_root, label_root)
    if not matched:
        raise DataError(f"no label PNG under --label_root {label_root} has the file stem of an image under "
                        f"{data_root} (e.g. {images[0].stem}.png for {images[0].name})")
    if len(matched) < len(images):
        log.warning("%d of %d images under %s have no label map in %s; evaluating on the %d that do",
                    len(images) - len(matched), len(images), data_root, label_root, len(matched))
    source.eval_split = str(label_root)
    source.val_images = [image for image in images if image in matched]
    source.val_labels = [matched[image] for image in source.val_images]
    source.label_lut = folder_lut(n_classes)
    source.class_names = [f"class_{i}" for i in range(n_classes)]
    return source
