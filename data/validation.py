"""Checks of evaluation label maps against their images, shared by the datasets and the
up-front scan that train_picie.py / test_picie.py run before any training or evaluation.

A label map is wrong when it cannot be read, is not an 8-bit map of class ids (mode L or P),
differs in size from its image, or holds values the dataset does not define (COCO-Stuff:
0..181 and 255). `--bad_labels error` (default) stops with a DataError naming the file;
`--bad_labels fix` (alias: resize) resizes it to the image by nearest neighbour and treats
undefined values as unlabelled, and the fixes are counted.
"""
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from utils.errors import UserError

log = logging.getLogger(__name__)

BAD_LABEL_POLICIES = ("error", "fix", "resize")  # 'resize' is the earlier name of 'fix'
DEFAULT_BAD_LABELS = "error"   # --bad_labels' default, and that of val_dataset


class DataError(UserError):
    """A data file or folder is missing or malformed; the message names it and says what to do."""


def fixes_bad_labels(policy: str) -> bool:
    if policy not in BAD_LABEL_POLICIES:
        raise UserError(f"--bad_labels {policy!r}: choose one of {', '.join(BAD_LABEL_POLICIES)}")
    return policy != "error"


def describe_values(valid: np.ndarray) -> str:
    """'0..181 and 255' for a boolean mask [256] of the defined label values."""
    runs, start = [], None
    for value in range(len(valid) + 1):
        inside = value < len(valid) and bool(valid[value])
        if inside and start is None:
            start = value
        elif not inside and start is not None:
            runs.append(f"{start}..{value - 1}" if value - 1 > start else str(start))
            start = None
    return " and ".join(runs) if runs else "none"


def read_label_map(path: Path, image_size: tuple[int, int], valid: np.ndarray | None = None,
                   policy: str = "error") -> tuple[Image.Image, list[str]]:
    """Open the label map of an image of `image_size` (w, h) and check it.

    Returns (label map as a PIL image of mode L or P and size image_size, fixes made: a list
    with 'resized' and/or 'values'). Raises DataError naming the file when it is unreadable,
    or wrong and policy is 'error'.
    """
    fix = fixes_bad_labels(policy)
    try:
        with Image.open(path) as label:
            label.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        raise DataError(f"unreadable label map {path} ({exc.__class__.__name__}); re-create or remove it") from None
    if label.mode not in ("L", "P"):
        raise DataError(f"label map {path} has mode {label.mode}; expected an 8-bit PNG of class ids")
    fixes = []
    if valid is not None:
        raw = np.asarray(label, dtype=np.uint8)
        undefined = ~valid[raw]
        if undefined.any():
            values = np.unique(raw[undefined])
            if not fix:
                shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
                raise DataError(f"label map {path} has values outside {describe_values(valid)} ({shown}); fix the "
                                "file or pass --bad_labels fix to treat them as unlabelled")
            fixes.append("values")
    if label.size != tuple(image_size):
        if not fix:
            raise DataError(f"label map {path} is {label.size[0]}x{label.size[1]} but its image is "
                            f"{image_size[0]}x{image_size[1]}; fix the file or pass --bad_labels fix "
                            "to resize it (nearest neighbour)")
        label = label.resize(tuple(image_size), Image.NEAREST)
        fixes.append("resized")
    return label, fixes


