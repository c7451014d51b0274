"""The typed settings of a training run, built once from the parsed flags (config/from_args.py).

The settings of one part of the method live beside the code that takes them (modules/kmeans.py:
KMeansSettings, modules/evaluation.py: EvalSettings, data/transforms.py: AugmentConfig, ...);
here are those of the training run as a whole. Their fields have no defaults: the flag table
(config/flags.py) holds them, and settings_from_args fills every field.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from data.build import DataSettings
from data.transforms import AugmentConfig
from modules.evaluation import EvalSettings
from modules.kmeans import KMeansSettings
from modules.probe import ProbeSettings

@dataclass(frozen=True)
class ModelSettings:
    arch: str = "resnet18"
    feat_dim: Optional[int] = None     # None: the arch's (FPN width, or the ViT's embedding width)
    pretrain: bool = False
    pretrain_path: Optional[str] = None
    calibrate_bn_batches: int = 10     # -1 resolved: 10 from random init, 0 from pretrained weights or a ViT
    vit_head: str = "linear"           # ViT archs only (resolved --vit_head)
    freeze_backbone: bool = False      # ViT archs only


@dataclass(frozen=True)
class OptimSettings:
    optim_type: str = "Adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass(frozen=True)
class TrainSettings:
    """The training loop: method and its heads, epochs, batch sizes, loss options, feature cache."""

    method: str = "picie"
    aux_clusters: int = 0              # PiCIE+H's K_aux (0: plain PiCIE)
    nonparametric: bool = False
    num_epoch: int = 10
    batch_size_cluster: int = 256
    batch_size_train: int = 128
    l2_normalize: bool = True          # --metric_train cosine
    class_weights: str = "size"        # size (the original's), inverse or none (modules/loss.py)
    loss_terms: str = "within_cross"
    skip_nonfinite: bool = False
    feature_cache_bytes: float = 2.0 * 2 ** 30
    max_bad_fraction: float = 0.01
    res1: int = 320
    res2: int = 640
    photometric_res: str = "view"


@dataclass(frozen=True)
class RunSettings:
    """Everything a training run needs, as typed settings; built once from the parsed flags."""

    data: DataSettings
    augment: AugmentConfig
    model: ModelSettings
    optim: OptimSettings
    kmeans: KMeansSettings
    train: TrainSettings
    eval: EvalSettings
    probe: ProbeSettings
    seed: int = 1
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    num_workers: int = 4
    save_root: str = "results"
    run_name: str = "picie"
    restart: bool = False
    overwrite: bool = False
    keep_checkpoints: int = 0
    tensorboard: bool = False
    eval_init: bool = False
    record: Dict[str, Any] = field(default_factory=dict)   # the resolved flags, as config.json stores them
