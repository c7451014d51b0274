"""Cluster-map figures: image | ground truth | clusters coloured by their matched class | correct/wrong.

    python -m tools.visualize --eval_path results/<run>/checkpoint.pth --data_root datasets/coco \
        --n_images 8 --out_dir results/<run>/cluster_maps

Clusters are matched to classes by the Hungarian matching over the whole val set (the
protocol of the metrics), so colours mean the same class in every panel; `--matching majority`
maps every cluster to the class it overlaps most instead (for over-clustered checkpoints,
K_train > classes, where the one-to-one matching leaves most clusters unmatched). Clusters left
unmatched are drawn in grey, unlabelled pixels black. Writes cluster_map_<i>.png per image,
overview.png (all of them) and legend.png. The evaluation size --res defaults to the one the
checkpoint was evaluated at. Runs without labels (--dataset folder without a label folder)
get image | clusters (each cluster its own colour).
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np
from matplotlib.patches import Patch

from config import data_root_line, get_test_parser, given_flags, parse_args, visualize_checkpoint, visualize_settings
from data.build import build_source, val_dataset
from data.datasets import EvalImages
from modules.evaluation import EvalSettings, cluster_ids, evaluation_runtime, score_classifiers, val_loader
from modules.networks import model_from_checkpoint
from utils.checkpoint import load_checkpoint
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import save_figure
from utils.runtime import make_runtime, script_main
from utils.viz import CORRECT, IGNORED, UNMATCHED, WRONG, class_palette, cluster_panels


def render(model, ckpt: dict, source, settings: EvalSettings, runtime, out_dir: Path, n_images: int,
           classifier: str = "view1", matching: str = "hungarian") -> list:
    """Write one PNG per image, an overview of all of them and a legend; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if classifier not in ckpt.get("classifiers", {}):
        raise UserError(f"--classifier {classifier}: the checkpoint stores {sorted(ckpt.get('classifiers', {}))}")
    entry = ckpt["classifiers"][classifier]
    weight, bias = entry["weight"], entry.get("bias")
    written, rows = [], []
    if source.has_labels:
        # Matching over the whole val set (the metrics' protocol), so a colour means one class everywhere.
        metrics = score_classifiers(model, val_loader(source, settings, runtime), {classifier: entry}, source, settings,
                                    runtime, desc="matching")[classifier]
        if matching == "majority":
            if "majority" not in metrics:
                raise UserError(f"--matching majority needs more clusters than classes; the checkpoint has "
                                 f"{weight.shape[0]} clusters for {source.n_classes} classes")
            metrics = metrics["majority"]
        class_of_cluster = np.asarray(metrics["cluster_to_class"])
        dataset = val_dataset(source, settings.res, settings.bad_labels)
        palette = class_palette(source.n_classes)
        names = list(source.class_names)
    else:
        metrics, class_of_cluster = None, None
        dataset = EvalImages(source.val_images or source.train_images, settings.res)
        palette = class_palette(weight.shape[0])
        names = [f"cluster {k}" for k in range(weight.shape[0])]
    for i in range(min(n_images, len(dataset))):
        _, image, label = dataset[i]
        clusters = cluster_ids(model, image[None], weight, bias, runtime, settings.l2_normalize)[0].numpy()
        label = label.numpy().astype(np.int64) if metrics is not None else None
        panels = cluster_panels(image, clusters, label, class_of_cluster, palette)
        rows.append((dataset.image_paths[i].name, panels))
        fig = _figure([rows[-1]])
        path = out_dir / f"cluster_map_{i:03d}.png"
        save_figure(fig, path, dpi=80)
        plt.close(fig)
        written.append(path)
    if rows:
        fig = _figure(rows)
        path = out_dir / "overview.png"
        save_figure(fig, path, dpi=80)
        plt.close(fig)
        written.append(path)
    fig = plt.figure(figsize=(4, 0.3 * len(names) + 0.9))
    handles = [Patch(color=palette[k], label=name) for k, name in enumerate(names)]
    handles.append(Patch(color=UNMATCHED, label="unmatched cluster"))
    if metrics is not None:
        handles += [Patch(color=IGNORED, label="ignored (unlabelled)"), Patch(color=CORRECT, label="correct"),
                    Patch(color=WRONG, label="wrong")]
    fig.legend(handles=handles, loc="center", fontsize=8, frameon=False)
    legend = out_dir / "legend.png"
    save_figure(fig, legend, dpi=80)
    plt.close(fig)
    written.append(legend)
    if metrics is not None:
        print(f"{classifier} classifier, {matching} matching over {len(source.val_images)} val images: "
              f"acc {metrics['acc']:.2f} mIoU {metrics['mIoU']:.2f}")
    return written


def _figure(rows):
    """One figure row per image: [(name, [(title, panel), ...]), ...]."""
    n_cols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(3.2 * n_cols, 3.4 * len(rows)), squeeze=False)
    for r, (name, panels) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(panels):
                title, panel = panels[c]
                ax.imshow(panel, interpolation="nearest")
                ax.set_title(f"{name}\n{title}" if c == 0 else title, fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser("visualize", parents=[get_test_parser(add_help=False)],
                                     description="Draw cluster maps of a checkpoint's classifier on val images.")
    parser.add_argument("--n_images", type=int, default=8, help="how many val images to draw")
    parser.add_argument("--out_dir", type=str, default=None,
                        help="output folder (default: <checkpoint folder>/cluster_maps)")
    parser.add_argument("--classifier", type=str, default="view1", choices=["view1", "view2"],
                        help="which stored classifier colours the clusters")
    parser.add_argument("--matching", type=str, default="hungarian", choices=["hungarian", "majority"],
                        help="cluster -> class mapping: one-to-one (the metrics' protocol) or many-to-one")
    # None: take the checkpoint's evaluation size (a res-96 demo checkpoint drawn at 320 looks wrong).
    parser.set_defaults(res=None)
    args = parse_args(parser, argv)

    def draw() -> None:
        ckpt = load_checkpoint(visualize_checkpoint(args))
        s = visualize_settings(args, ckpt, given_flags(parser, argv if argv is not None else sys.argv[1:]))
        print(data_root_line(s.data_record))
        runtime = evaluation_runtime(make_runtime(s.device, s.precision, s.deterministic), s.eval)
        runtime.progress = False
        model = model_from_checkpoint(ckpt, runtime.device)
        source = build_source(s.data)
        written = render(model, ckpt, source, s.eval, runtime, s.out_dir, s.n_images, s.classifier, s.matching)
        print(f"wrote {len(written)} PNG files to {s.out_dir}")
    return run_cli(draw)  # bad input: one error line, exit 2


if __name__ == "__main__":
    script_main(main)
