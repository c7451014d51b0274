"""Every setting of a run, declared once: the flags, their roles, the presets and the typed settings.

Each flag is declared once in FLAGS with
- its role: RESULT (changes what training computes: compared when a run is resumed, shown by
  tools/compare_runs.py when runs differ), RESUME_SAFE (paths, speed, bookkeeping and the run's
  length: may change freely when a run is resumed) or EVAL_ONLY (changes only how a network is
  scored, never its training);
- its scope: the scripts that take it (train_picie.py, test_picie.py, or both; predict.py takes
  test_picie.py's flags and those of scope predict); the parsers of the scripts are built from
  the table (get_args_parser, get_test_parser, get_predict_parser), and tools extend them with
  `parents=`.
Flag names of the original PiCIE scripts are kept, so commands written for it run unchanged.
Defaults are the original parser's (augmentations are opt-in switches, as in the original).

Presets (`--preset paper|demo|tiny`, PRESETS below) are values the command line overrides: the
paper's settings (the original sh_files/train_picie.sh), the built-in demo's, and a tiny CPU run
for checking a script end to end. `settings_from_args` turns the parsed flags into the typed
settings the functions of modules/ and data/ take; the parsed namespace is never changed.
"""
import argparse
import difflib
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from data.build import DATASETS, DataSettings
from data.cocostuff_classes import LABEL_SETS, fine171_names, label_set_name
from data.cityscapes import DEFAULT_EVAL_SPLITS, DEFAULT_TRAIN_SPLITS, SPLITS as CITYSCAPES_SPLITS
from data.transforms import GEOMETRIC_OPS, JITTER_OPS, PHOTOMETRIC_OPS, AugmentConfig
from data.validation import BAD_LABEL_POLICIES
from modules.evaluation import PROTOCOL_RES, EvalSettings
from modules.fpn import ARCHS, ResNetFPN
from modules.kmeans import BACKENDS, KMeansSettings
from modules.loss import CLASS_WEIGHTS, LOSS_TERMS
from modules.crf import CRFSettings
from modules.objectives import METHODS
from modules.predict import PredictSettings
from modules.probe import ProbeSettings
from modules.vit import ARCH_TABLE, HEADS, VIT_ARCHS, round_to_patch
from utils.errors import UserError
from utils.runtime import DEVICES, PRECISIONS

RESULT = "changes results"
RESUME_SAFE = "safe to change on resume"
EVAL_ONLY = "evaluation only"
TRAIN, TEST, BOTH = ("train",), ("test",), ("train", "test")
PREDICT = ("predict",)   # predict.py's own flags (it also takes every flag of scope test)


class FlagError(UserError):
    """A flag value is out of range or flags contradict each other; the message names the flag."""


@dataclass(frozen=True)
class Flag:
    group: str
    names: Tuple[str, ...]
    role: str
    scope: Tuple[str, ...]
    kwargs: Dict[str, Any]

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.names[0].lstrip("-")


FLAGS: List[Flag] = []


def _flag(group: str, scope: Tuple[str, ...], role: str, *names: str, **kwargs) -> None:
    FLAGS.append(Flag(group, names, role, scope, kwargs))


def _split_list(text: str) -> List[str]:
    """'a,b c' -> ['a', 'b', 'c']; 'none' or '' -> []."""
    items = [t for t in text.replace(",", " ").split() if t]
    return [] if items == ["none"] else items


# -- the flags ------------------------------------------------------------------------------------
G = "paths and run"
_flag(G, BOTH, RESUME_SAFE, "--preset", type=str, default=None, choices=("paper", "demo", "tiny"),
      help="start from the paper's, the built-in demo's or a tiny CPU run's settings (flags given still win)")
_flag(G, BOTH, RESUME_SAFE, "--data_root", type=str, default="datasets/coco", help="dataset root (layout in docs/datasets.md)")
_flag(G, BOTH, RESUME_SAFE, "--save_root", type=str, default="results",
      help="train_picie.py: folder that holds run folders; test_picie.py (and train_picie.py --eval_only): folder "
           "the metrics go to, as <save_root>/test_metrics.json, unless --out names the file (default there: none)")
_flag(G, TRAIN, RESUME_SAFE, "--run_name", type=str, default=None,
      help="run folder name under --save_root (default: <method>_<arch>_K<K_train>_seed<seed>)")
_flag(G, TRAIN, RESUME_SAFE, "--comment", type=str, default="", help="free text stored in the run config (original flag)")
_flag(G, TRAIN, RESUME_SAFE, "--restart", action="store_true",
      help="continue the run in <run folder>/checkpoint.pth with the settings it recorded (flags given now that "
           "change results stop the restart unless --accept_changes)")
_flag(G, TRAIN + PREDICT, RESUME_SAFE, "--overwrite", action="store_true",
      help="train_picie.py: start afresh in a run folder that already holds a checkpoint (old files are moved "
           "aside); predict.py: replace output files that exist (without it, predict.py stops before writing)")
_flag(G, TRAIN, RESUME_SAFE, "--accept_changes", action="store_true",
      help="--restart with settings that change results (e.g. another --lr): continue anyway; the resumed "
           "epochs then differ from an uninterrupted run")
_flag(G, BOTH, RESULT, "--seed", type=int, default=1, help="seed of model init, k-means and every transform draw")
_flag(G, BOTH, RESUME_SAFE, "--num_workers", type=int, default=4,
      help="DataLoader worker processes (capped at the CPUs this process may use)")
_flag(G, BOTH, RESUME_SAFE, "--device", type=str, default="auto", choices=DEVICES,
      help="where the network and k-means run (auto: cuda if available)")
_flag(G, BOTH, RESULT, "--precision", type=str, default="auto", choices=PRECISIONS,
      help="autocast dtype of the training forward passes (auto: bf16 on CUDA and on CPUs with bf16 units)")
_flag(G, BOTH, EVAL_ONLY, "--eval_precision", type=str, default="fp32", choices=PRECISIONS,
      help="autocast dtype of every evaluation forward pass (epoch scores, final protocol, test_picie.py, "
           "linear probe); fp32 reproduces the original's numbers, bf16 is faster")
_flag(G, TRAIN, RESUME_SAFE, "--keep_checkpoints", type=int, default=0,
      help="also keep the last N per-epoch checkpoints (checkpoint_epoch<N>.pth)")
