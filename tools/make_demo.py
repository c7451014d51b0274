"""Generate the built-in synthetic demo dataset in the COCO-Stuff layout.

The demo exists so that the whole PiCIE pipeline (data loading, clustering, training, Hungarian evaluation) runs
end to end in minutes on a CPU without downloading COCO, and so that a short run from random initialisation
*shows what PiCIE teaches*. PiCIE trains features to be invariant to photometric transforms (colour,
brightness, contrast, saturation, hue, greyscale, blur) and equivariant to geometric ones (crop position and
scale, flips). The data are therefore built so that exactly those properties are needed (docs/demo_dataset.md
gives every rule and why, with the measurements):

* a class is defined only by a luminance pattern: horizontal stripes, vertical stripes, checkerboard, dots,
  flat, grain. No horizontal flip maps one class onto another, so flipping never changes a pixel's class;
* every region draws its nuisances independently of its class: hue (the whole colour wheel), saturation
  (chroma), brightness (luma), pattern contrast, pattern scale, a small angle and phase. Every pattern is
  normalised to zero mean over its region, so a region's mean colour is its drawn colour whatever its class:
  colour tells nothing about the class, and features that are not invariant to colour cluster by colour
  instead of by class;
* every image is 3-5 warped Voronoi regions (position and size of regions vary), each region one class.

Layout written under ``root`` (what the toolkit's COCO-Stuff reader expects; evaluate with ``--stuff``)::

    images/{train2017,val2017}/<12-digit id>.jpg
    annotations/{train2017,val2017}/<id>.png        uint8 fine ids, 255 = unlabeled (not used here)
    curated/{train2017,val2017}/Coco164kFull_Stuff_Coarse_7.txt
    README.txt                                      what this is + a machine-readable stamp line

Each demo class is stored as one real COCO-Stuff fine id whose stuff coarse class has a name that fits the
pattern (``DEMO_CLASSES``), so the toolkit's built-in 182 -> 27 table maps it to one of the 15 stuff classes and
evaluation prints meaningful names. Only 6 of the 15 stuff classes occur; the metrics skip classes with no
pixels (see docs/demo_dataset.md, "Evaluation over the six classes").

Every image is drawn from its own ``numpy.random.Generator`` seeded by (seed, split, index), so an image does
not depend on how many images are generated, and the output is byte-identical for the same seed on the same
platform and library versions (JPEG bytes depend on the libjpeg build).

Usage::

    python -m tools.make_demo --root datasets/demo --n_train 480 --n_val 40 --seed 0
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from config.from_args import demo_data_settings
from config.parsers import parse_demo_args
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import save_image, write_text

# Bumped whenever the generator's output changes, so a stale demo on disk is not mistaken for a current one.
GENERATOR_VERSION = 2

SPLITS = ("train2017", "val2017")
CURATED_NAME = "Coco164kFull_Stuff_Coarse_7.txt"
IGNORE_INDEX = 255
JPEG_QUALITY = 92
# Square images: the loaders centre-crop to a square, so a square image loses no region. 240 px is the smallest
# side; make_curated --min_size 240 then lists every demo image (docs/demo_dataset.md).
IMAGE_SIZE = 240

# The stamp line identifies a folder written by this module; its JSON payload records the parameters.
_STAMP_PREFIX = "stamp: "
_STAMP_KIND = "picie-demo"
# Present while a generation is running; a folder holding it was left half-written by this module and may be
# regenerated without asking (it contains nothing but our own output).
_INCOMPLETE_MARKER = ".make_demo_incomplete"


@dataclass(frozen=True)
class DemoClass:
    """One demo class: its pattern and the COCO-Stuff fine id (and names) it is stored as."""

    pattern: str      # key of _PATTERNS
    fine: int         # value written to the label PNG (a real COCO-Stuff fine id)
    fine_name: str
    coarse: int       # its coarse class under the built-in table (12..26, a stuff class)
    coarse_name: str  # the name evaluation prints


# The fine ids were picked so that the stuff class's name describes the pattern (blinds are horizontal
# stripes, curtain folds vertical ones, floor tiles a checkerboard, acoustic ceiling tiles dots, sky is flat,
# sand is grain); tests check them against the toolkit's table.
DEMO_CLASSES = (
    DemoClass("stripes_h", 179, "window-blind", 19, "window-stuff"),
    DemoClass("stripes_v", 108, "curtain", 17, "textile-stuff"),
    DemoClass("checker", 116, "floor-tile", 13, "floor-stuff"),
    DemoClass("dots", 102, "ceiling-tile", 12, "ceiling-stuff"),
    DemoClass("flat", 156, "sky-other", 23, "sky-stuff"),
    DemoClass("grain", 153, "sand", 21, "ground-stuff"),
)
N_CLASSES = len(DEMO_CLASSES)

# ----------------------------------------------------------------------------------------------------------
# Nuisance ranges, drawn per region independently of the class (docs/demo_dataset.md says why each).
# Colour is drawn as luma Y and chroma (Cb, Cr) (JPEG's full-range BT.601 YCbCr): the hue is the chroma's angle,
# the saturation its length. Drawing luma apart from hue keeps greyscale views free of the colour nuisance (in
# HSV a saturated blue is far darker than a saturated yellow of the same value), and keeps the brightness
# spread inside the brightness jitter's range.
# ----------------------------------------------------------------------------------------------------------
N_REGIONS = (3, 5)               # regions per image (inclusive)
HUE = (0.0, 1.0)                 # angle of the chroma, as a fraction of the full colour wheel
CHROMA = (0.10, 0.25)            # length of the (Cb, Cr) chroma vector
LUMA = (0.50, 0.65)              # mean luma of the region (ratio 1.3, inside brightness jitter 0.7-1.3)
PATTERN_STD = (0.10, 0.18)       # standard deviation of the luminance pattern (0..1 scale)
PERIOD = 24.0                    # pattern period in pixels at scale 1 (of the 240 px image)
SCALE = (0.7, 1.4)               # per-region pattern scale factor
ANGLE = 12.0                     # per-region rotation of the pattern in [-ANGLE, ANGLE] degrees
NOISE_STD = 0.012                # per-pixel sensor noise, every region alike

# Ids of the two splits live in disjoint ranges so a train id can never collide with a val id.
_ID_BASE = {"train2017": 1, "val2017": 500_000}
_SPLIT_CODE = {"train2017": 0, "val2017": 1}


# ----------------------------------------------------------------------------------------------------------
# Patterns. Each takes rotated coordinates u (across), v (down), the period p in pixels and the region's
# generator, and returns a float32 field with u's shape; _paint_region normalises it to zero mean, unit std.
# ----------------------------------------------------------------------------------------------------------

def _value_noise(rng, shape, cell):
    """Smooth random field with feature size ``cell`` pixels (bilinear interpolation of a random lattice)."""
    h, w = shape
    gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    y = (np.arange(h, dtype=np.float32) + rng.uniform(0.0, cell)) / cell
    x = (np.arange(w, dtype=np.float32) + rng.uniform(0.0, cell)) / cell
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    g00, g01 = grid[y0][:, x0], grid[y0][:, x0 + 1]
    g10, g11 = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return (1 - fy) * ((1 - fx) * g00 + fx * g01) + fy * ((1 - fx) * g10 + fx * g11)


def _stripes_h(u, v, p, rng):
    return np.sin(2 * np.pi * v / p)


def _stripes_v(u, v, p, rng):
    return np.sin(2 * np.pi * u / p)


def _checker(u, v, p, rng):
    # Squares of side p/2: a period of p in both directions, like the stripes.
    return np.sign(np.sin(2 * np.pi * u / p) * np.sin(2 * np.pi * v / p))


def _dots(u, v, p, rng):
    du = u / p - np.floor(u / p) - 0.5
    dv = v / p - np.floor(v / p) - 0.5
    r = np.sqrt(du * du + dv * dv)
    return (r < 0.25).astype(np.float32)


def _flat(u, v, p, rng):
    return np.zeros_like(u)


def _grain(u, v, p, rng):
    # Isotropic blotches about p/4 across: no orientation, no period.
    return _value_noise(rng, u.shape, p / 4)


_PATTERNS = {
    "stripes_h": _stripes_h,
    "stripes_v": _stripes_v,
    "checker": _checker,
    "dots": _dots,
    "flat": _flat,
    "grain": _grain,
}
assert [c.pattern for c in DEMO_CLASSES] == list(_PATTERNS)


# ----------------------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------------------

def region_rgb(nuisance):
    """The region's mean colour as float32 RGB (3,), from its luma, chroma length and hue angle."""
    y = nuisance["luma"]
    angle = 2 * np.pi * nuisance["hue"]
    cb, cr = nuisance["chroma"] * np.cos(angle), nuisance["chroma"] * np.sin(angle)
    return np.array([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dtype=np.float32)


def _layout(rng, size, n_regions):
    """Region-index map (size x size, values 0..n-1): Voronoi cells on a smoothly warped grid."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amp = rng.uniform(0.03, 0.06) * size
    yw = yy + amp * _value_noise(rng, (size, size), size / 4)
    xw = xx + amp * _value_noise(rng, (size, size), size / 4)
    sy = rng.uniform(0.1, 0.9, n_regions) * size
    sx = rng.uniform(0.1, 0.9, n_regions) * size
    d = np.stack([(yw - sy[i]) ** 2 + (xw - sx[i]) ** 2 for i in range(n_regions)])
    return np.argmin(d, axis=0).astype(np.uint8)


def draw_region_nuisances(rng):
    """The nuisances of one region, drawn from ``rng`` without knowing its class."""
    return {
        "hue": rng.uniform(*HUE),
        "chroma": rng.uniform(*CHROMA),
        "luma": rng.uniform(*LUMA),
        "pattern_std": rng.uniform(*PATTERN_STD),
        "scale": rng.uniform(*SCALE),
        "angle": rng.uniform(-ANGLE, ANGLE),
        "phase_u": rng.uniform(0.0, 1000.0),
        "phase_v": rng.uniform(0.0, 1000.0),
    }


def _paint_region(rng, demo_class, nuisance, inside):
    """Float RGB pixels (n x 3) of one region's appearance at the pixels where ``inside`` is True."""
    ys, xs = np.nonzero(inside)
    y0, x0 = ys.min(), xs.min()
    yy, xx = np.mgrid[y0:ys.max() + 1, x0:xs.max() + 1].astype(np.float32)  # the region's bounding box
    a = np.deg2rad(nuisance["angle"])
    u = xx * np.cos(a) + yy * np.sin(a) + nuisance["phase_u"]
    v = -xx * np.sin(a) + yy * np.cos(a) + nuisance["phase_v"]
    t = _PATTERNS[demo_class.pattern](u, v, PERIOD * nuisance["scale"], rng).astype(np.float32)
    t = t[ys - y0, xs - x0]
    # Zero mean and unit std over the region's own pixels: the region's mean colour is its drawn colour and its
    # pattern contrast the drawn pattern_std, whatever its class (only the flat class has no pattern).
    t = t - t.mean()
    std = float(t.std())
    if std > 1e-6:
        t = t / std
    return region_rgb(nuisance)[None, :] + (nuisance["pattern_std"] * t)[:, None]


def render_image(rng, must_have=None):
    """Draw one image: (uint8 RGB image, uint8 class-index map 0..N_CLASSES-1, list of region records).

    Region records hold the region's class index and its nuisances (for tests and documentation).
    ``must_have`` (a class index) is given to one region, so that a split covers every class.
    """
    size = IMAGE_SIZE
    n_regions = int(rng.integers(N_REGIONS[0], N_REGIONS[1] + 1))
    for _attempt in range(50):
        reg = _layout(rng, size, n_regions)
        # Every region keeps at least 3% of the image, so no region is a sliver and each image has n regions.
        if np.bincount(reg.ravel(), minlength=n_regions).min() >= 0.03 * size * size:
            break
    classes = rng.integers(0, N_CLASSES, n_regions)
    if must_have is not None:
        classes[int(rng.integers(0, n_regions))] = int(must_have)
    img = np.empty((size, size, 3), dtype=np.float32)
    regions = []
    for index in range(n_regions):
        nuisance = draw_region_nuisances(rng)
        demo_class = DEMO_CLASSES[int(classes[index])]
        inside = reg == index
        img[inside] = _paint_region(rng, demo_class, nuisance, inside)
        regions.append({"class": int(classes[index]), **nuisance})
    img += NOISE_STD * rng.standard_normal(img.shape, dtype=np.float32)
    img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    label = classes.astype(np.uint8)[reg]
    return img, label, regions


# ----------------------------------------------------------------------------------------------------------
# Dataset on disk
# ----------------------------------------------------------------------------------------------------------

def _split_ids(split, n):
    """The 12-digit ids of a split, in sorted order."""
    return [f"{_ID_BASE[split] + i:012d}" for i in range(n)]


def image_rng(seed, split, index):
    """The generator image ``index`` of ``split`` is drawn from (independent of how many are generated)."""
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])


