"""Every flag of the scripts, declared once, with its role and scope.

Each flag is declared once in FLAGS with
- its role: RESULT (changes what training computes: compared when a run is resumed, shown by
  tools/compare_runs.py when runs differ), RESUME_SAFE (paths, speed, bookkeeping and the run's
  length: may change freely when a run is resumed) or EVAL_ONLY (changes only how a network is
  scored, never its training);
- its scope: the scripts that take it (train_picie.py, test_picie.py, or both; predict.py takes
  test_picie.py's flags and those of scope predict); the parsers of the scripts are built from
  the table (config/parsers.py), and tools extend them with `parents=`.
Flag names of the original PiCIE scripts are kept, so commands written for it run unchanged.
Defaults are the original parser's (augmentations are opt-in switches, as in the original).
A flag whose setting has a field in a settings dataclass of modules/ or data/ (KMeansSettings,
ObjectiveSettings, AugmentConfig, ProbeSettings) takes its default from that field, so that
each default is written once.
"""
import argparse
from dataclasses import dataclass
from typing import Any

from data.build import DATASETS, DataSettings
from data.cityscapes import DEFAULT_EVAL_SPLITS, DEFAULT_TRAIN_SPLITS
from data.cityscapes import SPLITS as CITYSCAPES_SPLITS
from data.cocostuff_classes import LABEL_SETS
from data.transforms import GEOMETRIC_OPS, PHOTOMETRIC_OPS, PHOTOMETRIC_RES, AugmentConfig
from data.validation import BAD_LABEL_POLICIES, DEFAULT_BAD_LABELS
from modules.fpn import ARCHS
from modules.kmeans import BACKENDS, KMeansSettings
from modules.loss import CLASS_WEIGHTS, LOSS_TERMS
from modules.objectives import METHODS, ObjectiveSettings
from modules.probe import ProbeSettings
from modules.vit import HEADS, VIT_ARCHS
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
    names: tuple[str, ...]
    role: str
    scope: tuple[str, ...]
    kwargs: dict[str, Any]

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.names[0].lstrip("-")


FLAGS: list[Flag] = []


def _flag(group: str, scope: tuple[str, ...], role: str, *names: str, **kwargs) -> None:
    FLAGS.append(Flag(group, names, role, scope, kwargs))


# -- the flags ------------------------------------------------------------------------------------
G = "paths and run"
_flag(G, BOTH, RESUME_SAFE, "--preset", type=str, default=None, choices=("paper", "demo", "tiny"),
      help="start from the paper's, the built-in demo's or a tiny CPU run's settings (flags given still win)")
_flag(G, BOTH, RESUME_SAFE, "--data_root", type=str, default=DataSettings.data_root,
      help="dataset root (layout in docs/datasets.md)")
_flag(G, BOTH, RESUME_SAFE, "--save_root", type=str, default="results",
      help="train_picie.py: folder that holds run folders; test_picie.py (and train_picie.py --eval_only): folder "
           "the metrics go to, as <save_root>/test_metrics.json, unless --out names the file (default there: none)")
_flag(G, TRAIN, RESUME_SAFE, "--run_name", type=str, default=None,
      help="run folder name under --save_root (default: <method>_<arch>_K<K_train>_seed<seed>)")
_flag(G, TRAIN, RESUME_SAFE, "--comment", type=str, default="",
      help="free text stored in the run config (original flag)")
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
      help="DataLoader worker processes (capped at the CPUs this process may use; on the CPU device at "
           "those torch's threads leave free)")
_flag(G, BOTH, RESUME_SAFE, "--device", type=str, default="auto", choices=DEVICES,
      help="where the network and k-means run (auto: cuda if available)")
_flag(G, BOTH, RESULT, "--precision", type=str, default="auto", choices=PRECISIONS,
      help="autocast dtype of the training forward passes (auto: bf16 on CUDA, and on a CPU with bf16 units where "
           "bf16 measures at least 1.3x faster than float32; else fp32)")
_flag(G, BOTH, EVAL_ONLY, "--eval_precision", type=str, default="fp32", choices=PRECISIONS,
      help="autocast dtype of every evaluation forward pass (epoch scores, final protocol, test_picie.py, "
           "linear probe); fp32 reproduces the original's numbers, bf16 is faster")
_flag(G, BOTH, RESUME_SAFE, "--skip_memory_check", action="store_true",
      help="run even where the memory estimate made before any work (docs/reliability.md) says the run does not fit")
_flag(G, TRAIN, RESUME_SAFE, "--keep_checkpoints", type=int, default=0,
      help="also keep the last N per-epoch checkpoints (checkpoint_epoch<N>.pth)")
_flag(G, BOTH, RESULT, "--deterministic", action="store_true",
      help="deterministic kernels and fp32, so that reruns and resumed runs match bit for bit on the CPU")
_flag(G, TRAIN, RESUME_SAFE, "--tensorboard", action="store_true",
      help="also log losses, k-means loss, per-epoch metrics and a few cluster maps to "
           "<run folder>/tensorboard (needs the optional tensorboard package)")

G = "data"
_flag(G, BOTH, RESULT, "--dataset", type=str, default=DataSettings.dataset, choices=DATASETS, help="data source")
_flag(G, BOTH, RESULT, "--cityscapes", action="store_true", help="same as --dataset cityscapes (original flag)")
_flag(G, BOTH, RESULT, "--fullcoco", action="store_true",
      help="train on every image in images/train2017 instead of the curated list")
