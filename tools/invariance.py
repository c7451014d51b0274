"""How invariant and how equivariant a checkpoint's clusters are, one transform at a time.

    python -m tools.invariance results/ablate_transforms_demo/*/checkpoint.pth --data_root datasets/demo \
        --out reports/invariance   # writes invariance.md and invariance.json

For every photometric transform P (brightness, contrast, saturation, hue, greyscale, blur) and
every geometric transform G (random resized crop, h-flip, v-flip), applied with probability 1 and
the strength the checkpoint was trained with (the paper's by default), it measures on val images
the fraction of feature-map cells whose cluster does not change:

    photometric P:  c(f(P x))  ==  c(f(x))          invariance
    geometric G:    c(f(G x))  ==  G(c(f(x)))       equivariance (G on the network's feature map)
    paper views:    c(f(view 1)) == c(G(f(view 2)))  both views as training draws them (ViewMaker.views)

c is the nearest of the checkpoint's view-1 centroids (the training k-means's assignment), so a
score is exactly the cross-view agreement PiCIE's loss asks for, transform by transform. The
"chance" row is the agreement of two independent maps with the clusters' sizes (sum of squared
cluster fractions). The transform parameters are drawn per image from --seed, the same for every
checkpoint, so columns compare networks on identical inputs.
"""
import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from config import get_test_parser, given_flags, invariance_settings, parse_args, recorded_val_data, trained_view_sizes
from data.build import build_source
from data.datasets import TrainImages
from data.transforms import GEOMETRIC_OPS, PHOTOMETRIC_OPS, AugmentConfig, ViewMaker, make_views
from modules.kmeans import assign_cells
from modules.networks import forward_features, model_from_checkpoint
from modules.siamese import SiamesePair, embed_views
from utils.checkpoint import load_checkpoint
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import write_text
from utils.runtime import make_runtime, script_main

PAPER_VIEWS = "paper views"
STRENGTH_KEYS = ("jitter_strength", "hue_range", "blur_sigma", "min_scale")


def probe_configs(trained: dict) -> dict[str, AugmentConfig]:
    """{probe name: AugmentConfig}: one transform at a time, always applied, at the strengths of
    `trained` (the checkpoint's augment_config); last, the paper's two views with their draws."""
    strengths = {k: tuple(v) if isinstance(v, list) else v for k, v in trained.items() if k in STRENGTH_KEYS}
    always = dict(jitter_p=1.0, grey_p=1.0, blur_p=1.0, flip_p=1.0, **strengths)
    probes = {name: AugmentConfig(inv_list=(name,), **always) for name in PHOTOMETRIC_OPS}
    probes.update({name: AugmentConfig(eqv_list=(name,), **always) for name in GEOMETRIC_OPS})
    probes[PAPER_VIEWS] = AugmentConfig(inv_list=PHOTOMETRIC_OPS, eqv_list=("random_crop", "h_flip"), **strengths)
    return probes


def cluster_agreement(model, centroids: torch.Tensor, loader, probes: dict[str, AugmentConfig], res1: int,
                      seed: int, runtime) -> dict[str, float]:
    """{probe: percent of cells with the same cluster in both views, 'chance': percent}.

    centroids [K, C]; the loader yields (indices [B], base images uint8 [B, 3, res2, res2]). For a
    single-transform probe view 2 is the plain image, so z2 = G(f(x)) with f(x) computed once per
    batch; for PAPER_VIEWS both views are drawn as in training.
    """
    pair = SiamesePair(model)
    same = {name: 0 for name in probes}
    cells, sizes = 0, torch.zeros(centroids.shape[0], dtype=torch.float64)
    # G's boxes are drawn on the network's feature grid (res1 / stride cells), as in training.
    makers = {name: ViewMaker(cfg, res1, seed, feature_stride=model.stride) for name, cfg in probes.items()}
    plain_maker = ViewMaker(AugmentConfig(), res1, seed, feature_stride=model.stride)
    for indices, base in loader:
        indices = indices.tolist()
        # f(x) of the plain image once per batch: view 2 of every single-transform probe (the network
        # sees each view on its own, so this equals what a two-view forward would give).
        plain_params = plain_maker.params(0, indices, runtime.device)
        _, plain_input = make_views(plain_maker, base, plain_params, runtime, runtime.amp_dtype)
        with torch.inference_mode():
            plain_feats = forward_features(model, plain_input, runtime)
        y_plain = assign_cells(F.normalize(plain_feats, dim=1), centroids).cpu()
        cells += y_plain.numel()
        sizes += torch.bincount(y_plain.flatten(), minlength=centroids.shape[0]).double()
        for name, maker in makers.items():
            params = maker.params(0, indices, runtime.device)
            with torch.inference_mode():
                if name == PAPER_VIEWS:
                    z1, z2 = embed_views(pair, maker, base, params, runtime, l2_normalize=True)
                else:
                    view1, _ = make_views(maker, base, params, runtime, runtime.amp_dtype)
                    z1 = F.normalize(forward_features(model, view1, runtime), dim=1)
                    z2 = F.normalize(maker.geometric_on_features(plain_feats, params), dim=1)
            same[name] += int((assign_cells(z1, centroids) == assign_cells(z2, centroids)).sum())
    result = {name: 100.0 * count / cells for name, count in same.items()}
    result["chance"] = 100.0 * float(((sizes / cells) ** 2).sum())
    return result


