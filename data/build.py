"""Pick the data source named by the data settings and build its datasets."""
from dataclasses import dataclass

from data.cityscapes import DEFAULT_EVAL_SPLITS, DEFAULT_TRAIN_SPLITS, cityscapes_source
from data.cocostuff import build_cocostuff
from data.cocostuff_classes import DEFAULT_LABEL_SET
from data.datasets import EvalImages, TrainImages
from data.folder import folder_source
from data.source import DataSource
from data.validation import DEFAULT_BAD_LABELS, DataError

DATASETS = ("cocostuff", "cityscapes", "folder")


@dataclass(frozen=True)
class DataSettings:
    """Which data: --dataset and its root, the COCO-Stuff label set (27 or 171 classes) and its
    evaluated groups (stuff, thing), the curated or full COCO train list, Cityscapes splits, a
    folder's labels."""

    dataset: str = "cocostuff"
    data_root: str = "datasets/coco"
    stuff: bool = True
    thing: bool = True
    fullcoco: bool = False
    coco_classes: int = DEFAULT_LABEL_SET   # COCO-Stuff label set: 27 coarse classes or the 171 fine ones
    cityscapes_train_splits: tuple[str, ...] = DEFAULT_TRAIN_SPLITS
    cityscapes_eval_splits: tuple[str, ...] = DEFAULT_EVAL_SPLITS
    label_root: str | None = None
    n_classes: int | None = None
    train_list_repeats: int = 1
    need_train: bool = True            # False: scoring a stored classifier needs only the evaluation split


def build_source(settings: DataSettings) -> DataSource:
    """The DataSource of --dataset (cocostuff, cityscapes or folder)."""
    if settings.dataset == "cocostuff":
        source = build_cocostuff(settings.data_root, stuff=settings.stuff, thing=settings.thing,
                                 fullcoco=settings.fullcoco, need_train=settings.need_train,
                                 coco_classes=settings.coco_classes)
    elif settings.dataset == "cityscapes":
        source = cityscapes_source(settings.data_root, settings.cityscapes_train_splits,
                                   settings.cityscapes_eval_splits, need_train=settings.need_train)
    elif settings.dataset == "folder":
        source = folder_source(settings.data_root, settings.label_root, settings.n_classes)
    else:
        raise DataError(f"unknown --dataset {settings.dataset!r}; choose from {', '.join(DATASETS)}")
    if settings.train_list_repeats > 1:
        source.train_images = source.train_images * settings.train_list_repeats
    return source


def train_dataset(source: DataSource, res2: int) -> TrainImages:
    return TrainImages(source.train_images, res2)


def cluster_dataset(source: DataSource, res: int) -> EvalImages:
    """Un-augmented train images for the final evaluation's fresh k-means (labels not needed);
    unreadable ones are skipped with a warning, as in training."""
    return EvalImages(source.cluster_images, res, skip_unreadable=True)


def val_dataset(source: DataSource, res: int, bad_labels: str = DEFAULT_BAD_LABELS) -> EvalImages:
    return EvalImages(source.val_images, res, source.val_labels, source.label_lut, label_policy=bad_labels,
                      label_valid=source.label_valid)
