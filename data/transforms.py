"""PiCIE's two transform families and the seeded per-(epoch, image) parameter draws.

Photometric family P (invariance): brightness, contrast, saturation, hue, greyscale, blur.
Geometric family G (equivariance): random resized crop, horizontal flip, vertical flip.

View 1 is z1 = f(P1'(G(x))) with the default --photometric_res view: G (crop, resize to res1,
flip) on the base image, then P1 at res1 (its blur sigma rescaled); --photometric_res base gives
the paper's order z1 = f(G(P1(x))). View 2 is z2 = G(f(P2'(x))): x resized to res1, P2, then G on
the feature map (P2 before the resize with --photometric_res base). Parameters are drawn from a generator seeded by
(seed, epoch, image index, stream), so the clustering pass and the training pass of one epoch
see identical views, whatever the batch order, the number of workers or of processes.
Every parameter is always drawn (enabled or not), so switching one transform on or off in an
ablation leaves the draws of all the others unchanged.

All transforms run on batched float tensors in [0, 1] on the tensor's device (the GPU when
there is one); tests check them against torchvision's per-image functions.
"""
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.runtime import Runtime

PHOTOMETRIC_OPS = ("brightness", "contrast", "saturation", "hue", "grey", "blur")
GEOMETRIC_OPS = ("random_crop", "h_flip", "v_flip")
# Where the photometric ops apply (--photometric_res): at the view's size (the default, fast) or on the base image.
PHOTOMETRIC_RES = ("view", "base")
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Random streams of one image in one epoch.
_STREAM_P1, _STREAM_P2, _STREAM_G = 1, 2, 3
_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass
class AugmentConfig:
    """Which transforms are on and how strong they are (paper defaults: MoCo v2 values)."""

    inv_list: tuple[str, ...] = ()
    eqv_list: tuple[str, ...] = ()
    jitter_strength: float = 0.3     # brightness/contrast/saturation factor in [1-s, 1+s]
    hue_range: float = 0.1           # hue shift in [-h, h] (fraction of the colour wheel)
    jitter_p: float = 0.8            # each colour op applied independently with this p
    grey_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    min_scale: float = 0.5           # crop side as a fraction of the image side, in [min_scale, 1]
    flip_p: float = 0.5

    def __post_init__(self):
        self.inv_list = tuple(self.inv_list)
        self.eqv_list = tuple(self.eqv_list)
        for name in self.inv_list:
            if name not in PHOTOMETRIC_OPS:
                raise UserError(f"unknown photometric transform {name!r}; choose from {', '.join(PHOTOMETRIC_OPS)}")
        for name in self.eqv_list:
            if name not in GEOMETRIC_OPS:
                raise UserError(f"unknown geometric transform {name!r}; choose from {', '.join(GEOMETRIC_OPS)}")
        if not 0 < self.min_scale <= 1:
            raise UserError(f"--min_scale {self.min_scale} must lie in (0, 1]")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise UserError(f"--blur_sigma {self.blur_sigma} must be 0 < low <= high")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PhotometricParams:
    """Per-image photometric parameters of one view; every field is a tensor [B]."""

    brightness: torch.Tensor   # factor, 1 where not applied
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor          # shift, 0 where not applied
    hue_on: torch.Tensor       # bool
    grey_on: torch.Tensor      # bool
    blur_sigma: torch.Tensor   # 0 where not applied


@dataclass
class GeometricParams:
    """Per-image crop box and flips, in units of the feature grid of size `grid` (= res1 / the network's
    stride: res1 / 4 for the ResNet-FPN, res1 / patch size for a ViT)."""

    grid: int
    top: torch.Tensor      # int64 [B]
    left: torch.Tensor     # int64 [B]
    size: torch.Tensor     # int64 [B], crop side in grid cells
    h_flip: torch.Tensor   # bool [B]
    v_flip: torch.Tensor   # bool [B]


@dataclass
class ViewParams:
    """Everything that defines both views of a batch of images in one epoch."""

    photometric1: PhotometricParams
    photometric2: PhotometricParams
    geometric: GeometricParams
    extra: dict[str, object] = field(default_factory=dict)


def _rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, stream])


def _draw_photometric(cfg: AugmentConfig, rng: np.random.Generator) -> list[float]:
    """Fixed-length draw so that enabling one op never changes the values of another."""
    u = rng.random(12)
    on = set(cfg.inv_list)
    s, h = cfg.jitter_strength, cfg.hue_range
    brightness = 1 - s + 2 * s * u[1] if ("brightness" in on and u[0] < cfg.jitter_p) else 1.0
    contrast = 1 - s + 2 * s * u[3] if ("contrast" in on and u[2] < cfg.jitter_p) else 1.0
    saturation = 1 - s + 2 * s * u[5] if ("saturation" in on and u[4] < cfg.jitter_p) else 1.0
    hue_on = "hue" in on and u[6] < cfg.jitter_p
    hue = -h + 2 * h * u[7] if hue_on else 0.0
    grey_on = "grey" in on and u[8] < cfg.grey_p
    lo, hi = cfg.blur_sigma
    sigma = lo + (hi - lo) * u[10] if ("blur" in on and u[9] < cfg.blur_p) else 0.0
    return [brightness, contrast, saturation, hue, float(hue_on), float(grey_on), sigma]