def run_name(path: Path) -> str:
    return path.parent.name if path.name.endswith((".pth", ".pkl", ".tar")) else path.name


def markdown_table(results: dict[str, dict[str, float]], trained_with: dict[str, str]) -> str:
    names = list(results)
    rows = [f"| transform | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    rows.append("| trained with | " + " | ".join(trained_with[n] for n in names) + " |")
    for probe in next(iter(results.values())):
        label = {"chance": "chance (cluster sizes)"}.get(probe, probe)
        best = max(results[n][probe] for n in names)
        cells = [f"**{results[n][probe]:.1f}**" if results[n][probe] == best and len(names) > 1 and probe != "chance"
                 else f"{results[n][probe]:.1f}" for n in names]
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser("invariance", parents=[get_test_parser(add_help=False)],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files or run folders (or use --eval_path)")
    parser.add_argument("--n_images", type=int, default=40, help="how many val images to measure on")
    parser.add_argument("--res1", type=int, default=None, help="view size (default: the checkpoint's)")
    parser.add_argument("--res2", type=int, default=None, help="base image size (default: the checkpoint's)")
    parser.set_defaults(data_root=None, dataset=None)  # None: the checkpoint's own
    args = parse_args(parser, argv)

    def measure() -> None:
        settings = invariance_settings(args)
        results: dict[str, dict[str, float]] = {}
        trained_with: dict[str, str] = {}
        loader = None
        runtime = make_runtime(settings.device, settings.precision, settings.deterministic)
        runtime.progress = False
        for path in settings.checkpoints:
            ckpt = load_checkpoint(str(path))
            trained = ckpt.get("args", {}).get("augment_config") or {}
            # The checkpoint's own view sizes and data unless given on the command line.
            res1, res2 = trained_view_sizes(settings, ckpt)
            if loader is None:
                given = given_flags(parser, argv if argv is not None else sys.argv[1:])
                source = build_source(recorded_val_data(args, ckpt, given, path))
                images = TrainImages(source.val_images[: settings.n_images], res2)
                loader = DataLoader(images, batch_size=min(16, len(images)), num_workers=0)
            model = model_from_checkpoint(ckpt, runtime.device).eval()
            if res1 % model.stride:
                raise UserError(f"--res1 {res1} is not a multiple of {model.stride}, the feature stride of {path}'s "
                                f"{model.config.arch}; pass a multiple such as {res1 // model.stride * model.stride}")
            weight = ckpt["classifiers"]["view1"]["weight"]
            centroids = weight.reshape(weight.shape[0], -1)  # [K, C] (stored as a 1x1 conv or a matrix)
            name = run_name(path)
            if name in results:
                name = str(path)
            results[name] = cluster_agreement(model, centroids, loader, probe_configs(trained), res1, settings.seed,
                                              runtime)
            lists = [",".join(trained.get(k, [])) or "none" for k in ("inv_list", "eqv_list")]
            trained_with[name] = " / ".join(lists) if trained else "?"
        table = markdown_table(results, trained_with)
        print(f"cells whose cluster is unchanged, % ({len(images)} val images, view-1 centroids)\n")
        print(table)
        if settings.out:
            # --out (the shared flag): the table as OUT.md and the numbers as OUT.json.
            settings.out.parent.mkdir(parents=True, exist_ok=True)
            write_text(settings.out.with_suffix(".md"), table)
            write_text(settings.out.with_suffix(".json"), json.dumps(
                {"results": results, "trained_with": trained_with, "n_images": len(images), "seed": settings.seed},
                indent=1))
    return run_cli(measure)  # bad input: one error line, exit 2


if __name__ == "__main__":
    script_main(main)
