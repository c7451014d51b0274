"""Lay out Cityscapes for PiCIE from the archives you downloaded (the site needs a login), check them,
and print the command to train.

    python -m tools.get_cityscapes --from ~/Downloads --root datasets/cityscapes

Archives (https://www.cityscapes-dataset.com/downloads/), unpacked into the layout data/cityscapes.py reads:

    leftImg8bit_trainvaltest.zip  leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png
    gtFine_trainvaltest.zip       gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png (and the other gtFine maps)
    leftImg8bit_trainextra.zip    leftImg8bit/train_extra/<city>/*_leftImg8bit.png

Then every split holds its published frame count (train 2,975, val 500, test 1,525, train_extra 19,998;
--expect_counts for a subset), and every train, val and test frame has its labelIds map. PiCIE's
protocol trains on train_extra + test (no labels needed) and evaluates on val + train (data/cityscapes.py).
The README and licence files at the archives' top level are not unpacked. Unpacking, re-runs and
interruptions are as for tools/get_coco.py (utils/fetch.py).
"""
import argparse
import logging
from pathlib import Path

from config.from_args import cityscapes_prep_settings
from config.parsers import add_fetch_flags
from config.settings import DatasetPrepSettings
from data.cityscapes import label_path, split_images
from utils.cli import run_cli
from utils.fetch import Archive, FetchError, prepare_archives
from utils.runtime import script_main

log = logging.getLogger(__name__)

WHERE = "download it (after logging in) from https://www.cityscapes-dataset.com/downloads/ into that folder"
LABELLED = ("train", "val", "test")
ARCHIVES = (
    Archive("leftImg8bit_trainvaltest.zip", None,
            tuple((f"leftImg8bit/{s}/", f"leftImg8bit/{s}") for s in LABELLED), WHERE),
    Archive("gtFine_trainvaltest.zip", None, tuple((f"gtFine/{s}/", f"gtFine/{s}") for s in LABELLED), WHERE),
    Archive("leftImg8bit_trainextra.zip", None, (("leftImg8bit/train_extra/", "leftImg8bit/train_extra"),), WHERE),
)
#: Frames per leftImg8bit split, as published.
COUNTS = {"train": 2975, "val": 500, "test": 1525, "train_extra": 19998}


def check_splits(root: Path, counts: dict[str, int]) -> dict[str, int]:
    """Frames per split, checked against the expected counts; every frame of a gtFine split has its labelIds."""
    frames = {}
    for split, expected in counts.items():
        images = split_images(root, split)
        if len(images) != expected:
            raise FetchError(f"{root / 'leftImg8bit' / split} holds {len(images)} frames where Cityscapes {split} "
                             f"has {expected}; the archive is not the published one: replace it and delete that "
                             "folder to unpack again")
        if split in LABELLED:
            unlabelled = [p for p in images if not label_path(root, split, p).is_file()]
            if unlabelled:
                raise FetchError(f"{len(unlabelled)} {split} frames have no labelIds map (e.g. "
                                 f"{label_path(root, split, unlabelled[0])}); replace gtFine_trainvaltest.zip and "
                                 f"delete {root / 'gtFine' / split}")
        frames[split] = len(images)
    return frames


def prepare_cityscapes(settings: DatasetPrepSettings) -> dict[str, int]:
    """The whole preparation; returns the frames per split."""
    for _ in prepare_archives(ARCHIVES, settings.fetch):
        pass
    root = settings.fetch.root
    frames = check_splits(root, settings.counts)
    log.info("Cityscapes is ready at %s (%s frames). Train (on train_extra + test) and test (on val + train):\n"
             "  DATA_ROOT=%s nohup ./sh_files/train_picie_cityscapes.sh > logs/picie_cityscapes.out &\n"
             "  python test_picie.py --cityscapes --data_root %s --eval_path results/picie_cityscapes/checkpoint.pth",
             root, ", ".join(f"{split} {n}" for split, n in frames.items()), root, root)
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lay out Cityscapes for PiCIE from its downloaded archives.")
    add_fetch_flags(parser, "datasets/cityscapes", downloads=False)
    args = parser.parse_args(argv)
    return run_cli(lambda: prepare_cityscapes(cityscapes_prep_settings(args, COUNTS)))


if __name__ == "__main__":
    script_main(main)
