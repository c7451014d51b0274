"""Self-supervised ViT backbones (DINO, DINOv2, DINOv3) as dense feature extractors for PiCIE.

`ViTFeatures` maps an ImageNet-normalised image batch [B, 3, H, W] (H and W multiples of the patch
size p) to per-patch features [B, C, H/p, W/p]: the last block's patch tokens after the final
LayerNorm (what STEGO and HP train their heads on), without the CLS token and without DINOv3's four
register ("storage") tokens, reshaped to the patch grid. The backbones are timm's implementations,
built without weights; `load_vit_weights` reads a local file in the official DINO, DINOv2 hub or
DINOv3 layout or in timm's own, and `download_official_weights` fetches the official files where
their licence allows it (DINO, DINOv2; never DINOv3).

Optional head (trained while the backbone may stay frozen): a 1x1 conv projection to `out_dim`,
optionally plus STEGO's nonlinear branch (1x1 conv, ReLU, 1x1 conv) added to it.
"""
import argparse
import os
import re
import warnings
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
from torch import nn

from utils.errors import PretrainError


class ViTArch(NamedTuple):
    timm_name: str
    patch_size: int
    embed_dim: int
    family: str  # "dino", "dinov2" or "dinov3": decides the checkpoint layouts and the converter
    url: str | None  # official weights; None where the licence forbids fetching them for the user
    filename: str  # the official file's name (for DINOv3: the name Meta's download e-mail gives)