_flag(G, BOTH, RESULT, "--deterministic", action="store_true",
      help="deterministic kernels and fp32, so that reruns and resumed runs match bit for bit on the CPU")
_flag(G, TRAIN, RESUME_SAFE, "--tensorboard", action="store_true",
      help="also log losses, k-means loss, per-epoch metrics and a few cluster maps to "
           "<run folder>/tensorboard (needs the optional tensorboard package)")

G = "data"
_flag(G, BOTH, RESULT, "--dataset", type=str, default="cocostuff", choices=DATASETS, help="data source")
_flag(G, BOTH, RESULT, "--cityscapes", action="store_true", help="same as --dataset cityscapes (original flag)")
_flag(G, BOTH, RESULT, "--fullcoco", action="store_true",
      help="train on every image in images/train2017 instead of the curated list")
_flag(G, BOTH, RESULT, "--coco_classes", type=int, default=27, choices=LABEL_SETS,
      help="COCO-Stuff label set: the 27 coarse classes (the paper's) or the 171 fine classes (80 thing + 91 "
           "stuff; same images and curated lists); with 171, --K_train and --K_test default to the evaluated class "
           "count (171, 91 with --stuff, 80 with --thing), also over a --preset's; a checkpoint is scored only on "
           "the label set it was trained with")
_flag(G, BOTH, EVAL_ONLY, "--stuff", action="store_true", default=None,
      help="evaluate the stuff classes (15 of COCO-Stuff-27, 91 of COCO-Stuff-171)")
_flag(G, BOTH, EVAL_ONLY, "--thing", action="store_true", default=None,
      help="evaluate the thing classes (12 of COCO-Stuff-27, 80 of COCO-Stuff-171)")
_flag(G, BOTH, EVAL_ONLY, "--res", type=int, default=None,
      help="evaluation size: shorter side resized to it, center square crop (default: training 320, the "
           "protocol's; test_picie.py and the tools: the checkpoint's own, 320 for original checkpoints)")
_flag(G, TRAIN, RESULT, "--res1", type=int, default=320, help="network input size of both training views")
_flag(G, TRAIN, RESULT, "--res2", type=int, default=640, help="base image size the views are cut from")
_flag(G, BOTH, RESUME_SAFE, "--bad_labels", type=str, default="error", choices=BAD_LABEL_POLICIES,
      help="evaluation label map whose size differs from its image or with undefined values "
           "(COCO-Stuff: not 0..181 or 255): stop with an error, or fix it (resize by nearest "
           "neighbour, undefined values unlabelled; counted in final_metrics.json); resize = fix")
_flag(G, TRAIN, RESULT, "--train_list_repeats", type=int, default=1,
      help="benchmarking: repeat the training image list N times (throughput on a small sample)")
_flag(G, TRAIN, RESUME_SAFE, "--max_bad_fraction", type=float, default=0.01,
      help="stop if more than this fraction of training images is unreadable")
_flag(G, BOTH, RESULT, "--cityscapes_train_splits", type=str, nargs="+", default=list(DEFAULT_TRAIN_SPLITS),
      choices=CITYSCAPES_SPLITS, help="Cityscapes splits whose images are trained on (no labels needed)")
_flag(G, BOTH, EVAL_ONLY, "--cityscapes_eval_splits", type=str, nargs="+", default=list(DEFAULT_EVAL_SPLITS),
      choices=CITYSCAPES_SPLITS, help="labelled Cityscapes splits evaluated on (gtFine labelIds)")
_flag(G, BOTH, EVAL_ONLY, "--label_root", type=str, default=None,
      help="--dataset folder: label PNGs named like the images (class ids; needs --n_classes)")
_flag(G, BOTH, EVAL_ONLY, "--n_classes", type=int, default=None,
      help="--dataset folder: classes of the --label_root maps (values 0..n-1; others ignored)")

G = "model and optimiser"
_flag(G, TRAIN, RESULT, "--arch", type=str, default="resnet18", choices=ARCHS + VIT_ARCHS,
      help="backbone: a ResNet + FPN (features at stride 4), or a self-supervised ViT (DINO, DINOv2, DINOv3; "
           "features at the patch size 8, 14 or 16; docs/vit_backbones.md)")
_flag(G, TRAIN, RESULT, "--in_dim", type=int, default=None,
      help="feature size: the FPN's for a ResNet (default 128 for ResNet-18/34, 256 for 50/101), the --vit_head "
           "output's for a ViT (default the backbone's width, 384 for ViT-S, 768 for ViT-B)")
_flag(G, TRAIN, RESULT, "--pretrain", action=argparse.BooleanOptionalAction, default=False,
      help="official backbone weights, downloaded into torch's hub cache: ImageNet (torchvision) for a ResNet, "
           "Meta's DINO / DINOv2 files for a ViT (DINOv3: never downloaded, its licence asks each user to "
           "request them; use --pretrain_path). --no-pretrain: random init")
_flag(G, TRAIN, RESULT, "--pretrain_path", type=str, default=None,
      help="local backbone weights (.pth): a torchvision ResNet state dict, or a ViT's in the official DINO, "
           "DINOv2 or DINOv3 layout or timm's; wins over --pretrain")
_flag(G, TRAIN, RESULT, "--freeze_backbone", action="store_true",
      help="ViT archs: keep the backbone fixed (no gradients, eval mode, features computed under no_grad) and "
           "train only the --vit_head head")
_flag(G, TRAIN, RESULT, "--vit_head", type=str, default=None, choices=HEADS,
      help="ViT archs: what maps the patch tokens to the features PiCIE clusters: linear (1x1 conv to --in_dim), "
           "nonlinear (linear + STEGO's 1x1 conv, ReLU, 1x1 conv branch) or none (the tokens themselves; needs "
           "a trained backbone). Default: linear")
_flag(G, TRAIN, RESULT, "--calibrate_bn", type=int, default=-1,
      help="batches used to set BatchNorm statistics before the first epoch "
           "(-1: 10 for a randomly initialised ResNet, 0 with --pretrain and for a ViT, which has no BatchNorm)")
