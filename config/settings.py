"""The typed settings of a training run, built once from the parsed flags (config/from_args.py).

The settings of one part of the method live beside the code that takes them (modules/kmeans.py:
KMeansSettings, modules/evaluation.py: EvalSettings, data/transforms.py: AugmentConfig, ...);
here are those of the training run as a whole. Their fields have no defaults: the flag table
(config/flags.py) holds them, and settings_from_args fills every field.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional

from data.build import DataSettings
from data.transforms import AugmentConfig
from modules.evaluation import EvalSettings
from modules.kmeans import KMeansSettings
from modules.objectives import ObjectiveSettings
from modules.probe import ProbeSettings
from modules.pseudo_labels import PseudoLabelSettings

@dataclass(frozen=True)
class ModelSettings:
    """The network (modules/networks.py: build_model)."""

    arch: str
    feat_dim: Optional[int]            # None: the arch's (FPN width, or the ViT's embedding width)
    pretrain: bool
    pretrain_path: Optional[str]
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
    record: Dict[str, Any]             # the resolved flags, as config.json stores them

    @property
    def pseudo_labels(self) -> PseudoLabelSettings:
        """The settings of each epoch's clustering and labelling pass (modules/pseudo_labels.py)."""
        return PseudoLabelSettings(self.kmeans, self.seed, self.train.l2_normalize, self.train.feature_cache_bytes)
