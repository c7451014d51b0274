"""COCO-Stuff in the layout of the original PiCIE README, under --data_root:

    images/{train2017,val2017}/<12-digit id>.jpg
    annotations/{train2017,val2017}/<id>.png        stuffthingmaps (0..181 fine, 255 unlabeled)
    curated/{train2017,val2017}/Coco164kFull_Stuff_Coarse_7.txt
    fine_to_coarse_dict.pickle                      optional; the built-in table otherwise

Evaluated on the 27 coarse classes (the paper's) or, with --coco_classes 171, on the 171 fine
classes (data/cocostuff_classes.py); both read the same images, labels and curated lists.
"""
from pathlib import Path

import numpy as np

from data.cocostuff_classes import (
    DEFAULT_LABEL_SET,
    N_FINE,
    UNLABELED,
    class_names,
    coarse_lut,
    fine171_lut,
    fine171_names,
    group_classes,
    label_set_name,
    load_fine_to_coarse,
)
from data.source import DataSource
from data.validation import DataError

CURATED_NAME = "Coco164kFull_Stuff_Coarse_7.txt"
_FIX = "(the expected layout: docs/datasets.md)"


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} {_FIX}")
    return path


def read_curated_ids(data_root: Path, split: str) -> list[str]:
    """Image ids of the curated list of `split`, in file order."""
    path = data_root / "curated" / split / CURATED_NAME
    if not path.is_file():
        raise DataError(f"curated list not found: {path}; create it with "
                        f"'python -m tools.make_curated --data_root {data_root}' or pass --fullcoco")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"curated list {path} is empty; regenerate it with python -m tools.make_curated")
    return ids


def coco_split_files(data_root: Path, split: str, fullcoco: bool = False,
                     with_labels: bool = True) -> tuple[list[Path], list[Path]]:
    """(image paths, label paths) of a split: the curated list, or every image with `fullcoco`."""
    data_root = Path(data_root)
    _require_dir(data_root, "--data_root")
    image_dir = _require_dir(data_root / "images" / split, "image folder")
    label_dir = data_root / "annotations" / split
    if with_labels:
        _require_dir(label_dir, "label folder")
    if fullcoco:
        # One listing of the folder: a glob per id would read the folder once per image (118,287 times).
        by_id = {p.stem: p for p in sorted(image_dir.iterdir(), reverse=True)
                 if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        if not by_id:
            raise DataError(f"no images (*.jpg, *.png) in {image_dir} {_FIX}")
        ids = sorted(by_id)
        image_paths = [by_id[i] for i in ids]
    else:
        ids = read_curated_ids(data_root, split)
        image_paths = [image_dir / f"{i}.jpg" for i in ids]
        for path in image_paths:
            if not path.is_file():
                raise DataError(f"image {path} listed in curated/{split}/{CURATED_NAME} does not exist; "
                                "restore the file or regenerate the list with python -m tools.make_curated")
    label_paths = [label_dir / f"{i}.png" for i in ids]
    if with_labels:
        for path in label_paths:
            if not path.is_file():
                raise DataError(f"label map {path} is missing for image {path.stem}; restore it or "
                                "regenerate the curated list with python -m tools.make_curated")
    return image_paths, label_paths


def build_cocostuff(data_root, stuff: bool = True, thing: bool = True, fullcoco: bool = False,
                    train_split: str = "train2017", val_split: str = "val2017", need_train: bool = True,
                    coco_classes: int = DEFAULT_LABEL_SET) -> DataSource:
    """COCO-Stuff-27 (or Stuff-15 / Thing-12) data source; coco_classes=171: COCO-Stuff-171 (or its
    91 stuff / 80 thing classes) on the same images. need_train=False (scoring a stored
    classifier) reads only the evaluation split: a root with val images and labels is enough."""
    data_root = Path(data_root)
    if not (stuff or thing):
        raise DataError("choose the evaluated classes: --stuff, --thing or both")
    if coco_classes == 171:
        # The fine labels are the classes: fine_to_coarse_dict.pickle plays no part, and is not read.
        label_lut, names = fine171_lut(stuff, thing), fine171_names(stuff, thing)
    else:
        try:
            table = load_fine_to_coarse(data_root)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        label_lut, names = coarse_lut(table, stuff, thing), class_names(stuff, thing)
    # Training needs no labels; the linear probe reads the train split's (checked when it runs).
    train_images, train_labels = (coco_split_files(data_root, train_split, fullcoco, with_labels=False)
                                  if need_train else ([], []))
    # The final evaluation clusters the (curated) train images without augmentation.
    val_images, val_labels = coco_split_files(data_root, val_split, fullcoco=False, with_labels=True)
    thing_classes, stuff_classes = group_classes(coco_classes, stuff, thing)
    return DataSource(
        name="cocostuff",
        eval_split=val_split,
        label_set=label_set_name(coco_classes),
        thing_classes=thing_classes,
        stuff_classes=stuff_classes,
        train_images=train_images,
        cluster_images=train_images,
        val_images=val_images,
        val_labels=val_labels,
        label_lut=label_lut,
        class_names=names,
        label_valid=stuffthingmaps_values(),
        probe_train_images=train_images,
        probe_train_labels=train_labels,
    )


def stuffthingmaps_values() -> np.ndarray:
    """bool [256]: the values a stuffthingmaps PNG may hold, fine classes 0..181 and 255 (unlabelled)."""
    valid = np.zeros(256, dtype=bool)
    valid[:N_FINE] = True
    valid[UNLABELED] = True
    return valid