_flag(G, TRAIN, RESULT, "--lr", type=float, default=1e-4, help="learning rate")
_flag(G, TRAIN, RESULT, "--optim_type", type=str, default="Adam", choices=("Adam", "SGD"), help="optimiser")
_flag(G, TRAIN, RESULT, "--weight_decay", type=float, default=0.0, help="weight decay (SGD and Adam)")
_flag(G, TRAIN, RESULT, "--momentum", type=float, default=0.9, help="SGD momentum")
_flag(G, TRAIN, RESUME_SAFE, "--num_epoch", type=int, default=10, help="training epochs")
_flag(G, BOTH, RESULT, "--batch_size_cluster", type=int, default=256,
      help="batch size of clustering/labelling passes")
_flag(G, TRAIN, RESULT, "--batch_size_train", type=int, default=128, help="batch size of training")
_flag(G, BOTH, RESUME_SAFE, "--batch_size_test", type=int, default=128, help="batch size of evaluation")

G = "clustering and loss"
_flag(G, TRAIN, RESULT, "--K_train", type=int, default=27, help="clusters of the training k-means")
_flag(G, BOTH, EVAL_ONLY, "--K_test", type=int, default=27, help="clusters of the evaluation k-means")
_flag(G, BOTH, RESULT, "--num_init_batches", type=int, default=20, help="batches collected for the initial k-means")
_flag(G, BOTH, RESULT, "--num_batches", type=int, default=1, help="batches per online centroid update")
_flag(G, BOTH, RESULT, "--kmeans_n_iter", type=int, default=20, help="Lloyd iterations of the initial k-means")
_flag(G, BOTH, RESULT, "--kmeans_backend", type=str, default="auto", choices=BACKENDS,
      help="k-means implementation (auto: torch on CUDA, faiss on the CPU)")
_flag(G, BOTH, RESULT, "--kmeans_pixels_per_image", type=int, default=128,
      help="random pixels per image kept for the initial k-means (bounds its memory)")
_flag(G, BOTH, RESULT, "--kmeans_init_all_pixels", action="store_true",
      help="initial k-means on every pixel of the init batches, as the original (memory heavy)")
_flag(G, BOTH, RESUME_SAFE, "--feature_cache_gb", type=float, default=2.0,
      help="reuse the clustering pass's features for labelling when they fit in this many GB")
_flag(G, TRAIN, RESULT, "--metric_train", type=str, default="cosine", choices=("cosine", "euclidean"),
      help="cosine: L2-normalise features before clustering and training")
_flag(G, BOTH, EVAL_ONLY, "--metric_test", type=str, default="cosine", choices=("cosine", "euclidean"),
      help="feature normalisation at evaluation")
_flag(G, TRAIN, RESULT, "--no_balance", action="store_true", help="unweighted cross-entropy (= --class_weights none)")
_flag(G, TRAIN, RESULT, "--class_weights", type=str, default="size", choices=CLASS_WEIGHTS,
      help="cross-entropy class weights: size (cluster size / total, the original's), inverse (inverse frequency), "
           "none")
_flag(G, TRAIN, RESULT, "--loss_terms", type=str, default="within_cross", choices=LOSS_TERMS,
      help="PiCIE's loss: the mean of the within- and cross-view terms (the paper's), or one of them alone "
           "(component ablation: within = no cross-view term)")
_flag(G, TRAIN, RESUME_SAFE, "--skip_nonfinite", action="store_true",
      help="skip training steps with a non-finite loss (counted) instead of stopping")

G = "method"
_flag(G, TRAIN, RESULT, "--method", type=str, default="picie", choices=METHODS,
      help="picie, or mdc: the modified-DeepCluster baseline (one view, own classifier)")
_flag(G, TRAIN, RESULT, "--nonparametric", action="store_true",
      help="--method mdc: train against the frozen centroids instead of a re-initialised classifier")
_flag(G, TRAIN, RESULT, "--overcluster", action="store_true",
      help="PiCIE+H: add an auxiliary over-clustering head with --K_aux clusters to the loss")
_flag(G, TRAIN, RESULT, "--K_aux", type=int, default=100, help="clusters of the --overcluster head")

G = "augmentation (original switches)"
_flag(G, TRAIN, RESULT, "--augment", action="store_true", help="enable the photometric switches below")
_flag(G, TRAIN, RESULT, "--jitter", action="store_true", help="brightness, contrast, saturation and hue")
_flag(G, TRAIN, RESULT, "--grey", action="store_true", help="random greyscale")
_flag(G, TRAIN, RESULT, "--blur", action="store_true", help="random Gaussian blur")
_flag(G, TRAIN, RESULT, "--equiv", action="store_true", help="enable the geometric switches below")
_flag(G, TRAIN, RESULT, "--random_crop", action="store_true", help="random resized crop")
_flag(G, TRAIN, RESULT, "--h_flip", action="store_true", help="random horizontal flip")
_flag(G, TRAIN, RESULT, "--v_flip", action="store_true", help="random vertical flip")
_flag(G, TRAIN, RESULT, "--min_scale", type=float, default=0.5, help="smallest crop side as a fraction of the image")
G = "augmentation (explicit lists)"
_flag(G, TRAIN, RESULT, "--inv_list", type=str, default=None,
      help=f"photometric transforms, comma separated, added to the switches: jitter, {', '.join(PHOTOMETRIC_OPS)}")
_flag(G, TRAIN, RESULT, "--eqv_list", type=str, default=None,
      help=f"geometric transforms, comma separated, added to the switches: {', '.join(GEOMETRIC_OPS)}")
_flag(G, TRAIN, RESULT, "--photometric_res", type=str, default="view", choices=("view", "base"),
      help="apply the photometric ops at the network's input size (fast) or on the res2 base image")
_flag(G, TRAIN, RESULT, "--jitter_strength", type=float, default=0.3, help="colour factors drawn in [1-s, 1+s]")
_flag(G, TRAIN, RESULT, "--hue_range", type=float, default=0.1, help="hue shift drawn in [-h, h]")
_flag(G, TRAIN, RESULT, "--jitter_p", type=float, default=0.8, help="probability of each colour op")
_flag(G, TRAIN, RESULT, "--grey_p", type=float, default=0.2, help="probability of greyscale")
_flag(G, TRAIN, RESULT, "--blur_p", type=float, default=0.5, help="probability of blur")
_flag(G, TRAIN, RESULT, "--blur_sigma", type=float, nargs=2, default=(0.1, 2.0),
      help="blur sigma range (pixels of res2)")

