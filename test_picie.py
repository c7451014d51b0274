"""Evaluate a PiCIE checkpoint (this toolkit's or the original project's) on the val split.

    python test_picie.py --eval_path results/<run>/checkpoint.pth --data_root datasets/coco [--out m.json]

By default the stored classifiers (the centroids of the checkpoint's last epoch) are scored,
which needs only the val images and labels. With --recluster the paper's final protocol is
run instead: fresh k-means with K_test clusters on the train images, --repeats times. With
--linear_probe a 1x1 linear classifier is trained on the frozen features against the train
split's ground truth and scored on val without matching (modules/probe.py).

--flip and --crf score the options of current papers beside the plain protocol, in one pass:
the JSON gets "flip", "crf" and "flip_crf" (each with acc, mIoU, ...) next to the plain keys,
and "seconds_per_image" of each. With more clusters than classes, the many-to-one (majority)
matching is reported under "majority" beside the one-to-one Hungarian matching (the default
and the paper's protocol), in every variant.
"""
import os
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

import torch

from config import (
    METRICS_NAME,
    TestSettings,
    data_root_line,
    evaluation_memory,
    get_test_parser,
    given_flags,
    parse_args,
    test_output,
    test_settings,
    test_target,
)
from data.build import build_source
from data.validation import DataError, scan_label_maps
from modules.crf import require_crf
from modules.evaluation import (
    check_fresh_kmeans,
    evaluation_record,
    evaluation_runtime,
    fresh_cluster_evaluation,
    score_classifiers,
    val_loader,
)
from modules.networks import model_from_checkpoint, network_cost
from modules.probe import linear_probe
from utils import dist
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.cli import run_cli
from utils.errors import UserError
from utils.hold import Hold
from utils.run import setup_logging, write_json
from utils.runtime import make_runtime, script_main


def main(args, given: Collection[str] = ()) -> dict:
    """Evaluate --eval_path; `given`: the flags the command line set itself (given_flags). The
    parsed flags go to config/from_args.py only, which returns the typed settings."""
    log = setup_logging()
    target = test_target(args)
    if target.out is not None:
        check_output_file(target.out, target.out_flag)
    if target.crf:
        require_crf()  # before the checkpoint and data are read: a missing package is found in a second
    ckpt = load_checkpoint(target.eval_path)
    # The data the checkpoint's run recorded, unless --data_root says otherwise (named in the output and the JSON).
    s = test_settings(args, target, ckpt, given)
    if s.k_test_unused:
        log.warning("--K_test %d is unused: %s", s.eval.n_clusters, unused_k_test(s, ckpt))
    log.info("%s", data_root_line(s.data_record))
    return evaluate(s, ckpt, log)


def evaluate(s: TestSettings, ckpt: dict, log) -> dict:
    """Score the checkpoint `ckpt` as `s` says; the metrics are logged and written to s.target.out."""
    settings, target = s.eval, s.target
    runtime = evaluation_runtime(make_runtime(target.device, target.precision, target.deterministic), settings)
    model = model_from_checkpoint(ckpt, runtime.device).to(memory_format=torch.channels_last)
    # Only --recluster (fresh k-means on train images) and --linear_probe (train labels) read the train split.
    try:
        source = build_source(s.data)
    except DataError as exc:
        if not s.reads_train_split:
            raise
        flag = ("--recluster (fresh k-means on the train images)" if s.protocol == "fresh k-means"
                else "--linear_probe (train labels)")
        raise DataError(f"{flag} reads the train split: {exc}") from None
    if not source.has_labels:
        raise DataError(f"no labelled evaluation images under {s.data.data_root}; test_picie.py needs val labels")
    if s.protocol == "fresh k-means" and not source.cluster_images:
        raise DataError(f"--recluster clusters the train images afresh, and {s.data.data_root} holds none; add the "
                        "train split or score the stored classifier (drop --recluster)")
    if s.protocol == "fresh k-means":
        check_fresh_kmeans(source, settings, model.stride)  # before any pass over the images
    # The memory of this evaluation, before any pass (a --K_test too large for the data is said first, above).
    evaluation_memory(settings, network_cost(model), runtime.device, target.skip_memory_check)
    loader = val_loader(source, settings, runtime)
    label_report = scan_label_maps(source.val_images, source.val_labels, source.label_valid, settings.bad_labels,
                                   settings.num_workers)
    evaluation = dict(evaluation_record(settings, source, "identity" if s.protocol == "linear_probe" else "hungarian"),
                      protocol=s.protocol, **s.data_record)
    log.info("evaluating %s (%s, epoch %s): %s", target.eval_path, ckpt["format"], ckpt.get("epoch"),
             ", ".join(f"{k} {v}" for k, v in evaluation.items()))
    if s.protocol == "linear_probe":
        result = linear_probe(model, source, settings, s.probe, runtime)
    elif s.protocol == "fresh k-means":
        result = dict(fresh_cluster_evaluation(model, source, settings, runtime, loader))
    else:
        if not ckpt.get("classifiers"):
            raise CheckpointError(f"{target.eval_path} stores no classifier; use --recluster to cluster afresh")
        warn_fewer_clusters(ckpt, source.n_classes, target.eval_path, log)
        scored = score_classifiers(model, loader, ckpt["classifiers"], source, settings, runtime, desc="test")
        first = "view1" if "view1" in scored else next(iter(scored))
        result = dict(scored[first])
        result["classifier"] = first
        result["per_classifier"] = {name: {k: m[k] for k in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "majority")
                                           if k in m} for name, m in scored.items()}
    result.update(checkpoint=str(target.eval_path), checkpoint_format=ckpt["format"], epoch=ckpt.get("epoch"),
                  n_images=result.get("n_images", len(source.val_images)), class_names=list(source.class_names),
                  label_maps=label_report, evaluation=evaluation)
    for line in score_lines(result):
        log.info("%s", line)
    for name, iou in (result.get("per_class_iou") or {}).items():
        log.info("  %-20s %s", name, "  n/a" if iou is None else f"{iou:6.2f}")
    out = target.out
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, result)  # whole or not at all (utils/files.py): a full disk is one line naming it
        except OSError as exc:
            raise UserError(f"cannot write the metrics to {out} ({exc.strerror or exc}); choose a writable "
                            f"{target.out_flag}") from None
        log.info("metrics written to %s", out)
    return result


