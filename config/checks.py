"""Ranges and combinations of flags, checked before anything runs; FlagError names the flag and the fix."""
from typing import Any

from config.flags import FLAGS, FlagError
from data.build import DataSettings
from data.cocostuff_classes import DEFAULT_LABEL_SET, label_set_name
from modules.loss import WITHIN_CROSS
from modules.networks import feature_stride
from modules.vit import ARCH_TABLE, VIT_ARCHS, round_to_patch

# (flag, low, high, low included): numeric ranges checked before anything runs.
_RANGES = (("lr", 0, 10, False), ("momentum", 0, 1, True), ("weight_decay", 0, 1, True),
           ("jitter_strength", 0, 1, True), ("hue_range", 0, 0.5, True), ("jitter_p", 0, 1, True),
           ("grey_p", 0, 1, True), ("blur_p", 0, 1, True), ("blur_sigma", 0, 100, False), ("min_scale", 0, 1, False),
           ("max_bad_fraction", 0, 1, True), ("feature_cache_gb", 0, 1e6, True), ("keep_checkpoints", 0, 1e6, True),
           ("calibrate_bn", -1, 1e9, True), ("probe_lr", 0, 10, False), ("train_list_repeats", 1, 1e6, True))
_SCOPES = {flag.dest: flag.scope for flag in FLAGS}


def vit_head(args) -> str | None:
    """The --vit_head of a ViT arch with its default (linear) applied; None for a ResNet."""
    return (args.vit_head or "linear") if args.arch in VIT_ARCHS else None