G = "evaluation"
_flag(G, BOTH, EVAL_ONLY, "--repeats", type=int, default=1,
      help="fresh k-means runs of the final evaluation (mean +- std)")
_flag(G, TRAIN, EVAL_ONLY, "--eval_init", action=argparse.BooleanOptionalAction, default=False,
      help="also evaluate the untrained network before training")
_flag(G, TRAIN, RESUME_SAFE, "--eval_only", action="store_true",
      help="evaluate --eval_path with test_picie.py and exit (original flag)")
_flag(G, BOTH, RESUME_SAFE, "--eval_path", type=str, default=None, help="checkpoint to evaluate")
_flag(G, TEST, EVAL_ONLY, "--out", type=str, default=None, help="write the metrics JSON here")
_flag(G, TEST, EVAL_ONLY, "--recluster", action="store_true",
      help="evaluate with fresh k-means on the train images instead of the stored classifier")
_flag(G, TEST, EVAL_ONLY, "--linear_probe", action="store_true",
      help="train a 1x1 linear classifier on frozen features with the train split's ground truth and "
           "score it on val (no matching)")
_flag(G, TEST, EVAL_ONLY, "--probe_epochs", type=int, default=5, help="--linear_probe: epochs over the labelled train images")
_flag(G, TEST, EVAL_ONLY, "--probe_lr", type=float, default=1e-3, help="--linear_probe: Adam learning rate")
_flag(G, TEST, EVAL_ONLY, "--flip", action="store_true",
      help="also score the mean of the logits of each image and of its horizontal mirror image (mirrored back), "
           "reported under 'flip' beside the plain scores (predict.py: write the flip-averaged maps)")
_flag(G, TEST, EVAL_ONLY, "--crf", action="store_true",
      help="also score a dense CRF on the softmax of the upsampled logits with the image (10 iterations; Gaussian "
           "kernel sxy 1, weight 3; bilateral kernel sxy 67, srgb 3, weight 4), reported under 'crf' (and "
           "'flip_crf' with --flip); needs the optional package pydensecrf2 (predict.py: write refined maps)")

G = "prediction (predict.py)"
_flag(G, PREDICT, EVAL_ONLY, "--input", type=str, nargs="+", default=None, metavar="PATH",
      help="images to segment: image files, folders (searched recursively for image files) or .txt files "
           "listing image paths, one a line (relative paths: from the list's folder)")
_flag(G, PREDICT, EVAL_ONLY, "--output", type=str, default=None, metavar="DIR",
      help="folder for <name>.png (class-index map at the image's full size), <name>_overlay.jpg, legend.png "
           "and predict.json")
_flag(G, PREDICT, EVAL_ONLY, "--no_overlay", action="store_true",
      help="write only the class-index maps, not the images blended with the class colours")
_flag(G, PREDICT, EVAL_ONLY, "--matching", type=str, default="hungarian", choices=("hungarian", "majority"),
      help="which cluster -> class matching stored in the checkpoint names the pixels: one-to-one (the "
           "metrics' protocol) or many-to-one (stored when the classifier has more clusters than classes)")

ROLES: Dict[str, str] = {flag.dest: flag.role for flag in FLAGS}

# -- presets: the only place their values are written -------------------------------------------
_PAPER_TRANSFORMS = {"inv_list": "jitter,grey,blur", "eqv_list": "random_crop,h_flip"}
PRESETS: Dict[str, Dict[str, Any]] = {
    # The original sh_files/train_picie.sh (the paper's settings); Cityscapes: add --cityscapes --lr 1e-3.
    "paper": {"data_root": "datasets/coco", "stuff": True, "thing": True, "pretrain": True, "repeats": 1,
              "lr": 1e-4, "seed": 1, "num_init_batches": 20, "num_batches": 1, "kmeans_n_iter": 20,
              "K_train": 27, "K_test": 27, "batch_size_cluster": 256, "batch_size_train": 128,
              "batch_size_test": 128, "num_epoch": 10, "res1": 320, "res2": 640, **_PAPER_TRANSFORMS},
    # The built-in demo (make demo): random init on the generated 6-pattern set, a CPU budget of minutes. Why each
    # value departs from the paper's: docs/demo_dataset.md (K 6: six classes; hue over the whole colour wheel and
    # more greyscale: colour is the nuisance; no class weights: the original's cost 9.9 mIoU on every training seed).
    "demo": {"data_root": "datasets/demo", "stuff": True, "K_train": 6, "K_test": 6, "res": 96, "res1": 96,
             "res2": 192, "batch_size_cluster": 64, "batch_size_train": 16, "batch_size_test": 40,
             "num_init_batches": 2, "num_batches": 1, "kmeans_n_iter": 20, "lr": 3e-4, "num_epoch": 8, "seed": 1,
             "hue_range": 0.5, "grey_p": 0.5, "class_weights": "none", "repeats": 3, "eval_init": True,
             "num_workers": 2, **_PAPER_TRANSFORMS},
    # Seconds a run on the CPU: checks a script or a change end to end (the tests use it).
    # A narrow ResNet-18 (modules/fpn.py): 40x smaller checkpoints, faster epochs, the same code paths.
    "tiny": {"data_root": "datasets/demo_tiny", "arch": "resnet18_tiny", "stuff": True, "K_train": 15, "K_test": 15,
             "res": 64, "res1": 64, "res2": 128, "batch_size_cluster": 8, "batch_size_train": 4, "batch_size_test": 8,
             "num_init_batches": 1, "num_batches": 1, "kmeans_n_iter": 5, "num_epoch": 1, "repeats": 1,
             "num_workers": 0, "device": "cpu", "precision": "fp32", **_PAPER_TRANSFORMS},
}


# The generated data of the demo presets (tools/make_demo.py --preset demo|tiny writes it to the preset's data_root).
DEMO_SETS: Dict[str, Dict[str, int]] = {"demo": {"n_train": 480, "n_val": 40, "seed": 0},
                                        "tiny": {"n_train": 12, "n_val": 6, "seed": 0}}


