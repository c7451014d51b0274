"""The one argument parser of train_picie.py and test_picie.py.

Flag names of the original PiCIE scripts are kept, so commands written for it run unchanged;
new flags sit beside them. Defaults are the paper's (the original sh_files/train_picie.sh);
augmentations are opt-in switches, as in the original.
"""
import argparse
import json
import os
from typing import List, Optional, Tuple

from data.cityscapes import DEFAULT_EVAL_SPLITS, DEFAULT_TRAIN_SPLITS, SPLITS as CITYSCAPES_SPLITS
from data.transforms import GEOMETRIC_OPS, JITTER_OPS, PHOTOMETRIC_OPS, AugmentConfig
from modules.fpn import ARCHS
from modules.methods import METHODS

DATASETS = ("cocostuff", "cityscapes", "folder")


def _split_list(text: str) -> List[str]:
    """'a,b c' -> ['a', 'b', 'c']; 'none' or '' -> []."""
    items = [t for t in text.replace(",", " ").split() if t]
    return [] if items == ["none"] else items


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("PiCIE", add_help=add_help,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = parser.add_argument_group("paths and run")
    g.add_argument("--data_root", type=str, default="datasets/coco", help="dataset root (layout in README)")
    g.add_argument("--save_root", type=str, default="results", help="folder that holds run folders")
    g.add_argument("--run_name", type=str, default=None,
                   help="run folder name under --save_root (default: picie_<arch>_K<K_train>_seed<seed>)")
    g.add_argument("--comment", type=str, default="", help="free text stored in the run config (original flag)")
    g.add_argument("--restart", action="store_true", help="resume from <run folder>/checkpoint.pth")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder that already holds a checkpoint (old files are moved aside)")
    g.add_argument("--seed", type=int, default=1, help="seed of model init, k-means and every transform draw")
    g.add_argument("--num_workers", type=int, default=4, help="DataLoader worker processes")
    g.add_argument("--device", type=str, default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the network and k-means run (auto: cuda if available)")
    g.add_argument("--precision", type=str, default="auto", choices=["auto", "fp32", "bf16"],
                   help="autocast dtype of forward passes (auto: bf16 on CUDA and on CPUs with bf16 units)")
    g.add_argument("--keep_checkpoints", type=int, default=0,
                   help="also keep the last N per-epoch checkpoints (checkpoint_epoch<N>.pth)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels and fp32, so that reruns and resumed runs match bit for bit on the CPU")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log losses, k-means loss, per-epoch metrics and a few cluster maps to "
                        "<run folder>/tensorboard (needs the optional tensorboard package)")

    g = parser.add_argument_group("data")
    g.add_argument("--dataset", type=str, default="cocostuff", choices=DATASETS, help="data source")
    g.add_argument("--cityscapes", action="store_true", help="same as --dataset cityscapes (original flag)")
    g.add_argument("--fullcoco", action="store_true",
                   help="train on every image in images/train2017 instead of the curated list")
    g.add_argument("--stuff", action="store_true", default=None, help="evaluate the 15 stuff classes")
    g.add_argument("--thing", action="store_true", default=None, help="evaluate the 12 thing classes")
    g.add_argument("--res", type=int, default=320, help="evaluation crop size")
    g.add_argument("--res1", type=int, default=320, help="network input size of both training views")
    g.add_argument("--res2", type=int, default=640, help="base image size the views are cut from")
    g.add_argument("--bad_labels", type=str, default="error", choices=["error", "fix", "resize"],
                   help="evaluation label map whose size differs from its image or with undefined values "
                        "(COCO-Stuff: not 0..181 or 255): stop with an error, or fix it (resize by nearest "
                        "neighbour, undefined values unlabelled; counted in final_metrics.json); resize = fix")
    g.add_argument("--train_list_repeats", type=int, default=1,
                   help="benchmarking: repeat the training image list N times (throughput on a small sample)")
    g.add_argument("--max_bad_fraction", type=float, default=0.01,
                   help="stop if more than this fraction of training images is unreadable")
    g.add_argument("--cityscapes_train_splits", type=str, nargs="+", default=list(DEFAULT_TRAIN_SPLITS),
                   choices=CITYSCAPES_SPLITS, help="Cityscapes splits whose images are trained on (no labels needed)")
    g.add_argument("--cityscapes_eval_splits", type=str, nargs="+", default=list(DEFAULT_EVAL_SPLITS),
                   choices=CITYSCAPES_SPLITS, help="labelled Cityscapes splits evaluated on (gtFine labelIds)")
    g.add_argument("--label_root", type=str, default=None,
                   help="--dataset folder: label PNGs named like the images (class ids; needs --n_classes)")
    g.add_argument("--n_classes", type=int, default=None,
                   help="--dataset folder: classes of the --label_root maps (values 0..n-1; others ignored)")

    g = parser.add_argument_group("model and optimiser")
    g.add_argument("--arch", type=str, default="resnet18", choices=ARCHS, help="ResNet backbone")
    g.add_argument("--in_dim", type=int, default=None,
                   help="FPN feature size (default: the architecture's, 128 for ResNet-18/34, 256 for 50/101)")
    g.add_argument("--pretrain", action="store_true", help="ImageNet backbone through torchvision's weights API")
    g.add_argument("--pretrain_path", type=str, default=None, help="local torchvision ResNet state dict (.pth)")
    g.add_argument("--calibrate_bn", type=int, default=-1,
                   help="batches used to set BatchNorm statistics before the first epoch "
                        "(-1: 10 for a randomly initialised network, 0 with --pretrain)")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate")
    g.add_argument("--optim_type", type=str, default="Adam", choices=["Adam", "SGD"], help="optimiser")
    g.add_argument("--weight_decay", type=float, default=0.0, help="weight decay (SGD and Adam)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--num_epoch", type=int, default=10, help="training epochs")
    g.add_argument("--batch_size_cluster", type=int, default=256, help="batch size of clustering/labelling passes")
    g.add_argument("--batch_size_train", type=int, default=128, help="batch size of training")
    g.add_argument("--batch_size_test", type=int, default=128, help="batch size of evaluation")

    g = parser.add_argument_group("clustering and loss")
    g.add_argument("--K_train", type=int, default=27, help="clusters of the training k-means")
    g.add_argument("--K_test", type=int, default=27, help="clusters of the evaluation k-means")
    g.add_argument("--num_init_batches", type=int, default=20, help="batches collected for the initial k-means")
    g.add_argument("--num_batches", type=int, default=1, help="batches per online centroid update")
    g.add_argument("--kmeans_n_iter", type=int, default=20, help="Lloyd iterations of the initial k-means")
    g.add_argument("--kmeans_backend", type=str, default="auto", choices=["auto", "faiss", "torch"],
                   help="k-means implementation (auto: torch on CUDA, faiss on the CPU)")
    g.add_argument("--kmeans_pixels_per_image", type=int, default=128,
                   help="random pixels per image kept for the initial k-means (bounds its memory)")
    g.add_argument("--kmeans_init_all_pixels", action="store_true",
                   help="initial k-means on every pixel of the init batches, as the original (memory heavy)")
    g.add_argument("--feature_cache_gb", type=float, default=2.0,
                   help="reuse the clustering pass's features for labelling when they fit in this many GB")
    g.add_argument("--metric_train", type=str, default="cosine", choices=["cosine", "euclidean"],
                   help="cosine: L2-normalise features before clustering and training")
    g.add_argument("--metric_test", type=str, default="cosine", choices=["cosine", "euclidean"],
                   help="feature normalisation at evaluation")
    g.add_argument("--no_balance", action="store_true", help="unweighted cross-entropy")
    g.add_argument("--skip_nonfinite", action="store_true",
                   help="skip training steps with a non-finite loss (counted) instead of stopping")

    g = parser.add_argument_group("method")
    g.add_argument("--method", type=str, default="picie", choices=METHODS,
                   help="picie, or mdc: the modified-DeepCluster baseline (one view, own classifier)")
    g.add_argument("--nonparametric", action="store_true",
                   help="--method mdc: train against the frozen centroids instead of a re-initialised classifier")
    g.add_argument("--overcluster", action="store_true",
                   help="PiCIE+H: add an auxiliary over-clustering head with --K_aux clusters to the loss")
    g.add_argument("--K_aux", type=int, default=100, help="clusters of the --overcluster head")

    g = parser.add_argument_group("augmentation (original switches)")
    g.add_argument("--augment", action="store_true", help="enable the photometric switches below")
    g.add_argument("--jitter", action="store_true", help="brightness, contrast, saturation and hue")
    g.add_argument("--grey", action="store_true", help="random greyscale")
    g.add_argument("--blur", action="store_true", help="random Gaussian blur")
    g.add_argument("--equiv", action="store_true", help="enable the geometric switches below")
    g.add_argument("--random_crop", action="store_true", help="random resized crop")
    g.add_argument("--h_flip", action="store_true", help="random horizontal flip")
    g.add_argument("--v_flip", action="store_true", help="random vertical flip")
    g.add_argument("--min_scale", type=float, default=0.5, help="smallest crop side as a fraction of the image")
    g = parser.add_argument_group("augmentation (explicit lists)")
    g.add_argument("--inv_list", type=str, default=None,
                   help=f"photometric transforms, comma separated, added to the switches: {', '.join(PHOTOMETRIC_OPS)}")
    g.add_argument("--eqv_list", type=str, default=None,
                   help=f"geometric transforms, comma separated, added to the switches: {', '.join(GEOMETRIC_OPS)}")
    g.add_argument("--photometric_res", type=str, default="view", choices=["view", "base"],
                   help="apply the photometric ops at the network's input size (fast) or on the res2 base image")
    g.add_argument("--jitter_strength", type=float, default=0.3, help="colour factors drawn in [1-s, 1+s]")
    g.add_argument("--hue_range", type=float, default=0.1, help="hue shift drawn in [-h, h]")
    g.add_argument("--jitter_p", type=float, default=0.8, help="probability of each colour op")
    g.add_argument("--grey_p", type=float, default=0.2, help="probability of greyscale")
    g.add_argument("--blur_p", type=float, default=0.5, help="probability of blur")
    g.add_argument("--blur_sigma", type=float, nargs=2, default=(0.1, 2.0), help="blur sigma range (pixels of res2)")

    g = parser.add_argument_group("evaluation")
    g.add_argument("--repeats", type=int, default=1, help="fresh k-means runs of the final evaluation (mean +- std)")
    g.add_argument("--eval_init", action="store_true", help="also evaluate the untrained network before training")
    g.add_argument("--eval_only", action="store_true", help="evaluate --eval_path and exit (original flag)")
    g.add_argument("--eval_path", type=str, default=None, help="checkpoint to evaluate")
    g.add_argument("--out", type=str, default=None, help="test_picie.py: write the metrics JSON here")
    g.add_argument("--recluster", action="store_true",
                   help="test_picie.py: evaluate with fresh k-means on the train images instead of the stored classifier")
    g.add_argument("--linear_probe", action="store_true",
                   help="test_picie.py: train a 1x1 linear classifier on frozen features with the train split's "
                        "ground truth and score it on val (no matching)")
    g.add_argument("--probe_epochs", type=int, default=5, help="--linear_probe: epochs over the labelled train images")
    g.add_argument("--probe_lr", type=float, default=1e-3, help="--linear_probe: Adam learning rate")
    return parser


def resolve_transform_lists(args) -> Tuple[List[str], List[str]]:
    """Photometric and geometric lists from the original switches plus --inv_list/--eqv_list."""
    inv, eqv = [], []
    if args.augment:
        if args.jitter:
            inv += list(JITTER_OPS)
        if args.grey:
            inv.append("grey")
        if args.blur:
            inv.append("blur")
    if args.equiv:
        if args.random_crop:
            eqv.append("random_crop")
        if args.h_flip:
            eqv.append("h_flip")
        if args.v_flip:
            eqv.append("v_flip")
    for name in _split_list(args.inv_list or ""):
        names = JITTER_OPS if name == "jitter" else (name,)
        for n in names:
            if n not in PHOTOMETRIC_OPS:
                raise ValueError(f"--inv_list: unknown transform {n!r}; choose from jitter, {', '.join(PHOTOMETRIC_OPS)}")
            if n not in inv:
                inv.append(n)
    for name in _split_list(args.eqv_list or ""):
        if name not in GEOMETRIC_OPS:
            raise ValueError(f"--eqv_list: unknown transform {name!r}; choose from {', '.join(GEOMETRIC_OPS)}")
        if name not in eqv:
            eqv.append(name)
    # Fixed canonical order so two spellings of one set give the same config.
    return ([n for n in PHOTOMETRIC_OPS if n in inv], [n for n in GEOMETRIC_OPS if n in eqv])


def augment_config(args) -> AugmentConfig:
    inv, eqv = resolve_transform_lists(args)
    return AugmentConfig(inv_list=tuple(inv), eqv_list=tuple(eqv), jitter_strength=args.jitter_strength,
                         hue_range=args.hue_range, jitter_p=args.jitter_p, grey_p=args.grey_p,
                         blur_p=args.blur_p, blur_sigma=tuple(args.blur_sigma), min_scale=args.min_scale)


def finalize_args(args, for_training: bool = True):
    """Resolve aliases and defaults that depend on other flags; check ranges. Returns args."""
    if args.cityscapes:
        args.dataset = "cityscapes"
    if args.stuff is None and args.thing is None:
        args.stuff = args.thing = True if for_training else None
    else:
        args.stuff, args.thing = bool(args.stuff), bool(args.thing)
    if args.run_name is None:
        method = args.method + ("_h" if args.overcluster else "")
        args.run_name = f"{method}_{args.arch}_K{args.K_train}_seed{args.seed}"
    check_method_and_dataset_flags(args)
    checks = [("--K_train", args.K_train, 2), ("--K_test", args.K_test, 2), ("--num_epoch", args.num_epoch, 0),
              ("--batch_size_cluster", args.batch_size_cluster, 1), ("--batch_size_train", args.batch_size_train, 1),
              ("--batch_size_test", args.batch_size_test, 1), ("--num_init_batches", args.num_init_batches, 1),
              ("--num_batches", args.num_batches, 1), ("--kmeans_n_iter", args.kmeans_n_iter, 1),
              ("--repeats", args.repeats, 0), ("--num_workers", args.num_workers, 0),
              ("--kmeans_pixels_per_image", args.kmeans_pixels_per_image, 1)]
    for flag, value, low in checks:
        if value < low:
            raise ValueError(f"{flag} {value} must be at least {low}")
    if args.K_train > 65535:
        raise ValueError(f"--K_train {args.K_train} must be at most 65535 (labels are stored as uint16)")
    for flag in ("res", "res1", "res2"):
        value = getattr(args, flag)
        if value < 32 or value % 4:
            raise ValueError(f"--{flag} {value} must be a multiple of 4 and at least 32")
    if args.res2 < args.res1:
        raise ValueError(f"--res2 {args.res2} must be at least --res1 {args.res1} (views are cut from the res2 image)")
    args.augment_config = augment_config(args).to_dict()
    return args


def check_method_and_dataset_flags(args) -> None:
    """Flags of the methods and datasets beyond COCO-Stuff PiCIE that only make sense together."""
    if args.nonparametric and args.method != "mdc":
        raise ValueError("--nonparametric applies to --method mdc")
    if args.overcluster and args.method != "picie":
        raise ValueError("--overcluster (PiCIE+H) applies to --method picie")
    if args.overcluster and args.K_aux < 2:
        raise ValueError(f"--K_aux {args.K_aux} must be at least 2")
    if args.K_aux > 65535:
        raise ValueError(f"--K_aux {args.K_aux} must be at most 65535 (labels are stored as uint16)")
    if args.n_classes is not None and not 1 <= args.n_classes <= 255:
        raise ValueError(f"--n_classes {args.n_classes} must lie in 1..255 (label maps are 8-bit)")
    if args.dataset == "folder" and (args.label_root is None) != (args.n_classes is None):
        raise ValueError("--label_root and --n_classes go together: give both to evaluate a folder, or neither")
    if args.linear_probe and args.recluster:
        raise ValueError("--linear_probe and --recluster are two evaluation protocols; pass one of them")
    if args.probe_epochs < 1:
        raise ValueError(f"--probe_epochs {args.probe_epochs} must be at least 1")


def config_to_json(args) -> str:
    return json.dumps({k: v for k, v in sorted(vars(args).items())}, indent=2, default=str)


def run_dir(args) -> str:
    return os.path.join(args.save_root, args.run_name)
