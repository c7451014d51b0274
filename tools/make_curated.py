"""Generate the IIC/PiCIE "curated" COCO-Stuff image lists from the label maps.

PiCIE trains and evaluates COCO-Stuff-27 on the image lists that IIC published
(``curated/<split>/Coco164kFull_Stuff_Coarse_7.txt``: 49,629 train2017 and 2,175 val2017 ids).
This tool rebuilds such lists for any folder in the PiCIE layout::

    <data_root>/images/<split>/<id>.jpg
    <data_root>/annotations/<split>/<id>.png      (COCO-Stuff stuffthingmaps)

An image is selected when its label map

1. is at least ``--min_size`` (360) pixels in both height and width (360 itself passes), and
2. has at least ``--min_stuff_frac`` (75%) of its pixels in fine classes whose coarse class is a
   stuff class (12..26).

Unlabeled pixels (255): the fraction is taken over ALL pixels of the label map, i.e. unlabeled
pixels count in the denominator as "not stuff". This was settled on the real sample in
``../shared/data/cocostuff_mini``: counting all pixels reproduces the official membership of all
231 images exactly, while dividing by labelled pixels only would wrongly select 9 of them
(e.g. train2017 000000010428: 57% stuff over all pixels, 86% over labelled pixels, not curated).

The output is one 12-digit image id per line, sorted, as in the official lists; only ids whose
image file exists are listed.

Usage::

    python -m tools.make_curated --data_root ROOT [--splits train2017 val2017] [--min_size 360]
        [--min_stuff_frac 0.75] [--workers N] [--out_dir DIR]
"""

import argparse
import functools
import multiprocessing
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from config.from_args import curated_settings
from config.settings import CuratedSettings
from data.cocostuff_classes import FINE_TO_COARSE, N_FINE, STUFF_CLASSES, load_fine_to_coarse
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import write_text

LIST_NAME = 'Coco164kFull_Stuff_Coarse_7.txt'
DEFAULT_SPLITS = ('train2017', 'val2017')
IMAGE_SUFFIX = '.jpg'
LABEL_SUFFIX = '.png'


def stuff_mask_lut(fine_to_coarse: dict[int, int]) -> np.ndarray:
    """Boolean table of length 256: True for fine values whose coarse class is stuff.

    Unlabeled (255) and values without a fine class (182..254) are False, so they count as
    "not stuff" pixels in the fraction.
    """
    lut = np.zeros(256, dtype=bool)
    stuff = set(STUFF_CLASSES)
    for fine, coarse in fine_to_coarse.items():
        if 0 <= int(fine) < N_FINE and int(coarse) in stuff:
            lut[int(fine)] = True
    return lut


def _passes(label_path: Path, min_size: int, min_stuff_frac: float, stuff_lut: np.ndarray) -> bool:
    """Apply the curation rule to one label map (top level so that a Pool can pickle it)."""
    with Image.open(label_path) as img:
        width, height = img.size
        # The size test needs only the PNG header; skip decoding the pixels of small maps.
        if min(width, height) < min_size:
            return False
        if img.mode not in ('L', 'P'):
            raise ValueError(
                f'{label_path}: expected a single-channel label PNG, got mode {img.mode}')
        labels = np.asarray(img)
    # Fraction over all pixels: unlabeled (255) pixels stay in the denominator (see module doc).
    return float(stuff_lut[labels].mean()) >= min_stuff_frac