def _draw_geometric(cfg: AugmentConfig, rng: np.random.Generator, grid: int) -> list[int]:
    u = rng.random(6)
    on = set(cfg.eqv_list)
    size, top, left = grid, 0, 0
    if "random_crop" in on:
        scale = cfg.min_scale + (1 - cfg.min_scale) * u[0]
        size = int(min(grid, max(1, round(scale * grid))))
        top = int(u[1] * (grid - size + 1))
        left = int(u[2] * (grid - size + 1))
    h_flip = int("h_flip" in on and u[3] < cfg.flip_p)
    v_flip = int("v_flip" in on and u[4] < cfg.flip_p)
    return [top, left, size, h_flip, v_flip]


def draw_view_params(cfg: AugmentConfig, seed: int, epoch: int, indices: Sequence[int], grid: int,
                     device: torch.device = torch.device("cpu")) -> ViewParams:
    """Parameters of both views for images `indices` in `epoch` (pure function of its inputs)."""
    photo1, photo2, geo = [], [], []
    for index in indices:
        index = int(index)
        photo1.append(_draw_photometric(cfg, _rng(seed, epoch, index, _STREAM_P1)))
        photo2.append(_draw_photometric(cfg, _rng(seed, epoch, index, _STREAM_P2)))
        geo.append(_draw_geometric(cfg, _rng(seed, epoch, index, _STREAM_G), grid))

    def photometric(rows) -> PhotometricParams:
        values = torch.tensor(rows, dtype=torch.float32, device=device).reshape(-1, 7)
        return PhotometricParams(values[:, 0], values[:, 1], values[:, 2], values[:, 3],
                                 values[:, 4] > 0, values[:, 5] > 0, values[:, 6])

    geo_t = torch.tensor(geo, dtype=torch.int64, device=device).reshape(-1, 5)
    geometric = GeometricParams(grid, geo_t[:, 0], geo_t[:, 1], geo_t[:, 2], geo_t[:, 3] > 0, geo_t[:, 4] > 0)
    return ViewParams(photometric(photo1), photometric(photo2), geometric)