_DINO = "https://dl.fbaipublicfiles.com/dino/"
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2/"
# Our names are the official releases' names (torch.hub entry points of facebookresearch/dino,
# dinov2 and dinov3). DINOv3 uses timm's "_qkvb" variants: the official S/16 and B/16 have a
# q/v bias (the k bias is masked to zero), and a model with a bias parameter represents both a
# zero and a non-zero bias exactly, whereas the bias-free variant would silently drop a non-zero one.
ARCH_TABLE: dict[str, ViTArch] = {
    # The 300-epoch ViT-S/8 that STEGO and HP use, not timm's default 800-epoch file.
    "dino_vits8": ViTArch("vit_small_patch8_224.dino", 8, 384, "dino",
                          _DINO + "dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth",
                          "dino_deitsmall8_300ep_pretrain.pth"),
    "dino_vits16": ViTArch("vit_small_patch16_224.dino", 16, 384, "dino",
                           _DINO + "dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
                           "dino_deitsmall16_pretrain.pth"),
    "dino_vitb8": ViTArch("vit_base_patch8_224.dino", 8, 768, "dino",
                          _DINO + "dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
                          "dino_vitbase8_pretrain.pth"),
    "dino_vitb16": ViTArch("vit_base_patch16_224.dino", 16, 768, "dino",
                           _DINO + "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
                           "dino_vitbase16_pretrain.pth"),
    "dinov2_vits14": ViTArch("vit_small_patch14_dinov2", 14, 384, "dinov2",
                             _DINOV2 + "dinov2_vits14/dinov2_vits14_pretrain.pth", "dinov2_vits14_pretrain.pth"),
    "dinov2_vitb14": ViTArch("vit_base_patch14_dinov2", 14, 768, "dinov2",
                             _DINOV2 + "dinov2_vitb14/dinov2_vitb14_pretrain.pth", "dinov2_vitb14_pretrain.pth"),
    "dinov3_vits16": ViTArch("vit_small_patch16_dinov3_qkvb", 16, 384, "dinov3", None,
                             "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
    "dinov3_vitb16": ViTArch("vit_base_patch16_dinov3_qkvb", 16, 768, "dinov3", None,
                             "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"),
}
VIT_ARCHS = tuple(ARCH_TABLE)
HEADS = ("none", "linear", "nonlinear")
FAMILY_NAMES = {"dino": "DINO", "dinov2": "DINOv2", "dinov3": "DINOv3"}
DINOV3_DOWNLOADS = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"


def _spec(arch: str) -> ViTArch:
    if arch not in ARCH_TABLE:
        raise ValueError(f"unknown ViT --arch {arch!r}; choose one of {', '.join(VIT_ARCHS)}")
    return ARCH_TABLE[arch]


def round_to_patch(side: int, patch: int) -> int:
    """The largest multiple of `patch` that is <= `side` (at least one patch): the size to resize to."""
    return max(patch, side // patch * patch)


@dataclass
class ViTConfig:
    """Everything needed to rebuild a `ViTFeatures` from a checkpoint.

    head "none": the output is the backbone's embedding (out_dim must be None or embed_dim);
    "linear"/"nonlinear": a trained head maps it to out_dim channels (None: keep embed_dim).
    """

    arch: str = "dino_vits8"
    out_dim: int | None = None
    head: str = "none"
    frozen: bool = False
    # Transformer blocks to build, the first `depth` of the arch's (None: all). Recorded in the
    # checkpoint like the rest, so a shallower model rebuilds as it was (the tests use 2 blocks: the
    # same code at a sixth of the file size).
    depth: int | None = None

    def resolved(self) -> "ViTConfig":
        spec = _spec(self.arch)
        if self.head not in HEADS:
            raise ValueError(f"unknown ViT head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.head == "none" and self.out_dim not in (None, spec.embed_dim):
            raise ValueError(f"out_dim {self.out_dim} needs a head: {self.arch} features have {spec.embed_dim} "
                             f"channels; choose head linear or nonlinear, or drop out_dim")
        if self.out_dim is not None and self.out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {self.out_dim}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"depth must be positive, got {self.depth}")
        return ViTConfig(self.arch, self.out_dim or spec.embed_dim, self.head, bool(self.frozen), self.depth)

    def to_dict(self) -> dict:
        """The config plus what a checkpoint reader needs without building the model (patch size =
        feature stride, backbone width, timm model, family); `from_dict` reads it back."""
        cfg = self.resolved()
        spec = ARCH_TABLE[cfg.arch]
        return {**asdict(cfg), "patch_size": spec.patch_size, "embed_dim": spec.embed_dim,
                "timm_name": spec.timm_name, "family": spec.family}

    @classmethod
    def from_dict(cls, data: dict) -> "ViTConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in data.items() if k in names}).resolved()
        spec = ARCH_TABLE[cfg.arch]
        for key, value in (("patch_size", spec.patch_size), ("embed_dim", spec.embed_dim)):
            if key in data and data[key] != value:
                raise ValueError(f"checkpoint says {cfg.arch} has {key} {data[key]} but this toolkit builds it "
                                 f"with {value}; use the toolkit version that wrote the checkpoint")
        return cfg


class ProjectionHead(nn.Module):
    """[B, C, h, w] -> [B, out_dim, h, w]: a 1x1 conv, plus (nonlinear) STEGO's branch
    conv1x1(C->C), ReLU, conv1x1(C->out_dim) added to it."""

    def __init__(self, in_dim: int, out_dim: int, nonlinear: bool):
        super().__init__()
        self.linear = nn.Conv2d(in_dim, out_dim, 1)
        self.nonlinear = nn.Sequential(nn.Conv2d(in_dim, in_dim, 1), nn.ReLU(),
                                       nn.Conv2d(in_dim, out_dim, 1)) if nonlinear else None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.linear(feats)
        if self.nonlinear is not None:
            out = out + self.nonlinear(feats)
        return out


def create_backbone(arch: str, depth: int | None = None) -> nn.Module:
    """timm's model for `arch` (its first `depth` blocks; None: all), randomly initialised, without
    classifier, accepting any input size that is a multiple of the patch size (position embeddings
    resampled / rotary embeddings recomputed for the input's grid)."""
    import timm  # imported here so that the ResNet-only paths never need timm

    blocks = {} if depth is None else {"depth": depth}
    return timm.create_model(_spec(arch).timm_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                             **blocks)


class ViTFeatures(nn.Module):
    """ViT backbone (+ optional head). Input [B, 3, H, W] ImageNet-normalised with H, W multiples
    of `stride` -> features [B, feat_dim, H/stride, W/stride].

    With config.frozen the backbone gets no gradients: its parameters have requires_grad False, it
    runs under torch.no_grad() (no activations kept for backward: less memory, faster) and stays
    in eval mode whatever `train()` is called with. Only the head then trains.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config.resolved()
        self.spec = ARCH_TABLE[self.config.arch]
        self.backbone = create_backbone(self.config.arch, self.config.depth)
        self.head = (ProjectionHead(self.spec.embed_dim, self.config.out_dim, self.config.head == "nonlinear")
                     if self.config.head != "none" else None)
        # Where the backbone weights came from (set by build_vit / load_vit_weights), for logs.
        self.weights_source = "random initialisation"
        if self.config.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @property
    def stride(self) -> int:
        return self.spec.patch_size

    @property
    def feat_dim(self) -> int:
        return self.config.out_dim

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    def train(self, mode: bool = True) -> "ViTFeatures":
        super().train(mode)
        if self.config.frozen:
            self.backbone.eval()  # a frozen backbone is a fixed function: no train-mode behaviour
        return self

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> last block's normalised patch tokens [B, embed_dim, H/p, W/p]."""
        if images.dim() != 4:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        p = self.stride
        if height % p or width % p:
            raise ValueError(f"input {height}x{width} is not a multiple of the patch size {p} of {self.config.arch}; "
                             f"resize the images to a multiple of {p} (e.g. {round_to_patch(height, p)}x"
                             f"{round_to_patch(width, p)})")
        tokens = self.backbone.forward_features(images)  # [B, prefix + h*w, C], final norm applied
        # Prefix tokens come first in every family: CLS (DINO, DINOv2) or CLS + 4 registers (DINOv3).
        patches = tokens[:, self.backbone.num_prefix_tokens:]
        return patches.unflatten(1, (height // p, width // p)).permute(0, 3, 1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.frozen:
            with torch.no_grad():
                feats = self.backbone_features(images)
        else:
            feats = self.backbone_features(images)
        return self.head(feats) if self.head is not None else feats


# ---------------------------------------------------------------- weights

def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped from the containers the official repos and timm use."""
    if not os.path.isfile(path):
        raise PretrainError(f"--pretrain_path {path} does not exist; give a DINO, DINOv2, DINOv3 or timm ViT "
                            f"weights file (.pth)")
    try:
        # DINO's full training checkpoints pickle their argparse.Namespace; allow exactly that besides tensors.
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise PretrainError(f"--pretrain_path {path} could not be read ({exc.__class__.__name__}); give a ViT "
                            f"state dict saved with torch.save") from None
    if not isinstance(state, dict):
        raise PretrainError(f"--pretrain_path {path} holds a {type(state).__name__}, not a state dict; "
                            f"give a ViT state dict saved with torch.save")
    # DINO training checkpoints: the teacher is what DINO evaluates and publishes.
    for key in ("teacher", "model_ema", "model", "state_dict", "module"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = re.sub(r"^(module\.)?(backbone\.)?", "", str(key))
        out[key] = value
    return out


def _file_family(keys) -> str | None:
    """Which family a state dict's key names belong to (any of its layouts), or None."""
    if "pos_embed" in keys:  # DINO and DINOv2 add learned absolute position embeddings
        return "dinov2" if "mask_token" in keys or "blocks.0.ls1.gamma" in keys else "dino"
    if {"storage_tokens", "reg_token", "rope_embed.periods", "blocks.0.gamma_1"} & set(keys):
        return "dinov3"
    return None


def _layout_name(family: str, keys) -> str:
    if family == "dino":
        return "official DINO (= timm)"  # facebookresearch/dino's names are timm's names
    if family == "dinov2":
        return "DINOv2 hub" if "mask_token" in keys else "timm"
    return "official DINOv3" if "storage_tokens" in keys else "timm"


def _first(keys: list[str], n: int = 3) -> str:
    keys = sorted(keys, key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)])
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def load_vit_weights(model: ViTFeatures, path: str) -> str:
    """Load the backbone weights of `model` from the file at `path`; return the detected layout.

    Layouts: official DINO (facebookresearch/dino; the same names as timm's), DINOv2 hub
    (facebookresearch/dinov2: mask_token, ls1/ls2.gamma), official DINOv3 (facebookresearch/dinov3:
    storage_tokens, ls1/ls2.gamma, qkv.bias with a k-bias mask, rope periods) and timm's
    state_dict(). DINO training checkpoints ({'teacher': {'module.backbone.*'}}) are read too.
    Conversion to timm's names is timm's own checkpoint_filter_fn. A file of another family, patch
    size, width or depth raises PretrainError with one line naming the mismatch and the fix.
    """
    spec, arch = model.spec, model.config.arch
    state = _read_state_dict(path)
    keys = set(state)
    family = _file_family(keys)
    if family is None:
        raise PretrainError(f"--pretrain_path {path} is not a ViT state dict (keys: {_first(list(keys))}); give a "
                            f"{FAMILY_NAMES[spec.family]} weights file for --arch {arch}")
    if family != spec.family:
        raise PretrainError(f"--pretrain_path {path} holds {FAMILY_NAMES[family]} weights but --arch {arch} is "
                            f"{FAMILY_NAMES[spec.family]}; pass the matching --arch or file")
    layout = _layout_name(family, keys)
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.dim() == 4 and (proj.shape[-1] != spec.patch_size or proj.shape[0] != spec.embed_dim):
        # Checked before timm's converter, which would silently resample a patch embedding of another size.
        raise PretrainError(f"--pretrain_path {path} is a ViT with patch {proj.shape[-1]} and width "
                            f"{proj.shape[0]} but --arch {arch} has patch {spec.patch_size} and width "
                            f"{spec.embed_dim}; pass the matching --arch or file")
    backbone = model.backbone
    state = {k: v for k, v in state.items() if not k.startswith("head.")}  # a classifier, never features
    if family == "dinov3":
        from timm.models.eva import checkpoint_filter_fn
    else:
        from timm.models.vision_transformer import checkpoint_filter_fn
    converted = checkpoint_filter_fn(dict(state), backbone)
    target = backbone.state_dict()
    if family == "dinov3" and not any(k.endswith((".attn.q_bias", ".attn.v_bias")) for k in converted):
        # A file with no q/v bias at all (timm's bias-free variant) is the same function as a zero
        # bias; a file that has some but not all of them is partial and fails below.
        for key, value in target.items():
            if key.endswith((".attn.q_bias", ".attn.v_bias")):
                converted[key] = torch.zeros_like(value)
    missing = [k for k in target if k not in converted]
    unexpected = [k for k in converted if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_first(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_first(unexpected)})")
        raise PretrainError(f"--pretrain_path {path} ({layout} layout) does not fit --arch {arch}: {'; '.join(parts)}; "
                            f"pass a complete {FAMILY_NAMES[family]} {spec.patch_size}-patch file of that size or the "
                            f"matching --arch")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise PretrainError(f"--pretrain_path {path} ({layout} layout) does not fit --arch {arch}: {key} has shape "
                                f"{tuple(value.shape)}, the model {tuple(target[key].shape)}; pass the matching --arch "
                                f"or file")
    backbone.load_state_dict(converted, strict=True)
    periods = state.get("rope_embed.periods")
    if periods is not None:
        # timm recomputes the rotary periods (not stored); the official file stores them (rounded to
        # bf16 in the released files). A different schedule means a different model.
        ours = backbone.rope.periods
        if periods.shape != ours.shape or not torch.allclose(periods.float(), ours.float(), rtol=1e-2):
            raise PretrainError(f"--pretrain_path {path}: its rotary periods {periods.flatten()[:3].tolist()}... "
                                f"differ from {arch}'s {ours.flatten()[:3].tolist()}...; pass the matching --arch "
                                f"or file")
    model.weights_source = f"{path} ({layout} layout)"
    return layout


def official_weights_file(arch: str) -> tuple[str | None, str]:
    """(official URL or None, path in torch's hub cache) of `arch`'s official weights."""
    spec = _spec(arch)
    return spec.url, os.path.join(torch.hub.get_dir(), "checkpoints", spec.filename)


def download_official_weights(arch: str) -> str:
    """Path of `arch`'s official weights in torch's hub cache, fetched there if absent.

    DINOv3 weights are never fetched: Meta distributes them under the DINOv3 licence, to each user
    who accepts it. Failure raises PretrainError naming the URL to fetch by hand.
    """
    spec = _spec(arch)
    url, cache = official_weights_file(arch)
    if url is None:
        raise PretrainError(f"--pretrain does not download {arch} weights: DINOv3 weights come under Meta's DINOv3 "
                            f"licence; request them at {DINOV3_DOWNLOADS}, download {spec.filename} and pass "
                            f"--pretrain_path FILE")
    if os.path.isfile(cache):
        return cache
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        # Writes to a temporary file and renames it: an interrupted download leaves no partial file.
        torch.hub.download_url_to_file(url, cache, progress=False)
    except Exception as exc:  # noqa: BLE001 - offline machines fail in many ways
        raise PretrainError(f"--pretrain could not fetch {arch} weights ({exc.__class__.__name__}); download {url} to "
                            f"{cache} (or anywhere, then pass --pretrain_path FILE)") from None
    return cache


def build_vit(arch: str = "dino_vits8", out_dim: int | None = None, head: str = "none",
              freeze_backbone: bool = False, pretrain: bool = False,
              pretrain_path: str | None = None) -> ViTFeatures:
    """Build `ViTFeatures`; weights from `pretrain_path` (wins) or the official file (`pretrain`).

    Without either the backbone stays randomly initialised and a UserWarning says so (its text is
    also in `model.weights_source`, for the caller's log).
    """
    model = ViTFeatures(ViTConfig(arch, out_dim, head, freeze_backbone))
    if pretrain_path:
        load_vit_weights(model, pretrain_path)
    elif pretrain:
        load_vit_weights(model, download_official_weights(arch))
    else:
        model.weights_source = (f"random initialisation: {arch} has no --pretrain/--pretrain_path weights, its "
                                f"features are not DINO features")
        warnings.warn(model.weights_source, UserWarning, stacklevel=2)
    return model


__all__ = ["ARCH_TABLE", "VIT_ARCHS", "HEADS", "ViTArch", "ViTConfig", "ViTFeatures", "ProjectionHead",
           "PretrainError", "create_backbone", "load_vit_weights", "download_official_weights",
           "official_weights_file", "build_vit", "round_to_patch"]
