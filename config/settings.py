"""The typed settings of a training run, of test_picie.py, of predict.py and of the tools, built
once from the parsed flags (config/from_args.py).

The settings of one part of the method live beside the code that takes them (modules/kmeans.py:
KMeansSettings, modules/evaluation.py: EvalSettings, data/transforms.py: AugmentConfig, ...);
here are those of a script's run as a whole. They live here, not beside their user, because
their users are the entry scripts, which nothing in config/ may import. Their fields have no
defaults: the flag table (config/flags.py) holds them, and from_args.py fills every field.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.build import DataSettings
from data.transforms import AugmentConfig
from modules.evaluation import EvalSettings
from modules.kmeans import KMeansSettings
from modules.objectives import ObjectiveSettings
from modules.probe import ProbeSettings
from modules.pseudo_labels import PseudoLabelSettings
from utils.fetch import FetchSettings

# test_picie.py's metrics file under --save_root (as sh_files/test_picie.sh writes it).
METRICS_NAME = "test_metrics.json"

@dataclass(frozen=True)
class ModelSettings:
    """The network (modules/networks.py: build_model)."""

    arch: str
    feat_dim: int | None            # None: the arch's (FPN width, or the ViT's embedding width)
    pretrain: bool
    pretrain_path: str | None
    calibrate_bn_batches: int          # -1 resolved: 10 from random init, 0 from pretrained weights or a ViT
    vit_head: str                      # ViT archs only (resolved --vit_head)
    freeze_backbone: bool              # ViT archs only


@dataclass(frozen=True)
class OptimSettings:
    optim_type: str
    lr: float
    weight_decay: float
    momentum: float


@dataclass(frozen=True)
class TrainSettings:
    """The training loop: epochs, batch sizes, views, loss options, feature cache, bad images."""

    num_epoch: int
    batch_size_cluster: int
    batch_size_train: int
    l2_normalize: bool                 # --metric_train cosine
    skip_nonfinite: bool
    feature_cache_bytes: float
    max_bad_fraction: float
    res1: int
    res2: int
    photometric_res: str


@dataclass(frozen=True)
class RunSettings:
    """Everything a training run needs, as typed settings; built once from the parsed flags."""

    data: DataSettings
    augment: AugmentConfig
    model: ModelSettings
    optim: OptimSettings
    objective: ObjectiveSettings
    kmeans: KMeansSettings
    train: TrainSettings
    eval: EvalSettings
    probe: ProbeSettings
    seed: int
    device: str
    precision: str
    deterministic: bool
    num_workers: int
    save_root: str
    run_name: str
    restart: bool
    overwrite: bool
    keep_checkpoints: int
    skip_memory_check: bool            # --skip_memory_check: no memory estimate before the run (config/memory.py)
    tensorboard: bool
    eval_init: bool
    record: dict[str, Any]             # the resolved flags, as config.json stores them

    @property
    def pseudo_labels(self) -> PseudoLabelSettings:
        """The settings of each epoch's clustering and labelling pass (modules/pseudo_labels.py)."""
        return PseudoLabelSettings(self.kmeans, self.seed, self.train.l2_normalize, self.train.feature_cache_bytes)


@dataclass(frozen=True)
class TestTarget:
    """test_picie.py before its checkpoint is read: what is scored and where the metrics go."""

    eval_path: str
    out: Path | None                # --out, else <--save_root>/test_metrics.json, else None (printed only)
    out_flag: str                      # the flag that chose `out`, named in its errors
    crf: bool                          # --crf: its package is checked before anything is read
    device: str
    precision: str
    deterministic: bool
    skip_memory_check: bool


@dataclass(frozen=True)
class TestSettings:
    """test_picie.py after its checkpoint is read: the protocol, the data and how it is scored."""

    target: TestTarget
    protocol: str                      # "stored classifier", "fresh k-means" (--recluster) or "linear_probe"
    eval: EvalSettings                 # res, classes and K_test resolved against the checkpoint
    data: DataSettings                 # the run's recorded data unless --data_root says otherwise
    data_record: dict[str, str]        # how the data root was chosen (from_args.recorded_data)
    probe: ProbeSettings
    k_test_unused: bool                # --K_test given without --recluster

    @property
    def reads_train_split(self) -> bool:
        """--recluster (fresh k-means) and --linear_probe (train labels) read the train images."""
        return self.protocol != "stored classifier"