def _stamp(n_train, n_val, seed):
    """The parameters that identify a generated demo (compared to decide whether to regenerate)."""
    return {"kind": _STAMP_KIND, "version": GENERATOR_VERSION, "n_train": int(n_train), "n_val": int(n_val),
            "seed": int(seed)}


def _read_stamp(root):
    """The stamp stored in root/README.txt, or None if there is no README or it was not written by us."""
    readme = root / "README.txt"
    if not readme.is_file():
        return None
    try:
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith(_STAMP_PREFIX):
                stamp = json.loads(line[len(_STAMP_PREFIX):])
                return stamp if isinstance(stamp, dict) and stamp.get("kind") == _STAMP_KIND else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None


def _is_complete(root, n_train, n_val):
    """True if every file of a demo with these sizes is present (cheap existence checks, no decoding)."""
    for split, n in zip(SPLITS, (n_train, n_val), strict=True):
        ids = _split_ids(split, n)
        curated = root / "curated" / split / CURATED_NAME
        if not curated.is_file() or curated.read_text().split() != ids:
            return False
        for i in ids:
            if not (root / "images" / split / f"{i}.jpg").is_file():
                return False
            if not (root / "annotations" / split / f"{i}.png").is_file():
                return False
    return True


def _write_readme(root, stamp):
    """README.txt: human-readable description plus the stamp line; written last, so it marks completion."""
    table = "\n".join(f"  {c.pattern:<9} -> fine {c.fine:3d} {c.fine_name:<13} -> coarse {c.coarse} {c.coarse_name}"
                      for c in DEMO_CLASSES)
    text = (
        "PiCIE toolkit synthetic demo dataset (NOT real COCO data).\n"
        "Generated by tools/make_demo.py in the COCO-Stuff layout: images/, annotations/ (stuffthingmaps, fine ids),\n"
        "curated/ (Coco164kFull_Stuff_Coarse_7.txt image lists). Evaluate with --stuff.\n"
        "Each image is 3-5 regions; a region's class is its luminance pattern, while its colour, brightness,\n"
        "pattern contrast, scale and angle are drawn independently of the class (docs/demo_dataset.md).\n"
        f"seed={stamp['seed']} n_train={stamp['n_train']} n_val={stamp['n_val']} "
        f"generator_version={stamp['version']}\n"
        f"classes (pattern -> label value -> evaluated class):\n{table}\n"
        f"{_STAMP_PREFIX}{json.dumps(stamp, sort_keys=True)}\n"
    )
    write_text(root / "README.txt", text)