# ----------------------------------------------------------------------------------------
# Photometric ops on batches [B, 3, H, W] in [0, 1] with per-image parameters [B].
# ----------------------------------------------------------------------------------------
def grayscale(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] luma, as torchvision computes it."""
    r, g, b = images.unbind(1)
    return (_GREY_WEIGHTS[0] * r + _GREY_WEIGHTS[1] * g + _GREY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1).to(images.dtype)
    return (factor * images + (1 - factor) * other).clamp_(0, 1)


def adjust_brightness(images, factor):
    return (images * factor.view(-1, 1, 1, 1).to(images.dtype)).clamp_(0, 1)


def adjust_contrast(images, factor):
    mean = grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images, factor):
    return _blend(images, grayscale(images), factor)


def _rgb_to_hsv(images):
    """[B, 3, H, W] -> (h, s, v), each [B, H, W]; torchvision's formula and tie-breaking (r, then g,
    then b wins a tie for the maximum), written with one argmax instead of three masked sums."""
    r, g, b = images.unbind(1)
    maxc, argmax = images.max(1)
    minc = images.amin(1)
    chroma = maxc - minc
    s = chroma / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    numerator = torch.where(argmax == 0, g - b, torch.where(argmax == 1, b - r, r - g))
    sector = numerator / torch.where(chroma == 0, torch.ones_like(chroma), chroma) + 2.0 * argmax
    h = torch.remainder(sector / 6.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h, s, v):
    """[B, H, W] each -> [B, 3, H, W]. Closed form per channel, c = v - v s clamp(min(k, 4 - k), 0, 1)
    with k = (n + 6h) mod 6 and n = 5, 3, 1 for r, g, b: the same values as torchvision's
    six-sector table, in a few whole-tensor ops instead of a gather over six stacked candidates."""
    offsets = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6.0 * h[:, None], 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return v[:, None] - (v * s)[:, None] * ramp


def adjust_hue(images, shift):
    """Rotate hue by `shift` [B] (fraction of a turn); same formula as torchvision's adjust_hue."""
    h, s, v = _rgb_to_hsv(images)
    h = torch.fmod(h + shift.view(-1, 1, 1).to(h.dtype) + 1.0, 1.0)
    return _hsv_to_rgb(h, s, v)


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel covering +-3 sigma."""
    return 2 * math.ceil(3 * sigma) + 1


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma [B] (> 0), reflect padding.

    All images go through one grouped convolution: each image's kernel is zero-padded to a common
    size, which leaves its result unchanged. That size is at least the kernel of sigma 2 (the
    default upper bound), so an image's result does not depend on which images share its batch
    (the clustering and training passes batch images differently, and must see the same views).
    """
    batch, channels, height, width = images.shape
    size = max(blur_kernel_size(max(2.0, float(s))) for s in sigma.tolist())
    half = size // 2
    x = torch.arange(size, device=images.device, dtype=torch.float32) - half
    kernels = torch.exp(-0.5 * (x[None, :] / sigma.float()[:, None]) ** 2)
    own_half = torch.tensor([blur_kernel_size(float(s)) // 2 for s in sigma.tolist()], device=images.device)
    kernels = kernels * (x.abs()[None, :] <= own_half[:, None])
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(images.dtype)
    kernels = kernels.repeat_interleave(channels, 0)  # [B*C, size]
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=batch * channels)
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def apply_photometric(images: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
    """P(x) for a batch [B, 3, H, W] in [0, 1]; fixed order: brightness, contrast, saturation,
    hue, greyscale, blur. Ops that no image of the batch drew are skipped."""
    if (params.brightness != 1).any():
        images = adjust_brightness(images, params.brightness)
    if (params.contrast != 1).any():
        images = adjust_contrast(images, params.contrast)
    if (params.saturation != 1).any():
        images = adjust_saturation(images, params.saturation)
    if params.hue_on.any():
        rows = params.hue_on.nonzero().flatten()
        images = images.clone()
        images[rows] = adjust_hue(images[rows], params.hue[rows])
    if params.grey_on.any():
        rows = params.grey_on.nonzero().flatten()
        images = images.clone()
        images[rows] = grayscale(images[rows]).expand(-1, 3, -1, -1)
    if (params.blur_sigma > 0).any():
        rows = (params.blur_sigma > 0).nonzero().flatten()
        images = images.clone()
        images[rows] = gaussian_blur(images[rows], params.blur_sigma[rows])
    return images


# ----------------------------------------------------------------------------------------
# Geometric ops: crop box in grid units, scaled to the tensor's own size.
# ----------------------------------------------------------------------------------------
def apply_geometric(tensors: torch.Tensor, params: GeometricParams, out_size: int,
                    antialias: bool = False) -> torch.Tensor:
    """G(x) for images or feature maps [B, C, H, W] (square, H a multiple of params.grid works
    exactly): crop the box, resize it to out_size x out_size (bilinear, align_corners=False),
    then flip. The same params give pixel-aligned results at every resolution."""
    scale = tensors.shape[-1] / params.grid
    outputs = []
    tops, lefts, sizes = params.top.tolist(), params.left.tolist(), params.size.tolist()
    for i in range(tensors.shape[0]):
        top, left = round(tops[i] * scale), round(lefts[i] * scale)
        side = max(1, round(sizes[i] * scale))
        crop = tensors[i: i + 1, :, top: top + side, left: left + side]
        if side != out_size:
            crop = F.interpolate(crop, size=(out_size, out_size), mode="bilinear", align_corners=False,
                                 antialias=antialias and side > out_size)
        outputs.append(crop)
    out = torch.cat(outputs)
    if params.h_flip.any():
        out = torch.where(params.h_flip.view(-1, 1, 1, 1), out.flip(-1), out)
    if params.v_flip.any():
        out = torch.where(params.v_flip.view(-1, 1, 1, 1), out.flip(-2), out)
    return out


def apply_geometric_labels(labels: torch.Tensor, params: GeometricParams, out_size: int) -> torch.Tensor:
    """G on integer maps [B, H, W] (nearest neighbour), e.g. to show pseudo-labels of view 2."""
    as_float = labels[:, None].float()
    scale = labels.shape[-1] / params.grid
    outputs = []
    for i in range(labels.shape[0]):
        top, left = round(int(params.top[i]) * scale), round(int(params.left[i]) * scale)
        side = max(1, round(int(params.size[i]) * scale))
        crop = as_float[i: i + 1, :, top: top + side, left: left + side]
        outputs.append(F.interpolate(crop, size=(out_size, out_size), mode="nearest"))
    out = torch.cat(outputs)
    out = torch.where(params.h_flip.view(-1, 1, 1, 1), out.flip(-1), out)
    out = torch.where(params.v_flip.view(-1, 1, 1, 1), out.flip(-2), out)
    return out[:, 0].to(labels.dtype)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of [B, 3, H, W] in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def _scaled_blur(params: PhotometricParams, scale: torch.Tensor) -> PhotometricParams:
    """The same photometric params with the blur sigma multiplied by `scale` [B] (image resized)."""
    return replace(params, blur_sigma=params.blur_sigma * scale.to(params.blur_sigma))


class ViewMaker:
    """Turns a batch of base images (uint8 [B, 3, res2, res2]) into the two network inputs.

    view1 = normalize(P1(G(x))) and view2 = normalize(P2(resize(x))) at res1, and
    `geometric_on_features` applies the same G to the network's output for view 2.

    photometric_res="base" applies P on the res2 base image before G / the resize, literally as
    the paper orders them; "view" (default) applies it after, at res1, with the blur sigma scaled
    by the resize factor so the blur is the same in image units. The colour ops are per-pixel maps,
    so they commute with resizing up to clamping; on real images the two orders differ by ~0.0015
    mean absolute (of 1.0) and "view" touches 4-16x fewer pixels (tests/test_transforms.py).

    feature_stride is the network's `stride` (input pixels per feature cell: 4 for the ResNet-FPN,
    the patch size for a ViT; the default suits only the ResNet-FPN): the geometric parameters are
    drawn on the feature grid of res1 / feature_stride cells, so that G crops whole cells of the
    feature map of view 2 and the same region of the image of view 1.
    """

    def __init__(self, cfg: AugmentConfig, res1: int, seed: int, feature_stride: int = 4,
                 photometric_res: str = PHOTOMETRIC_RES[0]):
        if photometric_res not in PHOTOMETRIC_RES:
            raise UserError(f"--photometric_res {photometric_res!r}: choose view or base")
        self.cfg = cfg
        self.res1 = res1
        self.seed = seed
        self.grid = res1 // feature_stride
        self.equivariant = len(cfg.eqv_list) > 0
        self.photometric_res = photometric_res

    def params(self, epoch: int, indices: Sequence[int], device: torch.device) -> ViewParams:
        return draw_view_params(self.cfg, self.seed, epoch, indices, self.grid, device)

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.res1:
            return images
        return F.interpolate(images, size=(self.res1, self.res1), mode="bilinear", align_corners=False,
                             antialias=images.shape[-1] > self.res1)

    def _geometric_or_resize(self, images: torch.Tensor, params: ViewParams) -> torch.Tensor:
        if self.equivariant:
            return apply_geometric(images, params.geometric, self.res1, antialias=True)
        return self._resize(images)

    def views(self, base_images: torch.Tensor, params: ViewParams) -> tuple[torch.Tensor, torch.Tensor]:
        """(view1, view2), each [B, 3, res1, res1] normalised float32 on base_images' device."""
        images = base_images.float() / 255  # out of place: never alter the caller's tensor
        if self.photometric_res == "base":
            view1 = self._geometric_or_resize(apply_photometric(images, params.photometric1), params)
            view2 = self._resize(apply_photometric(images, params.photometric2))
            return normalize(view1), normalize(view2)
        base_side = images.shape[-1]
        crop_side = (params.geometric.size.float() * base_side / params.geometric.grid
                     if self.equivariant else torch.full_like(params.photometric1.blur_sigma, float(base_side)))
        view1 = apply_photometric(self._geometric_or_resize(images, params),
                                  _scaled_blur(params.photometric1, self.res1 / crop_side))
        view2 = apply_photometric(self._resize(images),
                                  _scaled_blur(params.photometric2, torch.full_like(crop_side, self.res1 / base_side)))
        return normalize(view1), normalize(view2)

    def plain_view(self, base_images: torch.Tensor) -> torch.Tensor:
        """The base image resized to res1 and normalised, no random transform: [B, 3, res1, res1]."""
        return normalize(self._resize(base_images.float() / 255))

    def geometric_on_features(self, feats: torch.Tensor, params: ViewParams) -> torch.Tensor:
        """G applied to view 2's feature map [B, C, h, w] -> [B, C, h, w]."""
        if not self.equivariant:
            return feats
        return apply_geometric(feats, params.geometric, feats.shape[-1])


def make_views(view_maker: ViewMaker, base_images: torch.Tensor, params: ViewParams, runtime: Runtime,
               cache_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs of both views, [B, 3, res1, res1] each, on the device."""
    view1, view2 = view_maker.views(base_images.to(runtime.device, non_blocking=True), params)
    if cache_dtype is not None:
        view1, view2 = view1.to(cache_dtype), view2.to(cache_dtype)
    if runtime.channels_last:
        view1 = view1.contiguous(memory_format=torch.channels_last)
        view2 = view2.contiguous(memory_format=torch.channels_last)
    return view1, view2
