"""The network f: ResNet backbone + FPN decoder (the "PanopticFPN" feature extractor of PiCIE).

The network maps an image batch [B, 3, H, W] to per-pixel features [B, C, H/4, W/4]:
the four ResNet stages (strides 4, 8, 16, 32) each get a 1x1 lateral conv to C channels,
and the top-down path upsamples the coarser sum bilinearly (align_corners=False) and adds
it to the next finer lateral. No ReLU and no 3x3 smoothing conv, as in the paper's code.

Also here: building the network of an --arch (ImageNet weights through torchvision's weights API
or a local file; the ViT archs are built by modules/vit.py), rebuilding either kind from a
checkpoint's model config, features in float32 under the run's autocast, and setting the
BatchNorm statistics of a randomly initialised network.

Every network answers the same two questions: `stride` (input pixels per feature cell: 4 here,
the patch size 8, 14 or 16 for a ViT) and `feat_dim` (channels C of its features).
"""
import os
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from data.transforms import ViewMaker
from modules.vit import VIT_ARCHS, ViTConfig, ViTFeatures, build_vit
from utils.checkpoint import CheckpointError, state_dict_differences
from utils.errors import PretrainError, UserError
from utils.runtime import Runtime

# Lateral input channels of layer1..layer4 for each supported ResNet.
_STAGE_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    # Not a paper network: ResNet-18's layout (basic blocks, 2-2-2-2, strides 4-32) with narrow stages,
    # 0.25M parameters instead of 11.3M, random init only. Its checkpoints are 40x smaller and its epochs
    # faster, which is what a smoke run (--preset tiny) and the tests need. No stage narrower than 16:
    # oneDNN's CPU backward of 8-channel convolutions crashes on channels-last batches of odd size (torch 2.14).
    "resnet18_tiny": (16, 32, 32, 64),
}
# The original sets the FPN width by depth: 128 for the basic-block nets, 256 for bottleneck nets.
_DEFAULT_FEAT_DIM = {"resnet18": 128, "resnet34": 128, "resnet50": 256, "resnet101": 256, "resnet18_tiny": 128}
# torchvision weight enums, looked up by name so that a missing enum never breaks import.
_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}
ARCHS = tuple(_STAGE_CHANNELS)


