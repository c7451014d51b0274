"""The networks f of every --arch: built (with their weights), rebuilt from a checkpoint, run.

A ResNet-18/34/50/101 + FPN decoder (modules/fpn.py), or a DINO / DINOv2 / DINOv3 ViT with a head
(modules/vit.py). Every network answers the same two questions: `stride` (input pixels per
feature cell: 4 for the FPN, the patch size 8, 14 or 16 for a ViT; `feature_stride` knows it
before the network is built) and `feat_dim` (channels C of its features). Also here: features
in float32 under the run's autocast, and setting the BatchNorm statistics of a randomly
initialised network.
"""
import os

import torch
import torchvision
from torch import nn

from data.transforms import ViewMaker
from modules.fpn import ARCHS, FPNConfig, ResNetFPN
from modules.vit import ARCH_TABLE, VIT_ARCHS, ViTConfig, ViTFeatures, build_vit
from utils.checkpoint import CheckpointError, state_dict_differences
from utils.errors import PretrainError, UserError
from utils.memory import NetworkCost
from utils.runtime import Runtime

# torchvision weight enums, looked up by name so that a missing enum never breaks import.
_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}


def feature_stride(arch: str) -> int:
    """Input pixels per feature cell of the network of --arch: 4 for the ResNet-FPN, the patch size
    for a ViT (the network's `stride`, known here before it is built)."""
    return ARCH_TABLE[arch].patch_size if arch in VIT_ARCHS else ResNetFPN.stride


def imagenet_weights_file(arch: str) -> tuple:
    """(download URL, path in torch's hub cache) of torchvision's ImageNet weights for `arch`."""
    weights = getattr(torchvision.models, _WEIGHTS[arch]).IMAGENET1K_V1
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return weights.url, cache


def build_model(arch: str, feat_dim: int | None = None, pretrain: bool = False,
                pretrain_path: str | None = None, vit_head: str = "linear",
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


def model_from_checkpoint(ckpt: dict, device: torch.device | None = None) -> nn.Module:
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
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return n_images


def network_cost(model: nn.Module, probe_cells: int = 8) -> NetworkCost:
    """What utils/memory.py's estimates need of `model`: stride, feature width, parameter counts
    and the float32 bytes every layer outputs in one forward pass, per input pixel, measured by a
    forward pass of one (probe_cells x stride)-pixel square image (no gradients; the network's
    mode, BatchNorm statistics included, is left as it was). Outputs of leaf modules are summed,
    which is what autograd keeps for the backward pass, up to the calibration of utils/memory.py."""
    side = probe_cells * model.stride
    total = [0]

    def count(module, inputs, output):
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(tensor):
                total[0] += tensor.numel() * 4

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    params = list(model.parameters())
    return NetworkCost(stride=model.stride, feat_dim=model.feat_dim, n_params=sum(p.numel() for p in params),
                       n_trained=sum(p.numel() for p in params if p.requires_grad),
                       activation_bytes_per_pixel=total[0] / side ** 2)
