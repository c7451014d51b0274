"""Segment arbitrary images with a trained checkpoint at full resolution (predict.py's logic).

Per image:
1. read as RGB whatever its mode (data/datasets.py's load_rgb: greyscale, RGBA on black, 16-bit,
   ...), turned upright by its EXIF orientation, so that the maps line up with the image as
   viewers show it;
2. resized (bilinear, as the evaluation images) so that the shorter side is --res, both sides
   rounded to a multiple of the network's stride (4 for the FPN, the patch size for a ViT);
   never cropped. A strip longer than
   MAX_ASPECT times its width is scaled so that its long side is MAX_ASPECT x --res instead
   (its shorter side then falls below --res), which bounds the memory of such inputs;
3. the evaluation feature path (modules/evaluation.py's eval_features; with --flip
   flip_averaged_features), the stored classifier's logits upsampled bilinearly to the image's
   full resolution (upsampled_logits), with --crf refined by a dense CRF at that resolution
   (modules/crf.py), argmax -> cluster id per pixel;
4. cluster ids -> class ids through the cluster -> class matching stored in the checkpoint
   (train_picie.py stores the one of its last evaluation); without a stored matching (the
   original's checkpoints, or a run without labels) the maps hold cluster ids.

Batches: images whose network input has the same size share a batch (up to --batch_size_test
images and MAX_BATCH_PIXELS full-resolution pixels); others run one by one. Padding mixed
sizes into one batch would change the features near the padded borders, so a batch is never
padded; photos from one camera (the common case) still run together.

Outputs in the --output folder, named after the input (data/image_files.py: which files, which
names, nothing replaced without --overwrite). Per image <name>.png (the index map, single channel, full size; uint8,
or 16-bit for cluster maps with more than 255 clusters) and <name>_overlay.jpg (the image
blended with the index colours) unless --no_overlay; per run legend.png (index -> colour and
name) and predict.json (the index meaning, matching, class names, settings, every image's files
and every skipped file with its reason).
"""
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset

from data.datasets import MAX_ASPECT, load_rgb, pil_to_uint8_tensor
from data.image_files import IMAGE_SUFFIXES, InputImage, PredictError, collect_inputs, output_files, prepare_output
from modules.crf import CRFSettings, crf_refine, require_crf
from modules.evaluation import eval_features, flip_averaged_features, upsampled_logits
from modules.networks import network_cost
from utils.checkpoint import CheckpointError
from utils.files import save_image
from utils.loaders import usable_workers
from utils.memory import (
    PREDICTION_ON_DEVICE,
    Available,
    MemoryLimitError,
    NetworkCost,
    check_fits,
    format_parts,
    prediction_parts,
)
from utils.run import write_json
from utils.runtime import Runtime
from utils.viz import UNMATCHED as UNMATCHED_COLOUR
from utils.viz import class_palette

log = logging.getLogger("picie")

UNMATCHED = 255            # index of pixels whose cluster no class was matched to (class maps)
WRITE_HINT = "the maps written before it are complete: free disk space or choose another --output"
MAX_BATCH_PIXELS = 2 ** 26  # full-resolution pixels one batch may hold (its images: 192 MiB as uint8 RGB)
# EXIF orientation -> the transpose that makes the image upright (PIL.ImageOps.exif_transpose's table).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class PredictSettings:
    """How predict.py segments: network input size (--res, the shorter side), --flip, the CRF
    (None: off), the stored matching used (--matching), overlays, --overwrite, batches, workers
    and the feature normalisation of evaluation (--metric_test). Built from the flags by
    config/from_args.py: predict_settings; the defaults are the flags' (config/flags.py)."""

    res: int
    flip: bool
    crf: CRFSettings | None
    matching: str
    overlay: bool
    overwrite: bool
    batch_size: int                    # --batch_size_test
    num_workers: int
    l2_normalize: bool
    skip_memory_check: bool = False    # --skip_memory_check (check_prediction_memory)
    overlay_alpha: float = 0.5         # not a flag: how strongly the overlays show the index colours