# -- parsers --------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a misspelled flag and a one-line error."""

    def error(self, message: str):
        unknown = [w for w in message.replace(",", " ").split() if w.startswith("--")]
        known = [o for action in self._actions for o in action.option_strings]
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(word.split("=")[0], known, n=1)
            if close:
                hints.append(f"{word}: did you mean {close[0]}?")
        self.exit(2, f"{self.prog}: error: {message}{'; ' + '; '.join(hints) if hints else ''} "
                     f"(--help lists every flag)\n")


def _build(prog: str, scope: str, add_help: bool, parents: Sequence[argparse.ArgumentParser] = (),
           suppress_defaults: bool = False) -> Parser:
    """A parser with the flags of `scope`, after those of `parents` (flags a parent has are not added
    again); suppress_defaults leaves out every flag not given (to tell what the command line set
    from what a default or a run's record would)."""
    parser = Parser(prog, add_help=add_help, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                    parents=list(parents))
    inherited = {option for parent in parents for action in parent._actions for option in action.option_strings}
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        if scope in flag.scope and not inherited.intersection(flag.names):
            group = groups.setdefault(flag.group, parser.add_argument_group(flag.group))
            kwargs = dict(flag.kwargs, default=argparse.SUPPRESS) if suppress_defaults else flag.kwargs
            group.add_argument(*flag.names, **kwargs)
    return parser


def get_args_parser(add_help: bool = True) -> Parser:
    """The parser of train_picie.py (and of the tools that train, through parents=)."""
    return _build("train_picie.py", "train", add_help)


def get_test_parser(add_help: bool = True) -> Parser:
    """The parser of test_picie.py: data, runtime, k-means and evaluation flags (no training flags).
    --save_root defaults to None here: the metrics are written only where --save_root or --out says."""
    parser = _build("test_picie.py", "test", add_help)
    parser.set_defaults(save_root=None)
    return parser


def get_predict_parser(add_help: bool = True) -> Parser:
    """The parser of predict.py: test_picie.py's flags (checkpoint, --res, runtime, --flip, --crf;
    its data and k-means flags are accepted and unused) and the flags of scope predict. --res
    defaults to None here: the checkpoint's evaluation resolution."""
    parser = _build("predict.py", "predict", add_help, parents=[get_test_parser(add_help=False)])
    parser.set_defaults(res=None)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse argv after applying `--preset` (if given) as defaults, so flags on the command line win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, _ = _preset_only().parse_known_args(argv)
    dests = {action.dest for action in parser._actions}
    if chosen.preset:
        parser.set_defaults(**{k: v for k, v in PRESETS[chosen.preset].items() if k in dests})
    args = parser.parse_args(argv)
    counts = {k: v for k, v in class_count_defaults(vars(args)).items() if k in dests}
    if counts:  # --coco_classes 171: K defaults to the class count; a second pass lets given --K flags win
        parser.set_defaults(**counts)
        args = parser.parse_args(argv)
    if hasattr(args, "arch"):
        fit_defaults_to_network(args, given_flags(parser, argv))
    return args


