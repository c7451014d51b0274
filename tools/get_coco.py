"""Prepare COCO-Stuff for PiCIE under one root: download (or take) the three archives, unpack them into
the layout data/cocostuff.py reads, check the counts, put the official curated lists in place.

    python -m tools.get_coco --root datasets/coco [--from DIR] [--base_url URL] [--delete_archives]

Archives (from the addresses the original PiCIE README gives; --base_url: a mirror with the same names):

    train2017.zip                    train2017/<id>.jpg -> ROOT/images/train2017/
    val2017.zip                      val2017/<id>.jpg   -> ROOT/images/val2017/
    stuffthingmaps_trainval2017.zip  {train2017,val2017}/<id>.png -> ROOT/annotations/{train2017,val2017}/

Then every split holds its published image count (118,287 and 5,000; --expect_counts for a subset)
and a label map for each image, and the lists of curated/ (49,629 / 2,175 ids) go to
ROOT/curated/<split>/, each listed id checked present. A re-run checks and skips what is complete;
what a step leaves on disk when interrupted, and how a re-run goes on, is in utils/fetch.py.
"""
import argparse
import logging
import shutil
from pathlib import Path

from config.from_args import coco_prep_settings
from config.parsers import add_fetch_flags
from config.settings import DatasetPrepSettings
from data.cocostuff import CURATED_NAME
from utils.cli import run_cli
from utils.fetch import Archive, FetchError, prepare_archives
from utils.runtime import script_main

log = logging.getLogger(__name__)

IMAGES_URL = "http://images.cocodataset.org/zips/"
STUFF_URL = "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
ARCHIVES = (
    Archive("train2017.zip", IMAGES_URL + "train2017.zip", (("train2017/", "images/train2017"),)),
    Archive("val2017.zip", IMAGES_URL + "val2017.zip", (("val2017/", "images/val2017"),)),
    Archive("stuffthingmaps_trainval2017.zip", STUFF_URL + "stuffthingmaps_trainval2017.zip",
            (("train2017/", "annotations/train2017"), ("val2017/", "annotations/val2017"))),
)
#: Images per split of COCO 2017, as published.
COUNTS = {"train2017": 118287, "val2017": 5000}
CURATED_DIR = Path(__file__).resolve().parents[1] / "curated"


def check_split(root: Path, split: str, expected: int) -> set[str]:
    """Ids of the split's images, checked: the expected count, and a label map for every image."""
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    images = {p.stem for p in image_dir.glob("*.jpg")}
    if len(images) != expected:
        raise FetchError(f"{image_dir} holds {len(images)} images where COCO 2017 {split} has {expected}; "
                         f"the archive is not the published one: replace it and delete {image_dir} to unpack again")
    unlabelled = sorted(images - {p.stem for p in label_dir.glob("*.png")})
    if unlabelled:
        raise FetchError(f"{len(unlabelled)} images of {split} have no label map in {label_dir} (e.g. "
                         f"{unlabelled[0]}.png); replace stuffthingmaps_trainval2017.zip and delete {label_dir}")
    return images


def place_curated(root: Path, split: str, curated_dir: Path, images: set[str]) -> int:
    """Copy the split's curated list into the root (a different list already there is kept, with a
    warning) and check that every id it lists has its image and label map; returns the id count."""
    source, dest = curated_dir / split / CURATED_NAME, root / "curated" / split / CURATED_NAME
    if not source.is_file():
        raise FetchError(f"curated list {source} not found; give --curated a folder holding "
                         f"<split>/{CURATED_NAME} (the repository's curated/ has the official lists)")
    if dest.is_file() and dest.read_bytes() != source.read_bytes():
        log.warning("%s differs from %s; kept (delete it to have the official list put in place)", dest, source)
    elif not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.rename(dest)
    ids = dest.read_text().split()
    missing = [i for i in ids if i not in images]
    if missing:
        raise FetchError(f"{len(missing)} ids of {dest} are not among the {split} images (e.g. {missing[0]}); "
                         f"the images are incomplete: replace the archive and delete {root / 'images' / split}")
    return len(ids)


def prepare_coco(settings: DatasetPrepSettings) -> dict[str, int]:
    """The whole preparation; returns the curated ids per split."""
    for _ in prepare_archives(ARCHIVES, settings.fetch):
        pass
    curated = {}
    root = settings.fetch.root
    for split, expected in settings.counts.items():
        images = check_split(root, split, expected)
        curated[split] = place_curated(root, split, settings.curated, images)
        log.info("%s: %d images, each with its label map; curated list %d ids, all present", split, len(images),
                 curated[split])
    log.info("COCO-Stuff is ready at %s. Train and test (paper settings):\n"
             "  DATA_ROOT=%s nohup ./sh_files/train_picie.sh > logs/picie_train.out &\n"
             "  DATA_ROOT=%s ./sh_files/test_picie.sh", root, root, root)
    return curated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download and lay out COCO-Stuff (COCO 2017 images, "
                                                 "stuffthingmaps, the curated lists) for PiCIE.")
    add_fetch_flags(parser, "datasets/coco", downloads=True)
    parser.add_argument("--curated", type=Path, default=CURATED_DIR, metavar="DIR",
                        help="folder holding <split>/Coco164kFull_Stuff_Coarse_7.txt (default: the repository's "
                             "curated/, the official lists)")
    args = parser.parse_args(argv)
    return run_cli(lambda: prepare_coco(coco_prep_settings(args, COUNTS)))


if __name__ == "__main__":
    script_main(main)
