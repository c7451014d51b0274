"""Cluster-map figures: image | ground truth | clusters coloured by their matched class | correct/wrong.

    python tools/visualize.py --eval_path results/<run>/checkpoint.pth --data_root datasets/coco \
        --n_images 8 --out_dir results/<run>/cluster_maps

Clusters are matched to classes by the Hungarian matching over the whole val set (the
protocol of the metrics), so colours mean the same class in every panel. Clusters left
unmatched are drawn in grey. Runs without labels (--dataset folder without a label folder)
get image | clusters (each cluster its own colour).
"""
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from data.build import build_source, val_dataset  # noqa: E402
from data.datasets import EvalImages  # noqa: E402
from data.transforms import normalize  # noqa: E402
from modules.loss import centroid_logits  # noqa: E402
from utils.checkpoint import build_model_from_checkpoint, load_checkpoint  # noqa: E402
from utils.config import finalize_args, get_args_parser  # noqa: E402
from utils.engine import forward_features  # noqa: E402
from utils.pipeline import make_runtime, score_classifiers, val_loader  # noqa: E402

UNMATCHED = (0.5, 0.5, 0.5)


def class_palette(n_classes: int) -> np.ndarray:
    """n distinct RGB colours in [0, 1] (tab20 + tab20b, then hsv for more)."""
    colours = list(plt.get_cmap("tab20").colors) + list(plt.get_cmap("tab20b").colors)
    if n_classes > len(colours):
        colours += [plt.get_cmap("hsv")(i / n_classes)[:3] for i in range(n_classes - len(colours))]
    return np.asarray(colours[:n_classes], dtype=np.float32)


def predict(model, images: torch.Tensor, weight: torch.Tensor, bias, runtime, l2_normalize: bool) -> torch.Tensor:
    """Cluster id per pixel [B, H, W] for uint8 images [B, 3, H, W] (the evaluation protocol)."""
    x = normalize(images.to(runtime.device).float() / 255)
    with torch.inference_mode():
        feats = forward_features(model, runtime.to_device(x), runtime)
        if l2_normalize:
            feats = F.normalize(feats, dim=1)
        logits = centroid_logits(feats, weight.to(runtime.device), None if bias is None else bias.to(runtime.device))
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1).cpu()


def colour_map(ids: np.ndarray, palette: np.ndarray, ignore_colour=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[H, W] ids (-1 = ignore) -> [H, W, 3] colours."""
    out = np.empty((*ids.shape, 3), dtype=np.float32)
    out[:] = ignore_colour
    valid = ids >= 0
    out[valid] = palette[ids[valid]]
    return out


def render(model, ckpt: dict, args, runtime, out_dir: Path, n_images: int, classifier: str = "view1") -> list:
    """Write one PNG per image plus a legend; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = build_source(args)
    entry = ckpt["classifiers"][classifier]
    weight, bias = entry["weight"], entry.get("bias")
    written = []
    if source.has_labels:
        metrics = score_classifiers(model, val_loader(source, args, runtime), {classifier: entry}, source, args,
                                    runtime, desc="matching")[classifier]
        class_of_cluster = np.asarray(metrics["cluster_to_class"])
        dataset = val_dataset(source, args.res, args.bad_labels)
        palette = class_palette(source.n_classes)
        names = source.class_names
    else:
        metrics, class_of_cluster = None, None
        dataset = EvalImages(source.val_images or source.train_images, args.res)
        palette = class_palette(weight.shape[0])
        names = [f"cluster {k}" for k in range(weight.shape[0])]
    for i in range(min(n_images, len(dataset))):
        _, image, label = dataset[i]
        clusters = predict(model, image[None], weight, bias, runtime, args.metric_test == "cosine")[0].numpy()
        panels = [("image", image.permute(1, 2, 0).numpy())]
        if metrics is not None:
            label = label.numpy().astype(np.int64)
            matched = class_of_cluster[clusters]
            pred_colours = colour_map(matched, palette)
            pred_colours[matched < 0] = UNMATCHED
            correct = np.zeros((*label.shape, 3), dtype=np.float32)
            correct[(label >= 0) & (matched == label)] = (0.1, 0.75, 0.2)
            correct[(label >= 0) & (matched != label)] = (0.85, 0.1, 0.1)
            panels += [("ground truth", colour_map(label, palette)), ("clusters (matched class)", pred_colours),
                       ("correct / wrong", correct)]
        else:
            panels.append(("clusters", colour_map(clusters, palette)))
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
        for ax, (title, panel) in zip(np.atleast_1d(axes), panels):
            ax.imshow(panel)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        path = out_dir / f"cluster_map_{i:03d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    fig = plt.figure(figsize=(4, 0.3 * len(names) + 0.6))
    handles = [Patch(color=palette[k], label=name) for k, name in enumerate(names)]
    handles.append(Patch(color=UNMATCHED, label="unmatched cluster"))
    if metrics is not None:
        handles += [Patch(color=(0, 0, 0), label="ignored (unlabelled)")]
    fig.legend(handles=handles, loc="center", fontsize=8, frameon=False)
    legend = out_dir / "legend.png"
    fig.savefig(legend, dpi=80)
    plt.close(fig)
    written.append(legend)
    return written


def main(argv=None) -> int:
    parser = get_args_parser()
    parser.add_argument("--n_images", type=int, default=8, help="how many val images to draw")
    parser.add_argument("--out_dir", type=str, default=None, help="output folder (default: <checkpoint folder>/cluster_maps)")
    parser.add_argument("--classifier", type=str, default="view1", choices=["view1", "view2"],
                        help="which stored classifier colours the clusters")
    args = parser.parse_args(argv)
    try:
        args = finalize_args(args, for_training=False)
        if not args.eval_path:
            raise ValueError("--eval_path is required: the checkpoint whose clusters to draw")
        ckpt = load_checkpoint(args.eval_path)
        if args.stuff is None and args.thing is None:
            saved = ckpt.get("eval_config", {})
            args.stuff, args.thing = bool(saved.get("stuff", True)), bool(saved.get("thing", True))
        runtime = make_runtime(args)
        runtime.progress = False
        model = build_model_from_checkpoint(ckpt, runtime.device)
        out_dir = Path(args.out_dir) if args.out_dir else Path(args.eval_path).parent / "cluster_maps"
        written = render(model, ckpt, args, runtime, out_dir, args.n_images, args.classifier)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} PNG files to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