@dataclass(frozen=True)
class PredictTarget:
    """predict.py before its checkpoint is read: the checkpoint, the inputs and the output folder."""

    eval_path: str
    inputs: tuple[str, ...]
    output: Path
    crf: bool
    device: str
    precision: str
    deterministic: bool


@dataclass(frozen=True)
class InvarianceSettings:
    """tools/invariance.py: the checkpoints measured, on how many val images, and the view sizes."""

    checkpoints: tuple[Path, ...]      # checkpoint files (a run folder given: its checkpoint.pth)
    n_images: int
    res1: int | None                # None: each checkpoint's own (the training default where it records none)
    res2: int | None
    seed: int
    out: Path | None                # OUT.md (the table) and OUT.json (the numbers)
    device: str
    precision: str
    deterministic: bool


@dataclass(frozen=True)
class VisualizeSettings:
    """tools/visualize.py: what is drawn (the checkpoint's classifier on val images) and where."""

    eval: EvalSettings                 # res and classes resolved against the checkpoint, as test_picie.py's
    data: DataSettings
    data_record: dict[str, str]        # how the data root was chosen (from_args.recorded_data)
    n_images: int
    out_dir: Path                      # --out_dir, else <checkpoint folder>/cluster_maps
    classifier: str                    # view1 or view2
    matching: str                      # hungarian or majority
    device: str
    precision: str
    deterministic: bool


# The tools' settings (tools/*.py): each tool declares its own flags beside its work, and
# from_args.py turns them into one of these.

@dataclass(frozen=True)
class FigureSettings:
    """tools/make_figures.py: the demo root and trained checkpoint, the COCO-Stuff root, where the PNGs go,
    how many images per cluster-map figure, the untrained network's seed, k-means iterations, the device."""

    demo_root: Path
    checkpoint: Path
    coco_root: Path
    out: Path | None                   # --out; None: figures/ beside the checkpoint, or the docs' with to_docs
    to_docs: bool                      # --docs: the repository's docs/figures
    n_images: int
    seed: int
    kmeans_iter: int
    coco_res: int
    device: str


@dataclass(frozen=True)
class DemoDataSettings:
    """tools/make_demo.py: where the synthetic demo set goes, its size and seed (a preset's with --preset)."""

    root: Path
    n_train: int
    n_val: int
    seed: int
    overwrite: bool


@dataclass(frozen=True)
class SeedSummarySettings:
    """tools/seed_summary.py: the run folders, the reference row, tools.invariance's result, the output."""

    runs: tuple[Path, ...]
    reference: str | None
    invariance: Path | None
    out: Path | None                   # OUT.md, OUT.csv (and OUT_invariance.csv); None: print only


@dataclass(frozen=True)
class CompareSettings:
    """tools/compare_runs.py: the run folders, the report folder and its title."""

    runs: tuple[Path, ...]
    out: Path
    title: str


@dataclass(frozen=True)
class HoldoutSettings:
    """tools/make_holdout.py: the source root, the hold-out root, its size (a count or a fraction), the seed."""

    data_root: Path
    out: Path
    n_holdout: int | None
    fraction: float | None
    seed: int


@dataclass(frozen=True)
class CuratedSettings:
    """tools/make_curated.py: the COCO-Stuff root, the splits, the IIC rule's thresholds, workers, output."""

    data_root: Path
    splits: tuple[str, ...]
    min_size: int
    min_stuff_frac: float
    workers: int
    out_dir: Path                      # --out_dir, else --data_root


@dataclass(frozen=True)
class DatasetPrepSettings:
    """tools/get_coco.py and tools/get_cityscapes.py: the archives and the root (utils/fetch.py: FetchSettings),
    the images each split must hold, and (COCO-Stuff) the folder of the curated lists."""

    fetch: FetchSettings
    counts: dict[str, int]             # split -> images: the published counts, or --expect_counts
    curated: Path | None


@dataclass(frozen=True)
class MutationSettings:
    """tools/mutation_check.py: list only, or run the mutations whose name contains `match`."""

    list_only: bool
    match: str
