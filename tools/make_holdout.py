"""A data root for tuning without the val set: its val split is a labelled hold-out of train2017.

Choosing settings (lr, K, transforms, epochs) by their val2017 score and then reporting val2017
makes the reported number part of the choice. This tool writes a second data root in the COCO
layout (docs/datasets.md) in which

    train2017   is the source's curated train2017 list minus the hold-out
    val2017     is the hold-out: --n_holdout (or --fraction) ids drawn from that list with --seed,
                read from the source's train2017 images and label maps

so that every tool of the toolkit (train_picie.py, test_picie.py, the sh_files scripts) trains on
the rest of train2017 and scores on the hold-out with no option of its own. Nothing is copied:
images/<split>/ and annotations/<split>/ hold one symbolic link per image to the source's
train2017 files (per file, not per folder, so that --fullcoco, which lists the image folder, does
not see the hold-out either), curated/ holds the two lists, HOLDOUT.json says what was drawn
(with the held-out image ids).
The source's val2017 is not read at all. Run again with the same arguments it does nothing.

    python -m tools.make_holdout --data_root datasets/coco --out datasets/coco_holdout --n_holdout 2000
    python -m tools.make_holdout --data_root datasets/demo --out datasets/demo_holdout --fraction 0.1

Tune on --data_root datasets/coco_holdout; once the choice is made, train it on the full root and
report val2017 once (docs/understanding_picie.md, "Tuning without touching val").
"""
import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from config.from_args import holdout_settings
from data.cocostuff import CURATED_NAME, read_curated_ids
from data.cocostuff_classes import PICKLE_NAME
from data.validation import DataError
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import write_text
from utils.runtime import script_main

TRAIN, VAL = "train2017", "val2017"
RECORD_NAME = "HOLDOUT.json"
IDS_KEY = "holdout_ids"  # the held-out image ids (val2017 of the hold-out root), sorted


class HoldoutError(UserError):
    """The source or the output folder cannot give a hold-out; the message names the flag or path."""


def draw_holdout(ids: Sequence[str], n_holdout: int, seed: int) -> list[str]:
    """The held-out ids: n_holdout of `ids` drawn without replacement by numpy's generator of `seed`, sorted
    (a pure function of its inputs, so the same seed gives the same split on every machine)."""
    picks = np.random.default_rng(seed).choice(len(ids), size=n_holdout, replace=False)
    return sorted(ids[i] for i in picks)


def _write_list(ids: Sequence[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(f"{i}\n" for i in ids))


def make_holdout(data_root: Path, out: Path, n_holdout: int | None = None, fraction: float | None = None,
                 seed: int = 0) -> dict:
    """Write the hold-out root `out` from the COCO-layout root `data_root`; returns the record written to
    out/HOLDOUT.json. Exactly one of n_holdout and fraction is given."""
    if not Path(data_root).is_dir():
        raise HoldoutError(f"--data_root {data_root} is not a folder; give a COCO-Stuff root (docs/datasets.md), "
                           f"e.g. datasets/coco")
    data_root, out = Path(data_root).resolve(), Path(out)
    try:
        ids = read_curated_ids(data_root, TRAIN)
    except DataError as exc:
        raise HoldoutError(f"--data_root: {exc}") from None
    if fraction is not None:
        if not 0 < fraction < 1:
            raise HoldoutError(f"--fraction {fraction}: give a fraction strictly between 0 and 1, e.g. 0.1")
        n_holdout = max(1, round(fraction * len(ids)))
    if n_holdout is None or not 1 <= n_holdout < len(ids):
        raise HoldoutError(f"--n_holdout {n_holdout}: the curated train2017 list of {data_root} has {len(ids)} "
                           f"images; hold out at least 1 and fewer than {len(ids)}")
    for sub in ("images", "annotations"):
        if not (data_root / sub / TRAIN).is_dir():
            raise HoldoutError(f"--data_root: {data_root / sub / TRAIN} not found; the hold-out needs train2017 "
                               f"images and label maps (the layout: docs/datasets.md)")
    held = draw_holdout(ids, n_holdout, seed)
    # The hold-out is scored, so each of its images needs a label map (training images do not).
    missing = [i for i in held if not (data_root / "annotations" / TRAIN / f"{i}.png").is_file()]
    if missing:
        raise HoldoutError(f"--data_root: {len(missing)} held-out images have no label map, e.g. "
                           f"{data_root / 'annotations' / TRAIN / (missing[0] + '.png')}; restore the train2017 "
                           f"annotations (or regenerate the curated list with python -m tools.make_curated)")
    record = {"source": str(data_root), "seed": seed, "n_holdout": n_holdout, "n_train": len(ids) - n_holdout,
              "val2017": f"held out of {data_root / 'curated' / TRAIN / CURATED_NAME}",
              "note": "the source's val2017 is not part of this root", IDS_KEY: sorted(held)}
    if out.exists() and any(out.iterdir()):
        previous = json.loads((out / RECORD_NAME).read_text()) if (out / RECORD_NAME).is_file() else None
        if previous == record:
            return record  # written before with the same arguments
        if previous is not None and {**previous, IDS_KEY: record[IDS_KEY]} == record:
            # The same draw, recorded before the ids were: the root is right, its record gets them.
            write_text(out / RECORD_NAME, json.dumps(record, indent=1) + "\n")
            return record
        what = ("not a hold-out root written by this tool" if previous is None else
                f"another hold-out ({previous.get('n_holdout')} images of {previous.get('source')}, seed "
                f"{previous.get('seed')})")
        raise HoldoutError(f"--out {out} exists and holds {what}; remove it or choose a new folder")
    held_set = set(held)
    kept = [i for i in ids if i not in held_set]  # the curated list's own order
    for split, split_ids in ((TRAIN, kept), (VAL, held)):
        for sub, suffix in (("images", ".jpg"), ("annotations", ".png")):
            folder = out / sub / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in split_ids:
                source = data_root / sub / TRAIN / f"{i}{suffix}"
                # Training images need no label map: link only those that exist (the probe reads them).
                if sub == "images" or source.is_file():
                    os.symlink(source, folder / f"{i}{suffix}")
        _write_list(split_ids, out / "curated" / split / CURATED_NAME)
    if (data_root / PICKLE_NAME).is_file():
        os.symlink(data_root / PICKLE_NAME, out / PICKLE_NAME)
    # Written last: its presence says the root is complete.
    write_text(out / RECORD_NAME, json.dumps(record, indent=1) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser("make_holdout", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data_root", type=Path, required=True, help="a COCO-layout root with curated train2017")
    parser.add_argument("--out", type=Path, required=True, help="the hold-out root to write")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--n_holdout", type=int, help="how many train2017 images to hold out as val2017")
    size.add_argument("--fraction", type=float, help="the fraction of train2017 to hold out as val2017")
    parser.add_argument("--seed", type=int, default=0, help="which images are held out")
    args = parser.parse_args(argv)

    def hold_out():
        settings = holdout_settings(args)
        record = make_holdout(settings.data_root, settings.out, settings.n_holdout, settings.fraction, settings.seed)
        print(f"{settings.out}: train2017 {record['n_train']} images, val2017 {record['n_holdout']} held out of "
              f"{record['source']}'s train2017 (seed {record['seed']})")
    return run_cli(hold_out)  # bad input: one error line, exit 2


if __name__ == "__main__":
    script_main(main)