def check_output_file(path: Path, flag: str) -> None:
    """Before any work: the metrics file can be written (one line naming `flag` where it cannot)."""
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder; --out names the metrics file (e.g. {path / METRICS_NAME}), "
                        "--save_root the folder it goes to")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag}: {existing} is a file, not a folder; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {existing} is not writable; choose another {flag}")


def unused_k_test(s: TestSettings, ckpt: dict) -> str:
    """Why --K_test does nothing without --recluster (the warning's reason)."""
    if s.protocol == "linear_probe":
        return "--linear_probe trains a classifier of the classes and clusters nothing"
    sizes = sorted({int(c["weight"].shape[0]) for c in (ckpt.get("classifiers") or {}).values()})
    kept = f"its own {' and '.join(map(str, sizes))} clusters" if sizes else "its own clusters"
    return (f"the stored classifier of {s.target.eval_path} is scored with {kept}; pass --recluster to cluster the "
            "train images afresh with --K_test clusters")


def warn_fewer_clusters(ckpt: dict, n_classes: int, path: str, log) -> None:
    """A stored classifier with fewer clusters than the evaluated classes (a stuff-only checkpoint
    scored on all classes) is scored as asked, but the classes left without a cluster score IoU 0:
    said, with the flags that score it on its own classes or cluster afresh."""
    sizes = [int(c["weight"].shape[0]) for c in (ckpt.get("classifiers") or {}).values()]
    if sizes and min(sizes) < n_classes:
        saved = ckpt.get("eval_config", {})
        own = " ".join(f"--{g}" for g in ("stuff", "thing") if saved.get(g)) or "--stuff or --thing"
        log.warning("the stored classifier of %s has %d clusters for the %d classes evaluated: %d classes get no "
                    "cluster and score IoU 0; pass %s to score it on the classes it was trained for, or "
                    "--recluster --K_test %d to cluster afresh", path, min(sizes), n_classes, n_classes - min(sizes),
                    own, n_classes)


def score_lines(result: dict) -> list[str]:
    """The printed scores: plain, then many-to-one (majority) and each --flip / --crf variant present."""
    def scores(m: dict) -> str:
        line = f"acc {m['acc']:.2f}  mIoU {m['mIoU']:.2f}"
        if m.get("thing_mIoU") is not None and m.get("stuff_mIoU") is not None:
            line += f"  thing mIoU {m['thing_mIoU']:.2f}  stuff mIoU {m['stuff_mIoU']:.2f}"
        return line

    one_to_one = "" if result.get("matching") == "identity" else " (one-to-one Hungarian)"
    lines = [scores(result) + (one_to_one if "majority" in result else "")]
    if "majority" in result:
        lines.append(scores(result["majority"]) + " (many-to-one majority: each cluster to the class it overlaps most)")
    seconds = result.get("seconds_per_image", {})
    for variant in ("flip", "crf", "flip_crf"):
        if variant in result:
            line = f"{variant + ':':10s}{scores(result[variant])}"
            if "majority" in result[variant]:
                line += f"  | majority acc {result[variant]['majority']['acc']:.2f} mIoU " \
                        f"{result[variant]['majority']['mIoU']:.2f}"
            if variant in seconds:
                line += f"  ({seconds[variant]:.3f} s/image, plain {seconds['plain']:.3f})"
            lines.append(line)
    return lines


def test_argv(train_argv: Sequence[str]) -> list[str]:
    """The arguments of `train_picie.py --eval_only ...` (the original's test command) that
    test_picie.py takes: flags of training only (--save_root, --num_epoch, ...) are dropped."""
    known = {option for action in get_test_parser()._actions for option in action.option_strings}
    kept, keep = [], False
    for word in train_argv:
        if word.startswith("--"):
            keep = word.split("=")[0] in known
        if keep:
            kept.append(word)
    return kept


def cli(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(get_test_parser(), argv)

    def run() -> None:
        # One run at a time writes a metrics file (utils/hold.py); nothing is held when none is written.
        with Hold(*test_output(args), enabled=dist.is_main()):
            main(args, given_flags(get_test_parser(), argv))

    return run_cli(run)


if __name__ == "__main__":
    script_main(cli)
