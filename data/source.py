"""What every data source provides to training and evaluation."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class DataSource:
    """File lists and label mapping of one dataset.

    train_images:   images the two views are made from (clustering + training passes);
    cluster_images: images the final evaluation clusters afresh (no augmentation);
    val_images / val_labels: labelled evaluation images (labels None: no evaluation);
    label_lut:      int16 [256] raw label value -> class (-1 ignored);
    class_names:    evaluation class names, index = class id;
    eval_split:     what the evaluation images are (e.g. val2017), recorded with every score;
    label_set:      which label set the classes are (e.g. COCO-Stuff-171), recorded with every score
                    ("" where the dataset has one only);
    thing_classes / stuff_classes: class ids the thing and stuff mIoU average over (() = not reported);
    label_valid:    bool [256], the raw label values the dataset defines (None: not checked);
                    others are an error, or unlabelled with --bad_labels fix.
    probe_*:        labelled images of the supervised linear probe (test_picie.py --linear_probe):
                    train images with their ground truth, and the images it is scored on
                    (None: val_images / val_labels). Label paths are not checked until a probe runs.
    """

    name: str
    train_images: list[Path]
    cluster_images: list[Path]
    val_images: list[Path]
    val_labels: list[Path] | None
    label_lut: np.ndarray | None
    class_names: list[str]
    eval_split: str = ""
    label_set: str = ""
    thing_classes: tuple[int, ...] = ()
    stuff_classes: tuple[int, ...] = ()
    label_valid: np.ndarray | None = None
    probe_train_images: list[Path] | None = None
    probe_train_labels: list[Path] | None = None
    probe_val_images: list[Path] | None = None
    probe_val_labels: list[Path] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_labels(self) -> bool:
        return self.val_labels is not None and len(self.val_images) > 0
