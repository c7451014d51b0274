"""Image datasets shared by every data source (COCO-Stuff, Cityscapes, an image folder).

A data source only has to produce a list of image files (and label files plus a label
lookup table for evaluation); these classes do the decoding and the resize rules:
- training: shorter side to res2, center crop res2 -> uint8 [3, res2, res2] (the "base image"
  both views are made from, on the device, by data/transforms.py);
- evaluation: shorter side to res (image bilinear, label nearest), center crop res.
Decoding happens once per image per pass, in DataLoader workers.
"""
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFile
from torch.utils.data import Dataset

from data.validation import DataError, fixes_bad_labels, read_label_map

log = logging.getLogger(__name__)

# Longest side kept, as a multiple of the shorter side, before the resize rule (see resize_center_crop).
MAX_ASPECT = 8


def load_rgb(path: Path) -> Image.Image:
    """Open an image as 8-bit RGB whatever its mode (L, LA, P, CMYK, RGBA, I;16, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.load()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit / 32-bit greyscale: scale the actual range to 8 bits instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # composite on black, so transparent pixels are defined
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int, interpolation=TF.InterpolationMode.BILINEAR) -> Image.Image:
    """Shorter side to `size`, then the central size x size square (left = round((w - size) / 2)).

    Images of any size work (a 5x3 image is upsampled). A strip longer than MAX_ASPECT times its
    width is first cut to its central MAX_ASPECT x width part: resized whole, a 1000x2 strip would
    become 320000x640 pixels before the crop. Below that ratio the protocol is followed exactly.
    """
    width, height = image.size
    short = min(width, height)
    if max(width, height) > MAX_ASPECT * short:
        keep = MAX_ASPECT * short
        if width > height:
            left = (width - keep) // 2
            image = image.crop((left, 0, left + keep, height))
        else:
            top = (height - keep) // 2
            image = image.crop((0, top, width, top + keep))
    image = TF.resize(image, size, interpolation=interpolation)
    return TF.center_crop(image, [size, size])


def pil_to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor [3, H, W] (kept as uint8: 4x less to move than float)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


class TrainImages(Dataset):
    """Training images: item i -> (i, uint8 [3, res2, res2]) or (i, None) if the file is unreadable.

    Unreadable training files are skipped (and counted) rather than ending a long run;
    utils/loaders.py's `collate_skip_bad` drops them from the batch.
    """

    def __init__(self, image_paths: Sequence[Path], res2: int):
        self.image_paths = [Path(p) for p in image_paths]
        self.res2 = res2

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int):
        path = self.image_paths[index]
        try:
            image = load_rgb(path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
            log.warning("skipping unreadable training image %s (%s: %s)", path, exc.__class__.__name__, exc)
            return index, None
        return index, pil_to_uint8_tensor(resize_center_crop(image, self.res2))


class EvalImages(Dataset):
    """Evaluation images: item i -> (i, uint8 image [3, res, res], int16 label [res, res]).

    `label_lut` maps raw label values (0..255) to evaluation classes (-1 = ignore). Without
    label paths the label is all -1 (used to cluster train images in the final evaluation).
    Unreadable files raise DataError naming the file: evaluation must see every image. With
    `skip_unreadable` (train images clustered by the final evaluation, no labels) an unreadable
    image is skipped with a warning instead, as in training: item i -> (i, None, None).
    `label_valid` (bool [256], optional) marks the label values the dataset defines; others
    are an error, or unlabelled with `label_policy` 'fix' (data/validation.py).
    """

    def __init__(self, image_paths: Sequence[Path], res: int, label_paths: Sequence[Path] | None = None,
                 label_lut: np.ndarray | None = None, label_policy: str = "error",
                 label_valid: np.ndarray | None = None, skip_unreadable: bool = False):
        self.image_paths = [Path(p) for p in image_paths]
        self.label_paths = [Path(p) for p in label_paths] if label_paths is not None else None
        self.res = res
        self.label_lut = label_lut
        self.label_policy = label_policy
        fixes_bad_labels(label_policy)  # rejects an unknown policy here, not in a worker
        self.label_valid = label_valid
        if label_lut is not None and label_valid is not None:
            # Undefined values are unlabelled (-1) once --bad_labels fix lets them through.
            self.label_lut = np.where(label_valid, label_lut, -1).astype(label_lut.dtype)
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.image_paths)

    def _label(self, path: Path, image_size) -> np.ndarray:
        label, _ = read_label_map(path, image_size, self.label_valid, self.label_policy)
        label = resize_center_crop(label, self.res, TF.InterpolationMode.NEAREST)
        raw = np.asarray(label, dtype=np.uint8)
        mapped = self.label_lut[raw]
        return mapped

    def __getitem__(self, index: int):
        path = self.image_paths[index]
        try:
            image = load_rgb(path)
        except Exception as exc:  # noqa: BLE001
            if self.skip_unreadable and self.label_paths is None:
                log.warning("skipping unreadable training image %s (%s: %s)", path, exc.__class__.__name__, exc)
                return index, None, None
            raise DataError(f"unreadable evaluation image {path} ({exc.__class__.__name__}: {exc}); "
                            "re-download or remove it from the list") from None
        if self.label_paths is None:
            label = np.full((self.res, self.res), -1, dtype=np.int16)
        else:
            label = self._label(self.label_paths[index], image.size)
        image = pil_to_uint8_tensor(resize_center_crop(image, self.res))
        return index, image, torch.from_numpy(np.ascontiguousarray(label, dtype=np.int16))


# Decode truncated JPEGs as far as they go is NOT enabled: a truncated file should be reported.
ImageFile.LOAD_TRUNCATED_IMAGES = False
