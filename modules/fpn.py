"""The network f: ResNet backbone + FPN decoder (the "PanopticFPN" feature extractor of PiCIE).

The network maps an image batch [B, 3, H, W] to per-pixel features [B, C, H/4, W/4]:
the four ResNet stages (strides 4, 8, 16, 32) each get a 1x1 lateral conv to C channels,
and the top-down path upsamples the coarser sum bilinearly (align_corners=False) and adds
it to the next finer lateral. No ReLU and no 3x3 smoothing conv, as in the paper's code.

Building it (ImageNet weights, a local file) and every other network: modules/networks.py.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.errors import PretrainError, UserError

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
ARCHS = tuple(_STAGE_CHANNELS)


@dataclass
class FPNConfig:
    """Everything needed to rebuild the network from a checkpoint."""

    arch: str
    feat_dim: int | None = None  # None: the architecture's default (128 or 256)

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