def check_args(args, for_training: bool = True) -> None:
    """Ranges and combinations of flags; FlagError naming the flag and the fix."""
    at_least = [("K_test", 2), ("batch_size_cluster", 1), ("batch_size_test", 1), ("num_init_batches", 1),
                ("num_batches", 1), ("kmeans_n_iter", 1), ("repeats", 0), ("num_workers", 0),
                ("kmeans_pixels_per_image", 1)]
    if for_training:
        at_least += [("K_train", 2), ("num_epoch", 0), ("batch_size_train", 1)]
    for name, low in at_least:
        if getattr(args, name) < low:
            raise FlagError(f"--{name} {getattr(args, name)} must be at least {low}")
    if not for_training and args.res is not None and args.res < 32:
        # Any size from 32 up: the evaluation feeds the network the largest multiple of its stride
        # (modules/evaluation.py: eval_features) and upsamples the logits to the label size.
        raise FlagError(f"--res {args.res} must be at least 32")
    if for_training:
        _check_network(args)
        if args.K_train > 65535:
            raise FlagError(f"--K_train {args.K_train} must be at most 65535 (labels are stored as uint16)")
        if args.res2 < args.res1:
            raise FlagError(f"--res2 {args.res2} must be at least --res1 {args.res1} "
                            "(views are cut from the res2 image)")
        if args.nonparametric and args.method != "mdc":
            raise FlagError("--nonparametric applies to --method mdc")
        if args.overcluster and args.method != "picie":
            raise FlagError("--overcluster (PiCIE+H) applies to --method picie")
        if args.overcluster and args.K_aux < 2:
            raise FlagError(f"--K_aux {args.K_aux} must be at least 2")
        if args.no_balance and args.class_weights not in ("size", "none"):
            raise FlagError(f"--no_balance and --class_weights {args.class_weights} contradict each other; give one")
        if args.loss_terms != WITHIN_CROSS and args.method != "picie":
            raise FlagError(f"--loss_terms {args.loss_terms} is an ablation of PiCIE's loss; "
                            "use it with --method picie")
        if args.K_aux > 65535:
            raise FlagError(f"--K_aux {args.K_aux} must be at most 65535 (labels are stored as uint16)")
    script = "train" if for_training else "test"  # predict.py's parser holds every flag of scope test
    for name, low, high, closed_low in _RANGES:
        if script not in _SCOPES[name]:
            continue
        value = getattr(args, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not (v >= low if closed_low else v > low) or v > high:
                interval = f"{'[' if closed_low else '('}{low}, {high}]"
                raise FlagError(f"--{name} {' '.join(map(str, values))} must lie in {interval}")
    if for_training and args.blur_sigma[0] > args.blur_sigma[1]:
        raise FlagError(f"--blur_sigma {args.blur_sigma[0]} {args.blur_sigma[1]}: give the smaller value first")
    dataset = "cityscapes" if args.cityscapes else args.dataset
    if args.coco_classes != DEFAULT_LABEL_SET and dataset != "cocostuff":
        raise FlagError(f"--coco_classes {args.coco_classes} chooses COCO-Stuff's label set; --dataset {dataset} has "
                        f"its own classes: drop --coco_classes")
    if args.n_classes is not None and not 1 <= args.n_classes <= 255:
        raise FlagError(f"--n_classes {args.n_classes} must lie in 1..255 (label maps are 8-bit)")
    if args.dataset == "folder" and (args.label_root is None) != (args.n_classes is None):
        raise FlagError("--label_root and --n_classes go together: give both to evaluate a folder, or neither")
    if not for_training:
        _check_protocol(args)


def _check_protocol(args) -> None:
    """The evaluation protocol flags of test_picie.py's parser (predict.py's and the tools' include them)."""
    if args.linear_probe and args.recluster:
        raise FlagError("--linear_probe and --recluster are two evaluation protocols; pass one of them")
    if args.probe_epochs < 1:
        raise FlagError(f"--probe_epochs {args.probe_epochs} must be at least 1")
    if args.linear_probe and (args.flip or args.crf):
        raise FlagError("--flip and --crf score clusters (the stored classifier or --recluster), not --linear_probe; "
                        "drop one of them")


def check_label_set(args, ckpt: dict[str, Any]) -> None:
    """FlagError when a COCO-Stuff checkpoint is scored on the other label set than it was trained with
    (27 vs 171 classes; checkpoints that record none are COCO-Stuff-27's, the original's included)."""
    saved = ckpt.get("eval_config", {})
    dataset = "cityscapes" if args.cityscapes else args.dataset
    if dataset != "cocostuff" or saved.get("dataset", DataSettings.dataset) != "cocostuff":
        return
    trained = int(saved.get("coco_classes", DEFAULT_LABEL_SET))
    if trained != args.coco_classes:
        raise FlagError(f"--coco_classes {args.coco_classes}: the checkpoint was trained on "
                        f"{label_set_name(trained)}, not {label_set_name(args.coco_classes)}; pass --coco_classes "
                        f"{trained} to score it on its own classes")


def _check_network(args) -> None:
    """Training flags that depend on --arch: input sizes against the feature stride, the k-means
    sample against the feature grid, the ViT-only flags, BatchNorm calibration."""
    arch, stride = args.arch, feature_stride(args.arch)
    for name in ("res", "res1", "res2"):
        value = getattr(args, name)
        if value is None or (value >= 32 and value % stride == 0):
            continue
        if arch in VIT_ARCHS:
            low = max(round_to_patch(value, stride), -(-32 // stride) * stride)
            raise FlagError(f"--{name} {value} must be a multiple of {stride}, the patch size of --arch {arch}, and at "
                            f"least 32: e.g. --{name} {low} or {low + stride}")
        raise FlagError(f"--{name} {value} must be a multiple of 4 and at least 32")
    if not args.kmeans_init_all_pixels:
        # The k-means sample is drawn from each image's feature cells; asking for more than there
        # are silently keeps every cell, which is --kmeans_init_all_pixels, not what was asked.
        side = min(args.res1, args.res or args.res1)
        cells = (side // stride) ** 2
        if args.kmeans_pixels_per_image > cells:
            raise FlagError(f"--kmeans_pixels_per_image {args.kmeans_pixels_per_image} exceeds the {side // stride}x"
                            f"{side // stride} = {cells} feature cells of a {side} px image with --arch {arch} "
                            f"(stride {stride}); pass --kmeans_pixels_per_image {cells} or fewer, or "
                            f"--kmeans_init_all_pixels")
    if args.in_dim is not None and args.in_dim < 1:
        raise FlagError(f"--in_dim {args.in_dim} must be at least 1")
    if arch not in VIT_ARCHS:
        if args.freeze_backbone:
            raise FlagError(f"--freeze_backbone applies to the ViT archs ({', '.join(VIT_ARCHS)}); --arch {arch} "
                            f"trains its whole network")
        if args.vit_head is not None:
            raise FlagError(f"--vit_head applies to the ViT archs ({', '.join(VIT_ARCHS)}); --arch {arch} has its "
                            f"FPN decoder")
        return
    width = ARCH_TABLE[arch].embed_dim
    if vit_head(args) == "none":
        if args.freeze_backbone:
            raise FlagError("--freeze_backbone with --vit_head none leaves nothing to train; pass --vit_head linear "
                            "or nonlinear, or drop --freeze_backbone")
        if args.in_dim not in (None, width):
            raise FlagError(f"--in_dim {args.in_dim} needs a head: --vit_head none keeps the {width} channels of "
                            f"--arch {arch}; pass --vit_head linear or nonlinear, or drop --in_dim")
    if args.calibrate_bn > 0:
        raise FlagError(f"--calibrate_bn {args.calibrate_bn}: --arch {arch} has no BatchNorm layers; drop "
                        f"--calibrate_bn")