@dataclass
class Indexing:
    """What the written indices mean: classes through a stored matching, or clusters.

    lut [K] maps a cluster id to the written index; names and colours [N, 3] describe indices
    0..N-1; `unmatched` is the index of pixels whose cluster has no class (class maps only)."""

    kind: str                                   # "class" or "cluster"
    lut: np.ndarray
    names: list[str]
    colours: np.ndarray
    matching: str | None = None
    cluster_to_class: list[int] | None = None
    unmatched: int | None = None
    dtype: type = np.uint8


# -- image sizes, loading, batches ----------------------------------------------------------------
def upright_size(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of an image as viewers show it, from its header only;
    raises whatever PIL raises for a file that is not an image."""
    with Image.open(path) as image:
        width, height = image.size
        try:
            orientation = int(image.getexif().get(0x0112, 1))
        except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
            orientation = 1
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees
        width, height = height, width
    return width, height, orientation


def network_size(width: int, height: int, res: int, stride: int) -> tuple[int, int]:
    """(width, height) the network sees: shorter side `res`, the aspect ratio kept, both sides
    rounded to a multiple of `stride` (the network's, model.stride; at least one stride). Strips longer
    than MAX_ASPECT times their width are scaled to a long side of MAX_ASPECT x res instead."""
    scale = res / min(width, height)
    if max(width, height) * scale > MAX_ASPECT * res:
        scale = MAX_ASPECT * res / max(width, height)

    def side(n: int) -> int:
        return max(stride, int(round(n * scale / stride)) * stride)

    return side(width), side(height)


class PredictImages(Dataset):
    """Item i -> (i, uint8 [3, h, w] at the network size, uint8 [H, W, 3] at full size or None,
    None), or (i, None, None, reason) when the file cannot be decoded."""

    def __init__(self, paths: Sequence[Path], orientations: Sequence[int], sizes: Sequence[tuple[int, int]],
                 keep_full: bool):
        self.paths, self.orientations, self.sizes = list(paths), list(orientations), list(sizes)
        self.keep_full = keep_full

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = load_rgb(self.paths[index])
            if self.orientations[index] in _UPRIGHT:
                image = image.transpose(_UPRIGHT[self.orientations[index]])
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
            return index, None, None, f"{exc.__class__.__name__}: {exc}"
        width, height = self.sizes[index]
        resized = image if image.size == (width, height) else TF.resize(
            image, [height, width], interpolation=TF.InterpolationMode.BILINEAR)
        full = np.array(image, dtype=np.uint8) if self.keep_full else None  # a writable copy (torch views it)
        return index, pil_to_uint8_tensor(resized), full, None


def size_batches(sizes: Sequence[tuple[int, int]], full_pixels: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by network input size, in batches of at most batch_size images and
    MAX_BATCH_PIXELS full-resolution pixels (at least one image each)."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i][1], sizes[i][0], i))
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if (last and sizes[last[0]] == sizes[i] and len(last) < batch_size
                and sum(full_pixels[j] for j in last) + full_pixels[i] <= MAX_BATCH_PIXELS):
            last.append(i)
        else:
            batches.append([i])
    return batches


# -- what the indices mean ------------------------------------------------------------------------
def select_classifier(ckpt: dict) -> tuple[str, dict]:
    """The classifier test_picie.py scores first: view1 when stored, else the first one."""
    classifiers = ckpt.get("classifiers") or {}
    if not classifiers:
        raise CheckpointError("the checkpoint stores no classifier (an epoch-0 checkpoint?); pass the checkpoint "
                              "of a run that finished at least one epoch")
    name = "view1" if "view1" in classifiers else next(iter(classifiers))
    return name, classifiers[name]


def indexing_of(entry: dict, matching: str) -> Indexing:
    """Class ids through the stored matching of the classifier `entry` (--matching), else cluster ids."""
    n_clusters = int(entry["weight"].shape[0])
    key = "cluster_to_class" if matching == "hungarian" else "cluster_to_class_majority"
    if matching == "majority" and key not in entry:
        raise PredictError("--matching majority: the checkpoint stores no many-to-one matching (stored when the "
                           "classifier has more clusters than classes); use --matching hungarian")
    if key not in entry or "class_names" not in entry:
        names = [f"cluster {k}" for k in range(n_clusters)]
        dtype = np.uint8 if n_clusters <= 256 else np.uint16
        return Indexing("cluster", np.arange(n_clusters), names, class_palette(n_clusters), dtype=dtype)
    cluster_to_class = [int(c) for c in entry[key]]
    class_names = [str(n) for n in entry["class_names"]]
    if len(cluster_to_class) != n_clusters or max(cluster_to_class) >= len(class_names):
        raise CheckpointError(f"the stored matching ({len(cluster_to_class)} clusters) does not fit the classifier "
                              f"({n_clusters} clusters, {len(class_names)} classes); the checkpoint is damaged")
    lut = np.array([c if c >= 0 else UNMATCHED for c in cluster_to_class], dtype=np.int64)
    return Indexing("class", lut, class_names, class_palette(len(class_names)), matching=matching,
                    cluster_to_class=cluster_to_class, unmatched=UNMATCHED if min(cluster_to_class) < 0 else None)


# -- the maps -------------------------------------------------------------------------------------
def cluster_maps(model, images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 full_sizes: Sequence[tuple[int, int]], full_images: Sequence[np.ndarray | None],
                 runtime: Runtime, settings: PredictSettings) -> list[torch.Tensor]:
    """Cluster id per pixel at full resolution (int64 [H, W] per image, CPU) of uint8 images
    [B, 3, h, w] of one network size; full_sizes (W, H); full_images uint8 [H, W, 3] (used by
    the CRF). Logits are upsampled per image: [K, H, W] float32 of one image at a time."""
    with torch.inference_mode():
        feats = eval_features(model, images, runtime, settings.l2_normalize)
        if settings.flip:
            feats = flip_averaged_features(model, images, runtime, settings.l2_normalize, feats)
        maps = []
        for i, (width, height) in enumerate(full_sizes):
            logits = upsampled_logits(feats[i:i + 1], weight, bias, (height, width))[0]
            if settings.crf is not None:
                full = torch.from_numpy(full_images[i]).permute(2, 0, 1)
                maps.append(crf_refine(logits, full, settings.crf).argmax(0))
            else:
                maps.append(logits.argmax(0).cpu())
    return maps


def overlay(image: np.ndarray, indices: np.ndarray, indexing: Indexing, alpha: float) -> np.ndarray:
    """The image [H, W, 3] uint8 blended with the colour of each pixel's index (grey: unmatched)."""
    colours = np.empty((*indices.shape, 3), dtype=np.float32)
    valid = indices < len(indexing.names)
    colours[valid] = indexing.colours[indices[valid]]
    colours[~valid] = UNMATCHED_COLOUR
    blended = (1 - alpha) * image.astype(np.float32) + alpha * 255 * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def draw_legend(indexing: Indexing, path: Path) -> None:
    """legend.png: one row per index, a colour swatch, the index and its name."""
    rows = [(k, tuple(c), name) for k, (c, name) in enumerate(zip(indexing.colours, indexing.names, strict=True))]
    if indexing.unmatched is not None:
        rows.append((indexing.unmatched, UNMATCHED_COLOUR, "unmatched cluster"))
    font = ImageFont.load_default()
    row_h, width = 18, 300
    image = Image.new("RGB", (width, row_h * (len(rows) + 1) + 6), "white")
    draw = ImageDraw.Draw(image)
    title = f"class ids ({indexing.matching} matching)" if indexing.kind == "class" else "cluster ids (no matching)"
    draw.text((6, 4), title, fill="black", font=font)
    for r, (index, colour, name) in enumerate(rows, start=1):
        top = r * row_h + 4
        draw.rectangle([6, top, 20, top + 13], fill=tuple(int(round(255 * v)) for v in colour), outline="black")
        draw.text((28, top), f"{index:>3}  {name}", fill="black", font=font)
    save_image(image, path, hint=WRITE_HINT)


@dataclass
class PredictReport:
    """What a run wrote and skipped (predict.json holds it with the settings)."""

    written: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    ignored_files: int = 0
    seconds: float = 0.0


def read_headers(images: Sequence[InputImage], report: PredictReport
                 ) -> tuple[list[InputImage], list[tuple[int, int]], list[int]]:
    """The images whose header can be read, their upright (width, height) and EXIF orientations;
    the others go to report.skipped with the reason. Headers only: sizes are known (to batch by
    size) before any image is decoded."""
    readable, sizes, orientations = [], [], []
    for image in images:
        try:
            width, height, orientation = upright_size(image.path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for files that are no images
            report.skipped.append({"input": str(image.path), "reason": f"{exc.__class__.__name__}: {exc}"})
            continue
        readable.append(image)
        sizes.append((width, height))
        orientations.append(orientation)
    return readable, sizes, orientations


def check_prediction_memory(net: NetworkCost, images: Sequence[InputImage], full_sizes: Sequence[tuple[int, int]],
                            settings: PredictSettings, n_clusters: int, device,
                            available: Available | None = None) -> dict[str, float]:
    """Stop with one line (MemoryLimitError) unless predicting fits (utils/memory.py:
    prediction_parts): it names the largest --res that fits, or the largest image when even the
    smallest --res does not fit (its full-resolution maps alone are too large: no flag helps)."""
    available = available or Available.now(device)
    largest = max(range(len(full_sizes)), key=lambda i: full_sizes[i][0] * full_sizes[i][1])
    width, height = full_sizes[largest]
    batch = min(settings.batch_size, len(full_sizes), max(1, MAX_BATCH_PIXELS // (width * height)))

    def parts_at(res: int) -> dict[str, float]:
        net_width, net_height = network_size(width, height, res, net.stride)
        return prediction_parts(net, net_width * net_height, width * height, batch * width * height, batch,
                                n_clusters, settings.crf is not None)

    low = max(32, net.stride)
    try:
        return check_fits("prediction", parts_at, settings.res, "--res", PREDICTION_ON_DEVICE, available, net.stride,
                          low, skip=settings.skip_memory_check)
    except MemoryLimitError as exc:
        if exc.largest is not None:
            raise
        raise MemoryLimitError(f"{images[largest].path} ({width}x{height}) is too large to segment at full "
                               f"resolution in this memory even at --res {low} ({format_parts(parts_at(low), 2)}); "
                               "downscale it, or pass --skip_memory_check to try anyway") from None


def segment_images(model, ckpt: dict, inputs: Sequence[str], out_dir: Path, settings: PredictSettings,
                runtime: Runtime, checkpoint_path: str = "") -> PredictReport:
    """Segment every image of `inputs` (see collect_inputs) and write the outputs to out_dir."""
    started = time.perf_counter()
    if settings.crf is not None:
        require_crf()
    classifier, entry = select_classifier(ckpt)
    indexing = indexing_of(entry, settings.matching)
    images, ignored = collect_inputs(inputs, exclude=out_dir)
    if not images:
        raise PredictError(f"--input {' '.join(inputs)}: no image files found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    prepare_output(out_dir, images, settings.overwrite, settings.overlay)
    report = PredictReport(ignored_files=ignored)
    if ignored:
        log.info("ignored %d file(s) without an image suffix in the --input folders", ignored)
    if indexing.kind == "cluster":
        log.info("the checkpoint stores no cluster -> class matching: the maps hold cluster ids 0..%d",
                 len(indexing.names) - 1)

    readable, full_sizes, orientations = read_headers(images, report)
    sizes = [network_size(width, height, settings.res, model.stride) for width, height in full_sizes]
    if readable:  # before the first image is decoded or written
        check_prediction_memory(network_cost(model), readable, full_sizes, settings, len(indexing.lut),
                                runtime.device)
    dataset = PredictImages([image.path for image in readable], orientations, sizes,
                            keep_full=settings.overlay or settings.crf is not None)
    batches = size_batches(sizes, [w * h for w, h in full_sizes], settings.batch_size)
    loader = DataLoader(dataset, batch_sampler=batches,
                        num_workers=usable_workers(settings.num_workers, runtime.device), collate_fn=list)
    weight, bias = entry["weight"].to(runtime.device), entry.get("bias")
    model.eval()
    for items in runtime.bar(loader, "predict", total=len(batches)):
        good = [item for item in items if item[3] is None]
        for index, _, _, reason in items:
            if reason is not None:
                report.skipped.append({"input": str(readable[index].path), "reason": reason})
        if not good:
            continue
        maps = cluster_maps(model, torch.stack([item[1] for item in good]), weight, bias,
                            [full_sizes[item[0]] for item in good], [item[2] for item in good], runtime, settings)
        for (index, _, full, _), clusters in zip(good, maps, strict=True):
            image = readable[index]
            indices = indexing.lut[clusters.numpy()]
            files = output_files(image, out_dir, settings.overlay)
            # Each file whole or not at all, and decoded again (utils/files.py): a full disk stops the
            # run with one line naming the file, never with a truncated map or overlay.
            save_image(Image.fromarray(indices.astype(indexing.dtype)), files[0], hint=WRITE_HINT)
            if settings.overlay:
                save_image(Image.fromarray(overlay(full, indices, indexing, settings.overlay_alpha)), files[1],
                           hint=WRITE_HINT, quality=90)
            report.written.append({"input": str(image.path), "map": files[0].relative_to(out_dir).as_posix(),
                                   "overlay": files[1].relative_to(out_dir).as_posix() if settings.overlay else None,
                                   "size": list(full_sizes[index]), "network_size": list(sizes[index])})
    if not report.written:
        first = report.skipped[0]
        raise PredictError(f"none of the {len(report.skipped)} input file(s) could be read as an image (first: "
                           f"{first['input']}: {first['reason']}); pass image files")
    report.seconds = time.perf_counter() - started
    draw_legend(indexing, out_dir / "legend.png")
    write_json(out_dir / "predict.json", _summary(report, indexing, settings, ckpt, classifier, checkpoint_path))
    return report


def _summary(report: PredictReport, indexing: Indexing, settings: PredictSettings, ckpt: dict, classifier: str,
             checkpoint_path: str) -> dict:
    """predict.json: what the indices mean, how they were made, and what was written and skipped."""
    return {
        "checkpoint": checkpoint_path, "checkpoint_format": ckpt.get("format"), "epoch": ckpt.get("epoch"),
        "classifier": classifier, "n_clusters": int(len(indexing.lut)),
        "index": indexing.kind, "unmatched_index": indexing.unmatched, "matching": indexing.matching,
        "cluster_to_class": indexing.cluster_to_class,
        "names": indexing.names,
        "colours": ["#" + "".join(f"{round(255 * v):02x}" for v in c) for c in indexing.colours],
        "settings": {**{k: v for k, v in asdict(settings).items() if k != "crf"},
                     "crf": asdict(settings.crf) if settings.crf is not None else None},
        "n_written": len(report.written), "n_skipped": len(report.skipped), "n_ignored_files": report.ignored_files,
        "seconds": round(report.seconds, 3),
        "seconds_per_image": round(report.seconds / len(report.written), 4) if report.written else None,
        "images": report.written, "skipped": report.skipped,
    }


def describe(report: PredictReport, out_dir: Path) -> list[str]:
    """The closing lines: what was written, and every skipped file with its reason."""
    lines = [f"wrote {len(report.written)} map(s) to {out_dir} in {report.seconds:.1f} s "
             f"(legend.png, predict.json)"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} unreadable file(s): " +
                     "; ".join(f"{s['input']} ({s['reason']})" for s in report.skipped))
    return lines