def select_curated(label_paths: Iterable[str | Path], min_size: int = 360,
                   min_stuff_frac: float = 0.75, fine_to_coarse: dict[int, int] | None = None,
                   workers: int = 1, desc: str | None = None) -> list[str]:
    """Return the sorted image ids (file stems) of the label maps that pass the curation rule.

    Args:
        label_paths: stuffthingmaps PNG files named ``<image id>.png``.
        min_size: minimum height and width in pixels (inclusive).
        min_stuff_frac: minimum fraction of all pixels (unlabeled included) that are stuff.
        fine_to_coarse: fine -> coarse table; the built-in table when None.
        workers: processes to use; 1 (or less) runs in this process.
        desc: progress-bar label; no progress bar when None.

    Returns:
        Sorted list of the selected ids.
    """
    paths = [Path(p) for p in label_paths]
    if fine_to_coarse is None:
        fine_to_coarse = dict(enumerate(FINE_TO_COARSE))
    check = functools.partial(_passes, min_size=min_size, min_stuff_frac=min_stuff_frac,
                              stuff_lut=stuff_mask_lut(fine_to_coarse))
    progress = functools.partial(tqdm, total=len(paths), desc=desc, unit='img',
                                 disable=desc is None)
    if workers <= 1 or len(paths) <= 1:
        keep = list(progress(map(check, paths)))
    else:
        with multiprocessing.Pool(min(workers, len(paths))) as pool:
            # Chunks amortise the inter-process overhead; ordered imap keeps results aligned.
            chunksize = max(1, min(64, len(paths) // (4 * workers)))
            keep = list(progress(pool.imap(check, paths, chunksize=chunksize)))
    return sorted(p.stem for p, ok in zip(paths, keep, strict=True) if ok)


def split_label_paths(data_root: Path, split: str) -> list[Path]:
    """Label maps of one split whose image file also exists, sorted by id.

    Raises:
        UserError: the annotations or images folder of the split is missing.
    """
    label_dir = data_root / 'annotations' / split
    image_dir = data_root / 'images' / split
    for folder in (label_dir, image_dir):
        if not folder.is_dir():
            raise UserError(f'{folder} not found; --splits names the splits of --data_root to list '
                            f'(annotations/<split> and images/<split>)')
    return sorted(p for p in label_dir.glob('*' + LABEL_SUFFIX)
                  if (image_dir / (p.stem + IMAGE_SUFFIX)).is_file())


def write_list(ids: Sequence[str], out_file: Path) -> None:
    """Write ids one per line (newline-terminated, like the official lists)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_file, ''.join(i + '\n' for i in ids))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Write IIC/PiCIE curated COCO-Stuff image lists '
                    f'(curated/<split>/{LIST_NAME}) from the stuffthingmaps label PNGs.')
    parser.add_argument('--data_root', type=Path, required=True,
                        help='dataset root holding images/<split>/*.jpg, annotations/<split>/*.png '
                             'and optionally fine_to_coarse_dict.pickle (used instead of the '
                             'built-in class table when present)')
    parser.add_argument('--splits', nargs='+', default=list(DEFAULT_SPLITS),
                        help='splits to process (default: %(default)s)')
    parser.add_argument('--min_size', type=int, default=360,
                        help='minimum label-map height and width in pixels, inclusive '
                             '(default: %(default)s)')
    parser.add_argument('--min_stuff_frac', type=float, default=0.75,
                        help='minimum fraction of all pixels (unlabeled included) in stuff classes '
                             '(default: %(default)s)')
    parser.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='worker processes for reading label maps (default: %(default)s)')
    parser.add_argument('--out_dir', type=Path, default=None,
                        help='folder that receives curated/<split>/... (default: --data_root)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = parse_args(argv)
    return run_cli(lambda: write_curated(curated_settings(args)))  # bad input: one error line, exit 2


def write_curated(settings: CuratedSettings) -> None:
    """The curated list of each split of settings.splits, under settings.out_dir/curated/."""
    try:
        fine_to_coarse = load_fine_to_coarse(settings.data_root)
    except ValueError as exc:
        raise UserError(f'--data_root {settings.data_root}: {exc}') from None
    for split in settings.splits:
        label_paths = split_label_paths(settings.data_root, split)
        ids = select_curated(label_paths, settings.min_size, settings.min_stuff_frac, fine_to_coarse,
                             workers=settings.workers, desc=split)
        out_file = settings.out_dir / 'curated' / split / LIST_NAME
        write_list(ids, out_file)
        print(f'{split}: {len(ids)} of {len(label_paths)} images -> {out_file}')


if __name__ == '__main__':
    sys.exit(main())
