"""Dense CRF refinement of segmentation logits (--crf of test_picie.py and predict.py).

A fully connected CRF (Kraehenbuehl & Koltun, 2011) on the softmax of the upsampled logits and
the image's colours, with the defaults of the unsupervised segmentation papers that report it
(STEGO and its successors): 10 mean-field iterations, a Gaussian (smoothness) kernel of
sxy 1 and weight 3, a bilateral (appearance) kernel of sxy 67, srgb 3 and weight 4. The kernel
widths are in pixels of the map refined: the evaluation crop (--res) in test_picie.py, the
image's full resolution in predict.py.

The CRF comes from the optional package pydensecrf2 (import name `pydensecrf`); this is the
only module that imports it, and only when --crf is asked for, so everything else runs
without it.
"""
from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import UserError

PACKAGE = "pydensecrf2"


class CRFMissingError(UserError):
    """--crf was asked for and the optional CRF package is not installed."""


@dataclass(frozen=True)
class CRFSettings:
    """Mean-field iterations and the two pairwise kernels (widths in pixels, srgb in 0..255 units)."""

    iterations: int = 10
    gaussian_sxy: float = 1.0
    gaussian_weight: float = 3.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0
    bilateral_weight: float = 4.0


def require_crf():
    """The pydensecrf.densecrf module, or CRFMissingError with the install command (one line)."""
    try:
        import pydensecrf.densecrf as densecrf  # noqa: PLC0415 - optional: imported only for --crf
    except ImportError:
        raise CRFMissingError(f"--crf needs the optional package {PACKAGE}: pip install {PACKAGE} "
                              "(it builds from source with a C++ compiler, ~2 min), or drop --crf") from None
    return densecrf


def crf_refine(logits: torch.Tensor, image: torch.Tensor, settings: CRFSettings = CRFSettings()) -> torch.Tensor:
    """Refined class probabilities [K, H, W] (float32, CPU) of one image.

    logits [K, H, W] (any device, at the image's size) are turned into probabilities with a
    softmax; image is uint8 [3, H, W] (RGB). The CRF runs on the CPU (one image at a time)."""
    densecrf = require_crf()
    n_labels, height, width = logits.shape
    if tuple(image.shape[-2:]) != (height, width):
        raise ValueError(f"crf_refine: image {tuple(image.shape)} and logits {tuple(logits.shape)} differ in size")
    probs = torch.softmax(logits.detach().float(), dim=0).cpu().numpy()
    # -log p as pydensecrf.utils.unary_from_softmax computes it (clipped so that log(0) is finite).
    unary = np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1.0)).reshape(n_labels, -1), dtype=np.float32)
    crf = densecrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=settings.gaussian_sxy, compat=settings.gaussian_weight)
    rgb = np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy(), dtype=np.uint8)
    crf.addPairwiseBilateral(sxy=settings.bilateral_sxy, srgb=settings.bilateral_srgb, rgbim=rgb,
                             compat=settings.bilateral_weight)
    refined = np.asarray(crf.inference(settings.iterations), dtype=np.float32).reshape(n_labels, height, width)
    return torch.from_numpy(refined)
