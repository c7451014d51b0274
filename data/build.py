"""Pick the data source named by the flags and build its datasets."""
from data.cocostuff import build_cocostuff
from data.datasets import EvalImages, TrainImages
from data.source import DataSource


def build_source(args) -> DataSource:
    """The DataSource of --dataset (cocostuff, cityscapes or folder)."""
    source = _build_source(args)
    repeats = getattr(args, "train_list_repeats", 1)
    if repeats > 1:
        source.train_images = source.train_images * repeats
    return source


def _build_source(args) -> DataSource:
    if args.dataset == "cocostuff":
        return build_cocostuff(args.data_root, stuff=args.stuff, thing=args.thing, fullcoco=args.fullcoco)
    if args.dataset == "cityscapes":
        from data.cityscapes import build_cityscapes  # noqa: PLC0415 - optional source
        return build_cityscapes(args)
    if args.dataset == "folder":
        from data.folder import build_folder  # noqa: PLC0415 - optional source
        return build_folder(args)
    raise ValueError(f"unknown --dataset {args.dataset!r}")


def train_dataset(source: DataSource, res2: int) -> TrainImages:
    return TrainImages(source.train_images, res2)


def cluster_dataset(source: DataSource, res: int) -> EvalImages:
    """Un-augmented train images for the final evaluation's fresh k-means (labels not needed);
    unreadable ones are skipped with a warning, as in training."""
    return EvalImages(source.cluster_images, res, skip_unreadable=True)


def val_dataset(source: DataSource, res: int, bad_labels: str = "error") -> EvalImages:
    return EvalImages(source.val_images, res, source.val_labels, source.label_lut, label_policy=bad_labels,
                      label_valid=source.label_valid)