def image_size_of(path: Path) -> tuple[int, int]:
    """(w, h) from the image header (no decoding); DataError naming the file if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"unreadable evaluation image {path} ({exc.__class__.__name__}: {exc}); "
                        "re-download or remove it from the list") from None


def scan_label_maps(image_paths: Sequence[Path], label_paths: Sequence[Path], valid: np.ndarray | None,
                    policy: str = "error", workers: int = 4, lut: np.ndarray | None = None) -> dict:
    """Check every evaluation label map once, before training, so that a bad file stops the run
    at its start instead of at the first evaluation (and fixes are counted once). With the
    dataset's `lut` (raw value -> class, -1 ignored), labels with no evaluated class at all are
    an error: there would be nothing to score.

    Returns {"n_label_maps", "n_labels_resized", "n_labels_bad_values", "fixed_label_maps": [paths]}.
    Raises DataError for the first bad file (in list order) unless policy fixes it.
    """
    def check(pair):
        image_path, label_path = pair
        label, fixes = read_label_map(label_path, image_size_of(image_path), valid, policy)
        labelled = int((lut[np.asarray(label, dtype=np.uint8)] >= 0).sum()) if lut is not None else 1
        return fixes, labelled

    pairs = list(zip(image_paths, label_paths, strict=True))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes without the GIL
        checked = list(pool.map(check, pairs))
    results = [fixes for fixes, _ in checked]
    if pairs and sum(labelled for _, labelled in checked) == 0:
        raise DataError(f"none of the {len(pairs)} evaluation label maps (e.g. {pairs[0][1]}) has a pixel of an "
                        "evaluated class: there is nothing to score; check the label folder and --stuff/--thing")
    fixed = [str(label) for (_, label), fixes in zip(pairs, results, strict=True) if fixes]
    report = {"n_label_maps": len(pairs),
              "n_labels_resized": sum("resized" in f for f in results),
              "n_labels_bad_values": sum("values" in f for f in results),
              "fixed_label_maps": fixed[:100]}
    if fixed:
        log.warning("--bad_labels %s: fixed %d of %d label maps (%d resized to their image, %d with undefined "
                    "values set to unlabelled), e.g. %s", policy, len(fixed), len(pairs), report["n_labels_resized"],
                    report["n_labels_bad_values"], ", ".join(fixed[:3]))
    return report


def unreadable_images(paths: Sequence[Path], workers: int = 4) -> list[str]:
    """Paths of the images whose header PIL cannot read (not an image, empty, missing), checked
    before training; files damaged further in are found when decoded, and skipped then."""
    def unreadable(path: Path) -> bool:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - reading the header is the check
            return False
        except Exception:  # noqa: BLE001 - PIL raises many types for broken files
            return True

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        flags = list(pool.map(unreadable, paths))
    return [str(path) for path, bad in zip(paths, flags, strict=True) if bad]


def check_training_images(paths: Sequence[Path], max_fraction: float, workers: int = 4) -> None:
    """Before anything is written: DataError when no training image can be read, or more than
    --max_bad_fraction of them (the fraction the epochs would stop at anyway)."""
    bad = unreadable_images(paths, workers)
    if paths and len(bad) == len(paths):
        raise DataError(f"none of the {len(paths)} training images can be read (e.g. {bad[0]} is not an image "
                        "PIL can open): there is nothing to learn from; point --data_root at the images")
    check_bad_images(bad, len(paths), max_fraction)
    if bad:
        log.warning("%d of %d training images cannot be read and will be skipped: %s", len(bad), len(paths),
                    ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else ""))


def check_bad_images(bad_paths: Sequence[str], n_total: int, max_fraction: float) -> None:
    """DataError when more than max_fraction of the training images could not be read."""
    if bad_paths and len(bad_paths) > max_fraction * n_total:
        shown = ", ".join(str(p) for p in bad_paths[:3]) + (", ..." if len(bad_paths) > 3 else "")
        raise DataError(f"{len(bad_paths)} of {n_total} training images could not be read ({shown}), more than "
                        f"--max_bad_fraction {max_fraction}; replace or remove them, or raise --max_bad_fraction")


def image_paths_of(image_paths: Sequence, indices) -> list[str]:
    """The paths (as text) of the images `indices` of a dataset, in index order."""
    return [str(image_paths[i]) for i in sorted(indices)]


def check_skipped_images(image_paths: Sequence, skipped: set, max_fraction: float) -> None:
    """check_bad_images of the images `skipped` (indices) of a dataset of `image_paths`."""
    check_bad_images(image_paths_of(image_paths, skipped), len(image_paths), max_fraction)


def record_bad_images(epoch_record: dict, image_paths: Sequence, skipped: set, max_fraction: float, epoch: int,
                      log) -> None:
    """Training images unreadable in either pass of an epoch (counted once) are not trained on:
    counted (and the first 100 listed) in the epoch's record, named in the log; too many stop the run."""
    bad_paths = image_paths_of(image_paths, skipped)
    check_bad_images(bad_paths, len(image_paths), max_fraction)
    epoch_record["n_bad_images"] = len(bad_paths)
    if bad_paths:
        epoch_record["bad_images"] = bad_paths[:100]
        log.warning("epoch %d: skipped %d unreadable training image(s): %s", epoch + 1, len(bad_paths),
                    ", ".join(bad_paths[:5]) + (", ..." if len(bad_paths) > 5 else ""))
