"""Evaluate a PiCIE checkpoint (this toolkit's or the original project's) on the val split.

    python test_picie.py --eval_path results/<run>/checkpoint.pth --data_root datasets/coco [--out m.json]

By default the stored classifiers (the centroids of the checkpoint's last epoch) are scored,
which needs only the val images and labels. With --recluster the paper's final protocol is
run instead: fresh k-means with K_test clusters on the train images, --repeats times. With
--linear_probe a 1x1 linear classifier is trained on the frozen features against the train
split's ground truth and scored on val without matching (utils/probe.py).
"""
import json
import sys

import torch

from data.build import build_source
from data.datasets import DataError
from data.validation import scan_label_maps
from modules.fpn import PretrainError
from utils import dist
from utils.checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint
from utils.config import finalize_args, get_args_parser
from utils.pipeline import fresh_cluster_evaluation, make_runtime, score_classifiers, val_loader
from utils.probe import linear_probe
from utils.run import setup_logging, write_json

USER_ERRORS = (DataError, CheckpointError, PretrainError, ValueError, FileNotFoundError)


def apply_checkpoint_eval_config(args, ckpt: dict) -> None:
    """Classes evaluated: the command line's --stuff/--thing, else the checkpoint's, else all."""
    saved = ckpt.get("eval_config", {})
    if args.stuff is None and args.thing is None:
        args.stuff = bool(saved.get("stuff", True))
        args.thing = bool(saved.get("thing", True))
        if not (args.stuff or args.thing):
            args.stuff = args.thing = True


def main(args) -> dict:
    log = setup_logging()
    if not args.eval_path:
        raise ValueError("--eval_path is required: the checkpoint to evaluate (e.g. results/<run>/checkpoint.pth)")
    ckpt = load_checkpoint(args.eval_path)
    apply_checkpoint_eval_config(args, ckpt)
    runtime = make_runtime(args)
    model = build_model_from_checkpoint(ckpt, runtime.device).to(memory_format=torch.channels_last)
    source = build_source(args)
    if not source.has_labels:
        raise DataError(f"no labelled evaluation images under {args.data_root}; test_picie.py needs val labels")
    loader = val_loader(source, args, runtime)
    label_report = scan_label_maps(source.val_images, source.val_labels, source.label_valid, args.bad_labels,
                                   args.num_workers)
    log.info("evaluating %s (%s, epoch %s) on %d images, %d classes", args.eval_path, ckpt["format"],
             ckpt.get("epoch"), len(source.val_images), source.n_classes)
    if args.linear_probe:
        result = linear_probe(model, source, args, runtime)
    elif args.recluster:
        fresh = fresh_cluster_evaluation(model, source, args, runtime, loader)
        result = {k: v for k, v in fresh.items()}
    else:
        if not ckpt.get("classifiers"):
            raise CheckpointError(f"{args.eval_path} stores no classifier; use --recluster to cluster afresh")
        scored = score_classifiers(model, loader, ckpt["classifiers"], source, args, runtime, desc="test")
        first = "view1" if "view1" in scored else next(iter(scored))
        result = dict(scored[first])
        result["classifier"] = first
        result["per_classifier"] = {name: {k: m[k] for k in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU")}
                                    for name, m in scored.items()}
    result.update(checkpoint=str(args.eval_path), checkpoint_format=ckpt["format"], epoch=ckpt.get("epoch"),
                  n_images=result.get("n_images", len(source.val_images)), class_names=list(source.class_names),
                  label_maps=label_report)
    log.info("acc %.2f  mIoU %.2f%s", result["acc"], result["mIoU"],
             "" if result.get("thing_mIoU") is None else
             f"  thing mIoU {result['thing_mIoU']:.2f}  stuff mIoU {result['stuff_mIoU']:.2f}")
    for name, iou in (result.get("per_class_iou") or {}).items():
        log.info("  %-20s %s", name, "  n/a" if iou is None else f"{iou:6.2f}")
    if args.out:
        write_json(args.out, result)
        log.info("metrics written to %s", args.out)
    return result


def cli(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        args = finalize_args(args, for_training=False)
        main(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(cli())