def _clear_demo_paths(root):
    """Remove exactly the paths this module writes (and nothing else under root)."""
    for sub in ("images", "annotations", "curated"):
        for split in SPLITS:
            path = root / sub / split
            if path.exists():
                shutil.rmtree(path)
    for name in ("README.txt", _INCOMPLETE_MARKER):
        if (root / name).exists():
            (root / name).unlink()


def generate_demo(root, n_train=160, n_val=40, seed=0, overwrite=False):
    """Write the synthetic demo dataset under ``root`` and return ``root`` as a Path.

    If ``root`` already holds a complete demo with the same n_train, n_val, seed and generator version, nothing
    is written (the call is a cheap no-op). If ``root`` exists and holds anything else (another demo, a real
    dataset, unrelated files) a FileExistsError names the path, unless ``overwrite`` is True, in which case
    the demo paths (images/, annotations/ and curated/ split folders, README.txt) are removed and rewritten;
    other files under root are left alone. A folder left half-written by an interrupted run of this function
    is regenerated without needing ``overwrite``.
    """
    root = Path(root)
    n_train, n_val, seed = int(n_train), int(n_val), int(seed)
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train}, {n_val}")
    stamp = _stamp(n_train, n_val, seed)
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"demo root {root} exists and is not a directory")
        if _read_stamp(root) == stamp and not (root / _INCOMPLETE_MARKER).exists() \
                and _is_complete(root, n_train, n_val):
            return root
        ours_unfinished = (root / _INCOMPLETE_MARKER).exists()
        if any(root.iterdir()) and not (overwrite or ours_unfinished):
            old = _read_stamp(root)
            if old == stamp:
                what = "an incomplete copy of this demo (files were removed after generation)"
            elif old is not None:
                what = f"a demo generated with different parameters {old}"
            else:
                what = "content that is not a demo dataset written by this module"
            raise FileExistsError(
                f"demo root {root} already exists and holds {what}; requested {stamp}. "
                f"Choose another root or pass overwrite=True (CLI: --overwrite) to replace the demo files there.")
        _clear_demo_paths(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / _INCOMPLETE_MARKER).write_text("generation in progress or interrupted\n")

    fine_of_class = np.array([c.fine for c in DEMO_CLASSES], dtype=np.uint8)
    for split, n in zip(SPLITS, (n_train, n_val), strict=True):
        img_dir = root / "images" / split
        ann_dir = root / "annotations" / split
        cur_dir = root / "curated" / split
        for d in (img_dir, ann_dir, cur_dir):
            d.mkdir(parents=True, exist_ok=True)
        ids = _split_ids(split, n)
        for index, image_id in enumerate(ids):
            # Image i is guaranteed class i % N_CLASSES, so any N_CLASSES consecutive images cover every class.
            img, label, _regions = render_image(image_rng(seed, split, index), must_have=index % N_CLASSES)
            # Each file whole or not at all (utils/files.py): a full disk stops with one line naming it.
            save_image(Image.fromarray(img), img_dir / f"{image_id}.jpg", quality=JPEG_QUALITY)
            save_image(Image.fromarray(fine_of_class[label]), ann_dir / f"{image_id}.png")  # 2-D uint8 -> mode 'L'
        write_text(cur_dir / CURATED_NAME, "".join(f"{i}\n" for i in ids))

    _write_readme(root, stamp)
    (root / _INCOMPLETE_MARKER).unlink()
    return root


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        description="Generate the synthetic PiCIE demo dataset (COCO-Stuff layout, 6 pattern classes).")
    parser.add_argument("--root", default="datasets/demo",
                        help="output folder (created if missing); default: datasets/demo")
    parser.add_argument("--n_train", type=int, default=160, help="number of train2017 images (default 160)")
    parser.add_argument("--n_val", type=int, default=40, help="number of val2017 images (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed gives identical files")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the demo files if --root already holds other content")
    parser.add_argument("--preset", choices=("demo", "tiny"), default=None,
                        help="the data of train_picie.py's --preset demo|tiny: its data_root, sizes and seed "
                             "(flags given beside it win)")
    args = parse_demo_args(parser, argv)

    def generate() -> None:
        settings = demo_data_settings(args)
        start = time.perf_counter()
        try:
            root = generate_demo(settings.root, n_train=settings.n_train, n_val=settings.n_val, seed=settings.seed,
                                 overwrite=settings.overwrite)
        except FileExistsError as err:  # the one error generate_demo's other callers (tests) catch by type
            raise UserError(str(err)) from None
        print(f"demo dataset ready at {root} ({settings.n_train} train + {settings.n_val} val images, "
              f"seed {settings.seed}) in {time.perf_counter() - start:.1f}s")
    return run_cli(generate)  # bad input: one error line, exit 2


if __name__ == "__main__":
    sys.exit(main())