_flag(G, BOTH, RESULT, "--coco_classes", type=int, default=DataSettings.coco_classes, choices=LABEL_SETS,
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
_flag(G, BOTH, RESUME_SAFE, "--bad_labels", type=str, default=DEFAULT_BAD_LABELS, choices=BAD_LABEL_POLICIES,
      help="evaluation label map whose size differs from its image or with undefined values "
           "(COCO-Stuff: not 0..181 or 255): stop with an error, or fix it (resize by nearest "
           "neighbour, undefined values unlabelled; counted in final_metrics.json); resize = fix")
_flag(G, TRAIN, RESULT, "--train_list_repeats", type=int, default=DataSettings.train_list_repeats,
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
_flag(G, BOTH, RESULT, "--num_init_batches", type=int, default=KMeansSettings.num_init_batches,
      help="batches collected for the initial k-means")
_flag(G, BOTH, RESULT, "--num_batches", type=int, default=KMeansSettings.num_batches,
      help="batches per online centroid update")
_flag(G, BOTH, RESULT, "--kmeans_n_iter", type=int, default=KMeansSettings.n_iter,
      help="Lloyd iterations of the initial k-means")
_flag(G, BOTH, RESULT, "--kmeans_backend", type=str, default=KMeansSettings.backend, choices=BACKENDS,
      help="k-means implementation (auto: torch on CUDA, faiss on the CPU)")
_flag(G, BOTH, RESULT, "--kmeans_pixels_per_image", type=int, default=KMeansSettings.pixels_per_image,
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
_flag(G, TRAIN, RESULT, "--class_weights", type=str, default=ObjectiveSettings.class_weights, choices=CLASS_WEIGHTS,
      help="cross-entropy class weights: size (cluster size / total, the original's), inverse (inverse frequency), "
           "none")
_flag(G, TRAIN, RESULT, "--loss_terms", type=str, default=ObjectiveSettings.loss_terms, choices=LOSS_TERMS,
      help="PiCIE's loss: the mean of the within- and cross-view terms (the paper's), or one of them alone "
           "(component ablation: within = no cross-view term)")
_flag(G, TRAIN, RESUME_SAFE, "--skip_nonfinite", action="store_true",
      help="skip training steps with a non-finite loss (counted) instead of stopping")

G = "method"
_flag(G, TRAIN, RESULT, "--method", type=str, default=ObjectiveSettings.method, choices=METHODS,
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
_flag(G, TRAIN, RESULT, "--min_scale", type=float, default=AugmentConfig.min_scale,
      help="smallest crop side as a fraction of the image")
G = "augmentation (explicit lists)"
_flag(G, TRAIN, RESULT, "--inv_list", type=str, default=None,
      help=f"photometric transforms, comma separated, added to the switches: jitter, {', '.join(PHOTOMETRIC_OPS)}")
_flag(G, TRAIN, RESULT, "--eqv_list", type=str, default=None,
      help=f"geometric transforms, comma separated, added to the switches: {', '.join(GEOMETRIC_OPS)}")
_flag(G, TRAIN, RESULT, "--photometric_res", type=str, default=PHOTOMETRIC_RES[0], choices=PHOTOMETRIC_RES,
      help="apply the photometric ops at the network's input size (fast) or on the res2 base image")
_flag(G, TRAIN, RESULT, "--jitter_strength", type=float, default=AugmentConfig.jitter_strength,
      help="colour factors drawn in [1-s, 1+s]")
_flag(G, TRAIN, RESULT, "--hue_range", type=float, default=AugmentConfig.hue_range, help="hue shift drawn in [-h, h]")
_flag(G, TRAIN, RESULT, "--jitter_p", type=float, default=AugmentConfig.jitter_p, help="probability of each colour op")
_flag(G, TRAIN, RESULT, "--grey_p", type=float, default=AugmentConfig.grey_p, help="probability of greyscale")
_flag(G, TRAIN, RESULT, "--blur_p", type=float, default=AugmentConfig.blur_p, help="probability of blur")
_flag(G, TRAIN, RESULT, "--blur_sigma", type=float, nargs=2, default=AugmentConfig.blur_sigma,
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
_flag(G, TEST, EVAL_ONLY, "--probe_epochs", type=int, default=ProbeSettings.epochs,
      help="--linear_probe: epochs over the labelled train images")
_flag(G, TEST, EVAL_ONLY, "--probe_lr", type=float, default=ProbeSettings.lr, help="--linear_probe: Adam learning rate")
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

ROLES: dict[str, str] = {flag.dest: flag.role for flag in FLAGS}


def roles_markdown() -> str:
    """The flags by role, as docs/configuration.md shows them (generated from FLAGS, so the page
    cannot drift from the code: a test compares them). Marks: † train_picie.py only, ‡ test_picie.py
    (and the tools on its parser) only, § predict.py only; unmarked: training and testing."""
    titles = {RESULT: "**Changes results** (what training computes):",
              RESUME_SAFE: "**Safe to change on resume** (paths, speed, bookkeeping, the run's length):",
              EVAL_ONLY: "**Evaluation only** (how a network is scored, never its training):"}
    lines = []
    for role, title in titles.items():
        groups: dict[str, list[str]] = {}
        for flag in FLAGS:
            if flag.role == role:
                mark = "" if set(BOTH) <= set(flag.scope) else "†" if "train" in flag.scope else (
                    "‡" if "test" in flag.scope else "§")
                groups.setdefault(flag.group, []).append(f"`{flag.names[0]}`{mark}")
        lines += [title, "", "| group | flags |", "|---|---|"]
        lines += [f"| {group} | {', '.join(names)} |" for group, names in groups.items()]
        lines.append("")
    return "\n".join(lines)