@dataclass
class FPNConfig:
    """Everything needed to rebuild the network from a checkpoint."""

    arch: str = "resnet18"
    feat_dim: Optional[int] = None  # None: the architecture's default (128 or 256)

    def resolved(self) -> "FPNConfig":
        if self.arch not in _STAGE_CHANNELS:
            raise UserError(f"unknown --arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        return FPNConfig(self.arch, self.feat_dim or _DEFAULT_FEAT_DIM[self.arch])

    def to_dict(self) -> dict:
        return asdict(self.resolved())


class FPNDecoder(nn.Module):
    """Top-down FPN: 1x1 laterals on each stage, upsample-and-add from coarse to fine."""

    def __init__(self, stage_channels, feat_dim: int):
        super().__init__()
        # lateral<i> reads backbone layer<i> (lateral4 is the stride-32 map).
        self.lateral1 = nn.Conv2d(stage_channels[0], feat_dim, 1)
        self.lateral2 = nn.Conv2d(stage_channels[1], feat_dim, 1)
        self.lateral3 = nn.Conv2d(stage_channels[2], feat_dim, 1)
        self.lateral4 = nn.Conv2d(stage_channels[3], feat_dim, 1)

    @staticmethod
    def _upsample_add(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine

    def forward(self, c1, c2, c3, c4):
        out = self.lateral4(c4)
        out = self._upsample_add(out, self.lateral3(c3))
        out = self._upsample_add(out, self.lateral2(c2))
        return self._upsample_add(out, self.lateral1(c1))


class ResNetFPN(nn.Module):
    """ResNet-18/34/50/101 + FPN. Input [B, 3, H, W] -> features [B, feat_dim, H/4, W/4]."""

    stride = 4  # input pixels per feature-map cell (the FPN's finest level, ResNet layer1)

    def __init__(self, config: FPNConfig):
        super().__init__()
        self.config = config.resolved()
        self.backbone = _resnet_backbone(self.config.arch)
        self.decoder = FPNDecoder(_STAGE_CHANNELS[self.config.arch], self.config.feat_dim)
        # Where the backbone weights came from (set by build_model / model_from_checkpoint), for logs;
        # ViTFeatures has the same attribute.
        self.weights_source = "random initialisation"

    @property
    def feat_dim(self) -> int:
        return self.config.feat_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net.maxpool(F.relu(net.bn1(net.conv1(images))))  # the stem's ReLU holds no state
        c1 = net.layer1(x)
        c2 = net.layer2(c1)
        c3 = net.layer3(c2)
        c4 = net.layer4(c3)
        return self.decoder(c1, c2, c3, c4)

    def load_backbone_state(self, state_dict: dict, source: str) -> None:
        """Load torchvision ResNet weights (classifier head ignored) into the backbone."""
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = self.backbone.load_state_dict(state_dict, strict=False)
        except RuntimeError:  # shape mismatch: another depth of ResNet
            missing, unexpected = ["(tensor shapes differ)"], []
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise PretrainError(
                f"{source} is not a torchvision {self.config.arch} state dict "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); pass a matching --arch or file"
            )


def _resnet_backbone(arch: str) -> nn.Module:
    """The ResNet of `arch` without its classifier: conv1, bn1, maxpool, layer1..layer4.

    The paper's depths are torchvision's ResNets, whose module names torchvision's and the original
    PiCIE's weights load into unchanged. resnet18_tiny is timm's ResNet with ResNet-18's blocks, its
    64-channel stem and 16-32-32-64-wide stages (the same module names for conv1, bn1, maxpool and
    the layers; each block's last BatchNorm not zeroed, as in torchvision's init)."""
    if arch == "resnet18_tiny":
        from timm.models.resnet import BasicBlock, ResNet
        return ResNet(BasicBlock, (2, 2, 2, 2), channels=_STAGE_CHANNELS[arch], num_classes=0, global_pool="",
                      zero_init_last=False)
    resnet = getattr(torchvision.models, arch)(weights=None)
    resnet.fc = nn.Identity()
    resnet.avgpool = nn.Identity()
    return resnet


def imagenet_weights_file(arch: str) -> tuple:
    """(download URL, path in torch's hub cache) of torchvision's ImageNet weights for `arch`."""
    weights = getattr(torchvision.models, _WEIGHTS[arch]).IMAGENET1K_V1
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return weights.url, cache


def build_model(arch: str = "resnet18", feat_dim: Optional[int] = None, pretrain: bool = False,
                pretrain_path: Optional[str] = None, vit_head: str = "linear",
                freeze_backbone: bool = False) -> nn.Module:
    """The network of `arch`: a ResNet-FPN, or for a ViT arch (modules.vit.VIT_ARCHS) a ViTFeatures
    with head `vit_head` to `feat_dim` channels (None: the backbone's width), its backbone frozen
    with `freeze_backbone`. Either has `stride` and `feat_dim`.

    `pretrain_path` (a local weights file: a torchvision state dict for a ResNet, a DINO / DINOv2 /
    DINOv3 / timm one for a ViT) wins over `pretrain` (the official weights, downloaded into
    torch's hub cache unless the file is already there; never for DINOv3, whose licence leaves the
    download to the user). A ViT without either stays randomly initialised, with a UserWarning.
    """
    if arch not in ARCHS:
        if arch in VIT_ARCHS:
            return build_vit(arch, out_dim=feat_dim, head=vit_head, freeze_backbone=freeze_backbone, pretrain=pretrain,
                             pretrain_path=pretrain_path)
        raise UserError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS + VIT_ARCHS)}")
    if freeze_backbone:
        raise UserError(f"--freeze_backbone applies to the ViT archs, not --arch {arch}")
    model = ResNetFPN(FPNConfig(arch, feat_dim))
    if pretrain_path:
        if not os.path.isfile(pretrain_path):
            raise PretrainError(f"--pretrain_path {pretrain_path} does not exist; give a torchvision "
                                f"{arch} state dict (.pth)")
        try:
            state = torch.load(pretrain_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise PretrainError(f"--pretrain_path {pretrain_path} could not be read ({exc.__class__.__name__}); "
                                f"give a torchvision {arch} state dict saved with torch.save") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_backbone_state(state, f"--pretrain_path {pretrain_path}")
        model.weights_source = f"--pretrain_path {pretrain_path}"
    elif pretrain:
        if arch not in _WEIGHTS:
            raise UserError(f"--arch {arch} has no ImageNet weights; train it from random init (--no-pretrain)")
        url, cache = imagenet_weights_file(arch)
        weights = getattr(torchvision.models, _WEIGHTS[arch]).IMAGENET1K_V1
        try:
            state = weights.get_state_dict(progress=False, check_hash=False)
        except Exception as exc:  # noqa: BLE001 - offline machines fail in many ways
            raise PretrainError(
                f"--pretrain could not fetch ImageNet weights ({exc.__class__.__name__}); download {url} "
                f"to {cache} (or anywhere, then pass --pretrain_path FILE)"
            ) from None
        model.load_backbone_state(state, url)
        model.weights_source = f"ImageNet ({url})"
    return model


def model_from_checkpoint(ckpt: dict, device: Optional[torch.device] = None) -> nn.Module:
    """The network of a checkpoint (either format, as load_checkpoint returns it), weights loaded.

    A ViT checkpoint's model_config is ViTConfig.to_dict()'s (arch, out_dim, head, frozen, patch
    size, ...): the network is rebuilt from it and takes every weight from the checkpoint, so no
    weights file or download is needed."""
    config = ckpt["model_config"]
    arch = config.get("arch")
    if arch in ARCHS:
        model = ResNetFPN(FPNConfig(arch, config["feat_dim"]))
        kind = f"a {arch} FPN"
    else:
        if arch not in VIT_ARCHS:
            raise CheckpointError(f"checkpoint network --arch {arch!r} is unknown to this toolkit (it builds "
                                  f"{', '.join(ARCHS + VIT_ARCHS)}); use the toolkit version that wrote it")
        try:
            vit_config = ViTConfig.from_dict(config)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint model_config does not describe a {arch}: {exc}") from None
        model = ViTFeatures(vit_config)
        kind = f"a {arch} with head {vit_config.head}"
    differences = state_dict_differences(model.state_dict(), ckpt["model"])
    if differences:
        # Named here: torch's own message starts with a line that names nothing.
        raise CheckpointError(f"checkpoint weights do not fit {kind}: {differences}; the file was changed after "
                              "it was written, or comes from another version of this toolkit")
    model.load_state_dict(ckpt["model"])
    model.weights_source = "the checkpoint"
    return model.to(device) if device is not None else model


def forward_features(model, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Network features in float32: images [B, 3, H, W] -> [B, C, H/s, W/s], s = model.stride."""
    with runtime.autocast():
        feats = model(runtime.to_device(images) if images.device != runtime.device else images)
    return feats.float()


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the network has BatchNorm layers (a ResNet does; a ViT and its head do not)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def calibrate_batchnorm(model, loader, view_maker: ViewMaker, runtime: Runtime, n_batches: int) -> int:
    """Set BatchNorm running statistics to the average over `n_batches` batches of un-augmented
    training images (resized to res1). A randomly initialised network carries the default
    statistics (mean 0, var 1), which are wrong for every layer; since clustering runs the
    network in eval mode (fixing the original's train-mode pass), it needs real statistics.
    Returns the number of images used (0 for a network without BatchNorm, e.g. a ViT)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or n_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    n_images = 0
    with torch.no_grad():
        for step, batch in enumerate(loader):
            if step >= n_batches:
                break
            if batch.indices.numel() == 0:
                continue
            images = view_maker.plain_view(batch.images.to(runtime.device, non_blocking=True))
            forward_features(model, runtime.to_device(images), runtime)
            n_images += batch.indices.numel()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return n_images