_NOT_GIVEN = object()


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set:
    """The dests the command line `argv` sets itself (not by a default or --preset): argparse
    fills in a default only where the namespace has no value yet, so a namespace of markers keeps
    the marker exactly where no flag was given."""
    marked = argparse.Namespace(**{a.dest: _NOT_GIVEN for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_args(list(argv), namespace=marked)
    return {dest for dest, value in vars(marked).items() if value is not _NOT_GIVEN}


def fit_defaults_to_network(args: argparse.Namespace, given: set) -> None:
    """Defaults (the flags' or --preset's) that do not fit the feature grid of --arch are fitted to it,
    with one log line each: --res, --res1, --res2 down to a multiple of the feature stride (at least
    32 px), --kmeans_pixels_per_image down to the cells of one image. A value given on the command
    line is left as given (check_args then names it when it does not fit)."""
    arch, stride = args.arch, feature_stride(args.arch)
    for name in ("res1", "res2", "res"):
        value = getattr(args, name, None)
        if name in given or value is None or (value >= 32 and value % stride == 0):
            continue
        fitted = max(round_to_patch(value, stride), -(-32 // stride) * stride)
        setattr(args, name, fitted)
        logging.getLogger("picie").info("--%s %d (the default) is not a multiple of %d, the feature stride of --arch "
                                        "%s: using %d", name, value, stride, arch, fitted)
    cells = (min(args.res1, args.res or args.res1) // stride) ** 2
    if "kmeans_pixels_per_image" not in given and not args.kmeans_init_all_pixels and \
            args.kmeans_pixels_per_image > cells:
        logging.getLogger("picie").info("--kmeans_pixels_per_image %d (the default) is more than the %d feature cells "
                                        "of an image with --arch %s: using %d", args.kmeans_pixels_per_image, cells,
                                        arch, cells)
        args.kmeans_pixels_per_image = cells


def class_count_defaults(values: Dict[str, Any]) -> Dict[str, int]:
    """{K_train, K_test: the evaluated class count} for --coco_classes 171 (171 classes, 91 with --stuff,
    80 with --thing), which replaces the default 27 and a preset's value (both the 27-class count);
    {} for the 27 classes, whose K defaults stay the paper's."""
    if values.get("coco_classes") != 171:
        return {}
    stuff, thing = values.get("stuff"), values.get("thing")
    if stuff is None and thing is None:
        stuff = thing = True
    n = len(fine171_names(bool(stuff), bool(thing)))
    return {"K_train": n, "K_test": n}


# Flags that describe one command, not the run: never taken from a run's record on --restart.
INVOCATION_FLAGS = frozenset({"restart", "overwrite", "accept_changes", "eval_only", "eval_path", "preset"})


def restart_args(args: argparse.Namespace, argv: Sequence[str], recorded: Dict[str, Any]):
    """The flags of `--restart`: the recorded run's (`recorded`, a checkpoint's "args"), except those
    given now on the command line or by --preset. Returns (namespace, conflicts, changes): conflicts
    are the RESULT flags given with another value than the run's, changes the other given flags
    that differ, each (flag, now, recorded)."""
    argv = list(argv)
    typed = vars(_build("train_picie.py", "train", False, suppress_defaults=True).parse_args(argv))
    chosen, _ = _preset_only().parse_known_args(argv)
    given = dict(typed)
    if chosen.preset:
        given = {**{k: v for k, v in PRESETS[chosen.preset].items() if k in ROLES}, **typed}
        # As parse_args: --coco_classes 171 replaces the preset's K values (unless typed).
        given.update({k: v for k, v in class_count_defaults(given).items() if k not in typed})
    merged = dict(vars(args))
    for dest in ROLES:
        if dest in recorded and dest not in given and dest not in INVOCATION_FLAGS and dest in merged:
            merged[dest] = recorded[dest]
    conflicts, changes = [], []
    for dest in sorted(given):
        if dest in INVOCATION_FLAGS or dest not in recorded:
            continue
        now, then = merged[dest], recorded[dest]
        if (list(now) if isinstance(now, tuple) else now) != (list(then) if isinstance(then, tuple) else then):
            (conflicts if ROLES.get(dest) == RESULT else changes).append((dest, now, then))
    return argparse.Namespace(**merged), conflicts, changes


def _preset_only() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    preset = next(flag for flag in FLAGS if flag.dest == "preset")
    parser.add_argument(*preset.names, **preset.kwargs)
    return parser


# -- typed settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSettings:
    arch: str = "resnet18"
    feat_dim: Optional[int] = None     # None: the arch's (FPN width, or the ViT's embedding width)
    pretrain: bool = False
    pretrain_path: Optional[str] = None
    calibrate_bn_batches: int = 10     # -1 resolved: 10 from random init, 0 from pretrained weights or a ViT
    vit_head: str = "linear"           # ViT archs only (resolved --vit_head)
    freeze_backbone: bool = False      # ViT archs only


@dataclass(frozen=True)
class OptimSettings:
    optim_type: str = "Adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass(frozen=True)
class TrainSettings:
    """The training loop: method and its heads, epochs, batch sizes, loss options, feature cache."""

    method: str = "picie"
    aux_clusters: int = 0              # PiCIE+H's K_aux (0: plain PiCIE)
    nonparametric: bool = False
    num_epoch: int = 10
    batch_size_cluster: int = 256
    batch_size_train: int = 128
    l2_normalize: bool = True          # --metric_train cosine
    class_weights: str = "size"        # size (the original's), inverse or none (modules/loss.py)
    loss_terms: str = "within_cross"
    skip_nonfinite: bool = False
    feature_cache_bytes: float = 2.0 * 2 ** 30
    max_bad_fraction: float = 0.01
    res1: int = 320
    res2: int = 640
    photometric_res: str = "view"


@dataclass(frozen=True)
class RunSettings:
    """Everything a training run needs, as typed settings; built once from the parsed flags."""

    data: DataSettings
    augment: AugmentConfig
    model: ModelSettings
    optim: OptimSettings
    kmeans: KMeansSettings
    train: TrainSettings
    eval: EvalSettings
    probe: ProbeSettings
    seed: int = 1
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = False
    num_workers: int = 4
    save_root: str = "results"
    run_name: str = "picie"
    restart: bool = False
    overwrite: bool = False
    keep_checkpoints: int = 0
    tensorboard: bool = False
    eval_init: bool = False
    record: Dict[str, Any] = field(default_factory=dict)   # the resolved flags, as config.json stores them


def resolve_transform_lists(args) -> Tuple[List[str], List[str]]:
    """Photometric and geometric lists from the original switches plus --inv_list/--eqv_list."""
    inv, eqv = [], []
    if args.augment:
        inv += list(JITTER_OPS) if args.jitter else []
        inv += ["grey"] if args.grey else []
        inv += ["blur"] if args.blur else []
    if args.equiv:
        eqv += [name for name in ("random_crop", "h_flip", "v_flip") if getattr(args, name)]
    for name in _split_list(args.inv_list or ""):
        for op in (JITTER_OPS if name == "jitter" else (name,)):
            if op not in PHOTOMETRIC_OPS:
                raise FlagError(f"--inv_list: unknown transform {op!r}; choose from jitter, {', '.join(PHOTOMETRIC_OPS)}")
            inv.append(op)
    for name in _split_list(args.eqv_list or ""):
        if name not in GEOMETRIC_OPS:
            raise FlagError(f"--eqv_list: unknown transform {name!r}; choose from {', '.join(GEOMETRIC_OPS)}")
        eqv.append(name)
    # Fixed canonical order so two spellings of one set give the same config.
    return [n for n in PHOTOMETRIC_OPS if n in inv], [n for n in GEOMETRIC_OPS if n in eqv]


def augment_config(args) -> AugmentConfig:
    inv, eqv = resolve_transform_lists(args)
    return AugmentConfig(inv_list=tuple(inv), eqv_list=tuple(eqv), jitter_strength=args.jitter_strength,
                         hue_range=args.hue_range, jitter_p=args.jitter_p, grey_p=args.grey_p,
                         blur_p=args.blur_p, blur_sigma=tuple(args.blur_sigma), min_scale=args.min_scale)


# (flag, low, high, low included): numeric ranges checked before anything runs.
_RANGES = (("lr", 0, 10, False), ("momentum", 0, 1, True), ("weight_decay", 0, 1, True),
           ("jitter_strength", 0, 1, True), ("hue_range", 0, 0.5, True), ("jitter_p", 0, 1, True),
           ("grey_p", 0, 1, True), ("blur_p", 0, 1, True), ("blur_sigma", 0, 100, False), ("min_scale", 0, 1, False),
           ("max_bad_fraction", 0, 1, True), ("feature_cache_gb", 0, 1e6, True), ("keep_checkpoints", 0, 1e6, True),
           ("calibrate_bn", -1, 1e9, True), ("probe_lr", 0, 10, False), ("train_list_repeats", 1, 1e6, True))


def feature_stride(arch: str) -> int:
    """Input pixels per feature cell of the network of --arch: 4 for the ResNet-FPN, the patch size
    for a ViT (the network's `stride`, known here before it is built)."""
    return ARCH_TABLE[arch].patch_size if arch in VIT_ARCHS else ResNetFPN.stride


def vit_head(args) -> Optional[str]:
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
            raise FlagError(f"--res2 {args.res2} must be at least --res1 {args.res1} (views are cut from the res2 image)")
        if args.nonparametric and args.method != "mdc":
            raise FlagError("--nonparametric applies to --method mdc")
        if args.overcluster and args.method != "picie":
            raise FlagError("--overcluster (PiCIE+H) applies to --method picie")
        if args.overcluster and args.K_aux < 2:
            raise FlagError(f"--K_aux {args.K_aux} must be at least 2")
        if args.no_balance and args.class_weights not in ("size", "none"):
            raise FlagError(f"--no_balance and --class_weights {args.class_weights} contradict each other; give one")
        if args.loss_terms != "within_cross" and args.method != "picie":
            raise FlagError(f"--loss_terms {args.loss_terms} is an ablation of PiCIE's loss; use it with --method picie")
        if args.K_aux > 65535:
            raise FlagError(f"--K_aux {args.K_aux} must be at most 65535 (labels are stored as uint16)")
    for name, low, high, closed_low in _RANGES:
        value = getattr(args, name, None)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not (v >= low if closed_low else v > low) or v > high:
                interval = f"{'[' if closed_low else '('}{low}, {high}]"
                raise FlagError(f"--{name} {' '.join(map(str, values))} must lie in {interval}")
    if for_training and args.blur_sigma[0] > args.blur_sigma[1]:
        raise FlagError(f"--blur_sigma {args.blur_sigma[0]} {args.blur_sigma[1]}: give the smaller value first")
    dataset = "cityscapes" if args.cityscapes else args.dataset
    if args.coco_classes != 27 and dataset != "cocostuff":
        raise FlagError(f"--coco_classes {args.coco_classes} chooses COCO-Stuff's label set; --dataset {dataset} has "
                        f"its own classes: drop --coco_classes")
    if args.n_classes is not None and not 1 <= args.n_classes <= 255:
        raise FlagError(f"--n_classes {args.n_classes} must lie in 1..255 (label maps are 8-bit)")
    if args.dataset == "folder" and (args.label_root is None) != (args.n_classes is None):
        raise FlagError("--label_root and --n_classes go together: give both to evaluate a folder, or neither")
    if getattr(args, "linear_probe", False) and getattr(args, "recluster", False):
        raise FlagError("--linear_probe and --recluster are two evaluation protocols; pass one of them")
    if getattr(args, "probe_epochs", 1) < 1:
        raise FlagError(f"--probe_epochs {args.probe_epochs} must be at least 1")
    if getattr(args, "linear_probe", False) and (getattr(args, "flip", False) or getattr(args, "crf", False)):
        raise FlagError("--flip and --crf score clusters (the stored classifier or --recluster), not --linear_probe; "
                        "drop one of them")


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


def data_settings(args, stuff: Optional[bool] = None, thing: Optional[bool] = None,
                  need_train: bool = True) -> DataSettings:
    """The data of the flags; --stuff/--thing unless given here (test_picie.py takes the checkpoint's);
    need_train=False when only the evaluation split is read (scoring a stored classifier)."""
    if stuff is None and thing is None:
        stuff, thing = evaluated_groups(args)
    return DataSettings(dataset="cityscapes" if args.cityscapes else args.dataset, data_root=args.data_root,
                        stuff=stuff, thing=thing, fullcoco=args.fullcoco, coco_classes=args.coco_classes,
                        cityscapes_train_splits=tuple(args.cityscapes_train_splits),
                        cityscapes_eval_splits=tuple(args.cityscapes_eval_splits), label_root=args.label_root,
                        n_classes=args.n_classes, train_list_repeats=getattr(args, "train_list_repeats", 1),
                        need_train=need_train)


def evaluated_groups(args) -> Tuple[bool, bool]:
    """(stuff, thing) evaluated: both when neither flag is given."""
    if args.stuff is None and args.thing is None:
        return True, True
    return bool(args.stuff), bool(args.thing)


def evaluated_classes(args, ckpt: Dict[str, Any]) -> Tuple[bool, bool]:
    """(stuff, thing) to score a checkpoint on: the command line's --stuff/--thing, else those the
    checkpoint was evaluated with, else all classes."""
    if args.stuff is not None or args.thing is not None:
        return bool(args.stuff), bool(args.thing)
    saved = ckpt.get("eval_config", {})
    stuff, thing = bool(saved.get("stuff", True)), bool(saved.get("thing", True))
    return (stuff, thing) if (stuff or thing) else (True, True)


def check_label_set(args, ckpt: Dict[str, Any]) -> None:
    """FlagError when a COCO-Stuff checkpoint is scored on the other label set than it was trained with
    (27 vs 171 classes; checkpoints that record none are COCO-Stuff-27's, the original's included)."""
    saved = ckpt.get("eval_config", {})
    dataset = "cityscapes" if args.cityscapes else args.dataset
    if dataset != "cocostuff" or saved.get("dataset", "cocostuff") != "cocostuff":
        return
    trained = int(saved.get("coco_classes", 27))
    if trained != args.coco_classes:
        raise FlagError(f"--coco_classes {args.coco_classes}: the checkpoint was trained on "
                        f"{label_set_name(trained)}, not {label_set_name(args.coco_classes)}; pass --coco_classes "
                        f"{trained} to score it on its own classes")


def checkpoint_resolution(args, ckpt: Dict[str, Any]) -> int:
    """The evaluation size to score a checkpoint at: --res, else the checkpoint's own evaluation
    size, else (original checkpoints record none) the protocol's 320. Every tool uses this."""
    return int(args.res or ckpt.get("eval_config", {}).get("res") or PROTOCOL_RES)


def kmeans_settings(args, n_clusters: int) -> KMeansSettings:
    return KMeansSettings(n_clusters=n_clusters, n_iter=args.kmeans_n_iter, num_init_batches=args.num_init_batches,
                          num_batches=args.num_batches, pixels_per_image=args.kmeans_pixels_per_image,
                          init_all_pixels=args.kmeans_init_all_pixels, backend=args.kmeans_backend)


def eval_settings(args, res: Optional[int] = None, stuff: Optional[bool] = None,
                  thing: Optional[bool] = None) -> EvalSettings:
    """How to score: the flags, with the resolution and the evaluated classes given here when the
    caller resolved them (test_picie.py takes them from the checkpoint)."""
    if stuff is None and thing is None:
        stuff, thing = evaluated_groups(args)
    return EvalSettings(res=res or args.res or PROTOCOL_RES, l2_normalize=args.metric_test == "cosine",
                        kmeans=kmeans_settings(args, args.K_test), repeats=args.repeats, seed=args.seed,
                        batch_size_test=args.batch_size_test, batch_size_cluster=args.batch_size_cluster,
                        num_workers=args.num_workers, bad_labels=args.bad_labels, stuff=stuff, thing=thing,
                        precision=args.eval_precision, flip=getattr(args, "flip", False),
                        crf=getattr(args, "crf", False))


def predict_settings(args, ckpt: Dict[str, Any]) -> PredictSettings:
    """predict.py's typed settings; --res defaults to the checkpoint's evaluation resolution
    (checkpoint_resolution: eval_config["res"], 320 for the original's checkpoints)."""
    return PredictSettings(res=checkpoint_resolution(args, ckpt), flip=args.flip,
                           crf=CRFSettings() if args.crf else None, matching=args.matching,
                           overlay=not args.no_overlay, overwrite=args.overwrite, batch_size=args.batch_size_test,
                           num_workers=args.num_workers, l2_normalize=args.metric_test == "cosine")


def probe_settings(args) -> ProbeSettings:
    return ProbeSettings(epochs=args.probe_epochs, lr=args.probe_lr, cache_bytes=args.feature_cache_gb * 2 ** 30)


def default_run_name(args) -> str:
    method = args.method + ("_h" if args.overcluster else "")
    arch = args.arch + ("_frozen" if args.freeze_backbone else "")
    return f"{method}_{arch}_K{args.K_train}_seed{args.seed}"


def settings_from_args(args) -> RunSettings:
    """The typed settings of a training run from train_picie.py's parsed flags (checked first)."""
    check_args(args)
    augment = augment_config(args)
    data = data_settings(args)
    run_name = args.run_name or default_run_name(args)
    # BatchNorm statistics need setting only in a randomly initialised network that has BatchNorm.
    no_batchnorm = args.arch in VIT_ARCHS
    calibrate = (args.calibrate_bn if args.calibrate_bn >= 0
                 else (0 if (args.pretrain or args.pretrain_path or no_batchnorm) else 10))
    head = vit_head(args)
    evaluation = eval_settings(args)
    record = dict(vars(args), dataset=data.dataset, stuff=data.stuff, thing=data.thing, run_name=run_name,
                  res=evaluation.res, augment_config=augment.to_dict(), vit_head=head)
    return RunSettings(
        data=data, augment=augment,
        model=ModelSettings(args.arch, args.in_dim, args.pretrain, args.pretrain_path, calibrate,
                            vit_head=head or "linear", freeze_backbone=args.freeze_backbone),
        optim=OptimSettings(args.optim_type, args.lr, args.weight_decay, args.momentum),
        kmeans=kmeans_settings(args, args.K_train),
        train=TrainSettings(method=args.method, aux_clusters=args.K_aux if args.overcluster else 0,
                            nonparametric=args.nonparametric, num_epoch=args.num_epoch,
                            batch_size_cluster=args.batch_size_cluster, batch_size_train=args.batch_size_train,
                            l2_normalize=args.metric_train == "cosine",
                            class_weights="none" if args.no_balance else args.class_weights,
                            loss_terms=args.loss_terms,
                            skip_nonfinite=args.skip_nonfinite, feature_cache_bytes=args.feature_cache_gb * 2 ** 30,
                            max_bad_fraction=args.max_bad_fraction, res1=args.res1, res2=args.res2,
                            photometric_res=args.photometric_res),
        eval=evaluation, probe=ProbeSettings(cache_bytes=args.feature_cache_gb * 2 ** 30),
        seed=args.seed, device=args.device, precision=args.precision, deterministic=args.deterministic,
        num_workers=args.num_workers, save_root=args.save_root, run_name=run_name, restart=args.restart,
        overwrite=args.overwrite, keep_checkpoints=args.keep_checkpoints, tensorboard=args.tensorboard,
        eval_init=args.eval_init, record=record)


def config_to_json(record: Dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in sorted(record.items())}, indent=2, default=str)


def eval_config(settings: RunSettings, class_names: Sequence[str]) -> Dict[str, Any]:
    """What a checkpoint records about its evaluation (test_picie.py reads it back)."""
    return {"res": settings.eval.res, "metric_test": "cosine" if settings.eval.l2_normalize else "euclidean",
            "K_test": settings.eval.n_clusters, "stuff": settings.eval.stuff, "thing": settings.eval.thing,
            "dataset": settings.data.dataset, "coco_classes": settings.data.coco_classes,
            "class_names": list(class_names)}


def roles_markdown() -> str:
    """The flags by role, as docs/configuration.md shows them (generated from FLAGS, so the page
    cannot drift from the code: a test compares them). Marks: † train_picie.py only, ‡ test_picie.py
    (and the tools on its parser) only, § predict.py only; unmarked: training and testing."""
    titles = {RESULT: "**Changes results** (what training computes):",
              RESUME_SAFE: "**Safe to change on resume** (paths, speed, bookkeeping, the run's length):",
              EVAL_ONLY: "**Evaluation only** (how a network is scored, never its training):"}
    lines = []
    for role, title in titles.items():
        groups: Dict[str, List[str]] = {}
        for flag in FLAGS:
            if flag.role == role:
                mark = "" if set(BOTH) <= set(flag.scope) else "†" if "train" in flag.scope else (
                    "‡" if "test" in flag.scope else "§")
                groups.setdefault(flag.group, []).append(f"`{flag.names[0]}`{mark}")
        lines += [title, "", "| group | flags |", "|---|---|"]
        lines += [f"| {group} | {', '.join(names)} |" for group, names in groups.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """python -m modules.config [--preset NAME] [flags] --get NAME [NAME ...]: print the values the
    flags resolve to (one per line), e.g. for shell scripts that need a preset's base values;
    python -m modules.config --roles: the flags by role, as docs/configuration.md shows them."""
    if argv is None:
        argv = sys.argv[1:]
    if list(argv) == ["--roles"]:
        print(roles_markdown(), end="")
        return 0
    parser = argparse.ArgumentParser("modules.config", parents=[get_args_parser(add_help=False)],
                                     description=main.__doc__)
    parser.add_argument("--get", nargs="+", required=True, metavar="NAME", help="flag names (dest form, e.g. K_train)")
    args = parse_args(parser, argv)
    for name in args.get:
        if not hasattr(args, name):
            parser.error(f"--get {name}: not a flag of train_picie.py")
        value = getattr(args, name)
        print(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
