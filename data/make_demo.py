"""Generate the built-in synthetic demo dataset in the COCO-Stuff layout.

The demo exists so that the whole PiCIE pipeline (data loading, clustering, training, Hungarian evaluation) can
be run end to end in minutes without downloading COCO, and so that a short run can *show something*: a trained
network should beat an untrained one. For that the data must make the clustering problem non-trivial in the
same ways real images do:

* every image is a composition of 3-6 regions (warped Voronoi cells, horizontal bands with wobbly horizons,
  blobs with wobbly outlines), each region one class;
* every class has a colour distribution *and* a texture (stripes, checkers, dots, bricks, waves, grain, ...)
  with a class-specific orientation and scale; classes come in colour groups (blue, grey, brown, red, green)
  whose members have nearly the same mean colour, so colour alone cannot separate them and texture must;
* every image gets its own colour cast, brightness, contrast, saturation and illumination ramp (so raw colour
  shifts between images: photometric invariance matters) and its own texture scale in [0.6, 1.6] (so the
  features must tolerate scale, as PiCIE's random-crop equivariance asks);
* labels carry thin bands of 255 (unlabeled) along some region boundaries, like real stuffthingmaps.

Layout written under ``root`` (exactly what the toolkit's COCO-Stuff reader expects)::

    images/{train2017,val2017}/<12-digit id>.jpg
    annotations/{train2017,val2017}/<id>.png        uint8 fine ids (0..181), 255 = unlabeled
    curated/{train2017,val2017}/Coco164kFull_Stuff_Coarse_7.txt
    README.txt                                      what this is + a machine-readable stamp line

No ``fine_to_coarse_dict.pickle`` is written: the toolkit falls back to its built-in 182 -> 27 table, and every
fine id used here is a real COCO-Stuff stuff id whose coarse class is one of the 15 stuff classes (12..26).

Every image is drawn from its own ``numpy.random.Generator`` seeded by (seed, split, index), so an image does
not depend on how many images are generated, and the output is byte-identical for the same seed on the same
platform and library versions (JPEG bytes depend on the libjpeg build).

Usage::

    python -m data.make_demo --root datasets/demo --n_train 160 --n_val 40 --seed 0
    python data/make_demo.py --root datasets/demo
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Running as ``python data/make_demo.py`` puts data/ (not the repo root) on sys.path; insert the repo root so
# the module behaves the same way as ``python -m data.make_demo`` if it ever imports toolkit modules.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image
from scipy import ndimage

# Bumped whenever the generator's output changes, so a stale demo on disk is not mistaken for a current one.
GENERATOR_VERSION = 1

SPLITS = ("train2017", "val2017")
CURATED_NAME = "Coco164kFull_Stuff_Coarse_7.txt"
IGNORE_INDEX = 255
JPEG_QUALITY = 90

# The stamp line identifies a folder written by this module; its JSON payload records the parameters.
_STAMP_PREFIX = "stamp: "
_STAMP_KIND = "picie-demo"
# Present while a generation is running; a folder holding it was left half-written by this module and may be
# regenerated without asking (it contains nothing but our own output).
_INCOMPLETE_MARKER = ".make_demo_incomplete"

# One real COCO-Stuff fine id per stuff coarse class, keyed by coarse class (12..26). Fine ids are the values
# stored in the stuffthingmaps PNGs (0-based: cocostuff_labels.txt id minus 1); every entry was checked against
# the original fine_to_coarse_dict.pickle ('fine_index_to_coarse_index' maps the fine id to the key below).
DEMO_FINE_IDS = {
    12: (101, "ceiling-other"),
    13: (117, "floor-wood"),
    14: (121, "fruit"),
    15: (97, "cabinet"),
    16: (131, "metal"),
    17: (108, "curtain"),
    18: (170, "wall-brick"),
    19: (180, "window-other"),
    20: (95, "building-other"),
    21: (153, "sand"),
    22: (123, "grass"),
    23: (156, "sky-other"),
    24: (149, "rock"),
    25: (112, "fence"),
    26: (154, "sea"),
}

# Ids of the two splits live in disjoint ranges so a train id can never collide with a val id.
_ID_BASE = {"train2017": 1, "val2017": 500_000}
_SPLIT_CODE = {"train2017": 0, "val2017": 1}


@dataclass(frozen=True)
class _ClassStyle:
    """How one class is painted.

    Pixel colour = mean + (t - 0.5) * amp * tint + noise * per-pixel noise, where t in [0, 1] is the texture.
    ``period`` (pixels at texture scale 1) and ``angle`` (degrees) make the texture class-specific; ``height``
    is the class's preferred vertical position (0 top, 1 bottom) used to order horizontal bands.
    """

    coarse: int
    mean: tuple
    amp: float
    tint: tuple
    noise: float
    texture: str
    period: float
    angle: float
    height: float


# Colour groups are deliberate: within a group the mean colours are close (and the per-image colour cast is
# larger than the differences), so a clustering of raw colour merges them; the textures differ.
_STYLES = (
    # blue group: sky / sea / window
    _ClassStyle(23, (115, 150, 200), 60, (1.0, 1.0, 1.0), 2, "smooth", 40, 0, 0.0),
    _ClassStyle(26, (95, 135, 175), 75, (0.8, 1.0, 1.0), 5, "waves", 14, 0, 0.8),
    _ClassStyle(19, (110, 140, 175), 110, (1.0, 1.0, 1.0), 3, "panes", 44, 0, 0.35),
    # grey group: ceiling / building / rock / metal
    _ClassStyle(12, (160, 158, 152), 75, (1.0, 1.0, 1.0), 3, "dots", 11, 0, 0.05),
    _ClassStyle(20, (140, 136, 130), 110, (1.0, 1.0, 1.0), 5, "facade", 22, 0, 0.3),
    _ClassStyle(24, (128, 125, 120), 110, (1.0, 1.0, 1.0), 9, "fractal", 40, 0, 0.6),
    _ClassStyle(16, (145, 150, 158), 65, (1.0, 1.0, 1.0), 3, "brushed", 5, 30, 0.5),
    # brown group: floor wood / cabinet / sand
    _ClassStyle(13, (150, 105, 65), 75, (1.0, 0.8, 0.6), 4, "wood", 8, 0, 0.9),
    _ClassStyle(15, (140, 100, 70), 90, (1.0, 0.9, 0.8), 3, "panels", 60, 0, 0.5),
    _ClassStyle(21, (170, 140, 95), 45, (1.0, 1.0, 1.0), 22, "ripples", 22, -20, 0.85),
    # red group: brick wall / curtain / fruit
    _ClassStyle(18, (160, 80, 60), 100, (0.7, 1.1, 1.2), 5, "brick", 13, 0, 0.4),
    _ClassStyle(17, (165, 65, 70), 110, (1.0, 1.0, 1.0), 2, "folds", 30, 0, 0.4),
    _ClassStyle(14, (180, 85, 50), 120, (1.0, 0.9, 0.5), 4, "fruit", 28, 0, 0.6),
    # green group: grass / fence
    _ClassStyle(22, (85, 130, 55), 85, (0.8, 1.0, 0.6), 12, "streaks", 10, 0, 0.8),
    _ClassStyle(25, (95, 125, 80), 110, (1.0, 0.9, 1.1), 4, "chainlink", 18, 0, 0.55),
)
_STYLE_BY_COARSE = {s.coarse: s for s in _STYLES}
assert sorted(_STYLE_BY_COARSE) == sorted(DEMO_FINE_IDS), "every demo class needs exactly one style"
# Order used when an image's classes are drawn; index i <-> _CLASS_ORDER[i] coarse class.
_CLASS_ORDER = tuple(sorted(DEMO_FINE_IDS))


# ----------------------------------------------------------------------------------------------------------
# Noise and texture primitives (all vectorised over whole arrays)
# ----------------------------------------------------------------------------------------------------------

def _interp_weights(rng, n, cell):
    """Return an (n, g) matrix that interpolates g lattice values onto n pixels with smoothstep weights.

    Smoothstep (3f^2 - 2f^3) instead of linear weights removes the visible creases of linear value noise.
    The lattice gets a random phase so it never lines up with the region's bounding box.
    """
    cell = max(float(cell), 1.0)
    u = (np.arange(n, dtype=np.float64) + rng.uniform(0.0, cell)) / cell
    i = np.floor(u).astype(np.int64)
    f = u - i
    s = f * f * (3.0 - 2.0 * f)
    m = np.zeros((n, int(i.max()) + 2), dtype=np.float32)
    rows = np.arange(n)
    m[rows, i] = 1.0 - s
    m[rows, i + 1] = s
    return m


def _value_noise(rng, shape, cell_y, cell_x=None):
    """Smooth random field of roughly unit scale with feature size ``cell_y`` x ``cell_x`` pixels.

    Separable interpolation (Wy @ G @ Wx^T) costs two small matrix products instead of a per-pixel lookup.
    """
    if cell_x is None:
        cell_x = cell_y
    wy = _interp_weights(rng, shape[0], cell_y)
    wx = _interp_weights(rng, shape[1], cell_x)
    grid = rng.standard_normal((wy.shape[1], wx.shape[1])).astype(np.float32)
    # 1.5 roughly undoes the variance lost by interpolating between independent lattice values.
    return 1.5 * (wy @ grid @ wx.T)


def _frac(x):
    """Fractional part, always in [0, 1) (unlike np.modf for negative inputs)."""
    return x - np.floor(x)


def _smoothstep(edge0, edge1, x):
    """Hermite step from 0 at edge0 to 1 at edge1; used to anti-alias shape edges inside textures."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _cell_table(rng, ids_a, ids_b, size=64):
    """Per-cell random value for lattice textures (lit windows, brick shades): a random table indexed by cell."""
    table = rng.uniform(0.0, 1.0, (size, size)).astype(np.float32)
    return table[np.mod(ids_a, size).astype(np.int64), np.mod(ids_b, size).astype(np.int64)]


# Each texture takes rotated coordinates u (along the texture's x axis), v (along its y axis), the period in
# pixels and the region's generator, and returns t in about [0, 1] with u's shape.

def _tex_smooth(u, v, p, rng):
    """Sky: very low frequency clouds on a vertical gradient, nearly no texture."""
    ramp = (v - v.min()) / (np.ptp(v) + 1.0)
    return 0.5 + 0.15 * _value_noise(rng, u.shape, 6 * p) + 0.3 * (ramp - 0.5)


def _tex_waves(u, v, p, rng):
    """Sea: horizontal wave crests, laterally undulating, with a little glitter."""
    crest = np.sin(2 * np.pi * (v + 0.35 * p * np.sin(2 * np.pi * u / (4 * p))) / p)
    return 0.5 + 0.4 * crest + 0.08 * _value_noise(rng, u.shape, p / 2)


def _tex_panes(u, v, p, rng):
    """Window: dark frames around large panes with diagonal reflections."""
    fu, fv = _frac(u / p), _frac(v / (1.3 * p))
    frame = (fu < 0.1) | (fv < 0.08)
    pane = 0.55 + 0.4 * _frac((u + v) / (3 * p))
    return np.where(frame, 0.0, pane)


def _tex_dots(u, v, p, rng):
    """Ceiling: acoustic tile, a square lattice of small dark holes on a light, slightly shaded surface."""
    du, dv = _frac(u / p) - 0.5, _frac(v / p) - 0.5
    r = np.sqrt(du * du + dv * dv)
    return 0.15 + 0.75 * _smoothstep(0.17, 0.27, r) + 0.06 * _value_noise(rng, u.shape, 8 * p)


def _tex_facade(u, v, p, rng):
    """Building: a facade with a lattice of windows, each window randomly lit."""
    px, py = p, 1.4 * p
    fu, fv = _frac(u / px), _frac(v / py)
    window = (fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8)
    lit = 0.35 * _cell_table(rng, np.floor(u / px), np.floor(v / py))
    facade = 0.78 + 0.06 * _value_noise(rng, u.shape, p)
    return np.where(window, lit, facade)


def _tex_fractal(u, v, p, rng):
    """Rock: three octaves of value noise (blotchy at several scales)."""
    n = (_value_noise(rng, u.shape, p) + 0.5 * _value_noise(rng, u.shape, p / 2)
         + 0.25 * _value_noise(rng, u.shape, p / 4))
    return 0.5 + 0.22 * n


def _tex_brushed(u, v, p, rng):
    """Metal: fine oblique brushing lines plus a broad sheen."""
    lines = np.sin(2 * np.pi * v / p + 1.5 * _value_noise(rng, u.shape, 6 * p))
    return 0.5 + 0.3 * lines + 0.12 * _value_noise(rng, u.shape, 10 * p)


def _tex_wood(u, v, p, rng):
    """Floor wood: wavy horizontal grain on planks, with dark seams between planks and at plank ends."""
    grain = np.sin(2 * np.pi * (v + 1.2 * p * _value_noise(rng, u.shape, 5 * p)) / p)
    plank_h = 5 * p
    row = np.floor(v / plank_h)
    # Plank ends sit at a random offset per row, as in a real floor.
    end = _frac((u + 1000.0 * _cell_table(rng, row, row)) / (25 * p)) < 0.012
    seam = (_frac(v / plank_h) < 0.05) | end
    return np.where(seam, 0.0, 0.55 + 0.3 * grain)


def _tex_panels(u, v, p, rng):
    """Cabinet: large alternating panels with dark grooves and a bright bevel."""
    pu, pv = p, 1.5 * p
    fu, fv = _frac(u / pu), _frac(v / pv)
    checker = np.mod(np.floor(u / pu) + np.floor(v / pv), 2)
    groove = (fu < 0.05) | (fv < 0.035)
    bevel = ((fu >= 0.05) & (fu < 0.09)) | ((fv >= 0.035) & (fv < 0.06))
    t = 0.35 + 0.3 * checker
    t = np.where(bevel, 0.95, t)
    return np.where(groove, 0.0, t)


def _tex_ripples(u, v, p, rng):
    """Sand: faint oblique ripples; the class's strong per-pixel noise makes the grain."""
    return 0.5 + 0.3 * np.sin(2 * np.pi * (v + 0.5 * p * _value_noise(rng, u.shape, 3 * p)) / p)


def _tex_brick(u, v, p, rng):
    """Brick wall: running bond (every other row offset by half a brick), light mortar, per-brick shade."""
    bw, bh = 2.4 * p, p
    row = np.floor(v / bh)
    uo = u + np.mod(row, 2) * 0.5 * bw
    col = np.floor(uo / bw)
    mortar = (_frac(uo / bw) * bw < 0.14 * p) | (_frac(v / bh) < 0.14)
    shade = _cell_table(rng, row, col)
    return np.where(mortar, 1.0, 0.15 + 0.3 * shade)


def _tex_folds(u, v, p, rng):
    """Curtain: soft vertical folds, slightly meandering."""
    folds = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * p * _value_noise(rng, u.shape, 3 * p)) / p)
    return folds ** 1.3


def _tex_fruit(u, v, p, rng):
    """Fruit: a hexagonal pile of shaded spheres on a dark background."""
    rh = 0.866 * p
    row = np.floor(v / rh)
    uo = u + np.mod(row, 2) * 0.5 * p
    du = _frac(uo / p) - 0.5
    dv = (_frac(v / rh) - 0.5) * 0.866
    # The highlight is offset up-left so the spheres look lit, not flat discs.
    r = np.sqrt(du * du + dv * dv)
    rl = np.sqrt((du + 0.12) ** 2 + (dv + 0.12) ** 2)
    inside = _smoothstep(0.44, 0.40, r)
    shade = 0.3 + 0.7 * np.clip(1.0 - rl / 0.5, 0.0, 1.0)
    return 0.05 + inside * (shade - 0.05)


def _tex_streaks(u, v, p, rng):
    """Grass: thin vertical blades (noise stretched vertically) over a patchy base."""
    blades = _value_noise(rng, u.shape, 2.5 * p, 0.35 * p)
    return 0.5 + 0.3 * blades + 0.12 * _value_noise(rng, u.shape, 4 * p)


def _tex_chainlink(u, v, p, rng):
    """Fence: a diamond chain-link mesh of bright wires over a darker background."""
    a, b = _frac((u + v) / p), _frac((u - v) / p)
    lw = 0.07
    wire = (np.abs(a - 0.5) > 0.5 - lw) | (np.abs(b - 0.5) > 0.5 - lw)
    return np.where(wire, 1.0, 0.25 + 0.08 * _value_noise(rng, u.shape, 3 * p))


_TEXTURES = {
    "smooth": _tex_smooth,
    "waves": _tex_waves,
    "panes": _tex_panes,
    "dots": _tex_dots,
    "facade": _tex_facade,
    "fractal": _tex_fractal,
    "brushed": _tex_brushed,
    "wood": _tex_wood,
    "panels": _tex_panels,
    "ripples": _tex_ripples,
    "brick": _tex_brick,
    "folds": _tex_folds,
    "fruit": _tex_fruit,
    "streaks": _tex_streaks,
    "chainlink": _tex_chainlink,
}
assert {s.texture for s in _STYLES} <= set(_TEXTURES)


# ----------------------------------------------------------------------------------------------------------
# Layouts: a region-index map (h, w) with values 0..k-1
# ----------------------------------------------------------------------------------------------------------

def _warped_grid(rng, h, w):
    """Pixel coordinates displaced by smooth noise, so that straight/convex region borders become wobbly.

    Returns (warped y, warped x, margin) where margin bounds the displacement in pixels.
    """
    short = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # A coarse octave bends borders, a fine one makes them ragged like real object outlines.
    amp1, amp2 = rng.uniform(0.02, 0.05) * short, rng.uniform(0.004, 0.012) * short
    dy = amp1 * _value_noise(rng, (h, w), 0.25 * short) + amp2 * _value_noise(rng, (h, w), 0.04 * short)
    dx = amp1 * _value_noise(rng, (h, w), 0.25 * short) + amp2 * _value_noise(rng, (h, w), 0.04 * short)
    # The largest displacement bounds how far a warped shape can reach outside its unwarped extent.
    margin = float(max(np.abs(dy).max(), np.abs(dx).max())) + 2.0
    return yy + dy, xx + dx, margin


def _voronoi(rng, yw, xw, n, h, w):
    """Additively weighted Voronoi cells on the warped grid (weights give cells of unequal size)."""
    short = min(h, w)
    sy = rng.uniform(0.05, 0.95, n) * h
    sx = rng.uniform(0.05, 0.95, n) * w
    bonus = rng.uniform(0.0, (0.2 * short) ** 2, n)
    d = np.stack([(yw - sy[i]) ** 2 + (xw - sx[i]) ** 2 - bonus[i] for i in range(n)])
    return np.argmin(d, axis=0).astype(np.uint8)


def _bands(rng, yw, xw, n, h, w):
    """n horizontal bands (region 0 on top) with a tilted, wobbly horizon between each pair."""
    fractions = rng.dirichlet(np.full(n, 3.0)) * (1.0 - 0.1 * n) + 0.1  # every band >= 10% of the height
    bounds = np.cumsum(fractions)[:-1] * h
    tilt = np.tan(np.deg2rad(rng.uniform(-6.0, 6.0)))
    yt = yw + tilt * (xw - w / 2.0)
    reg = np.zeros((h, w), dtype=np.uint8)
    for b in bounds:
        reg += (yt > b).astype(np.uint8)
    return reg


def _paint_blob(rng, reg, yw, xw, margin, index, h, w):
    """Overwrite reg with ``index`` inside a rotated ellipse whose radius wobbles with the polar angle."""
    short = min(h, w)
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    r0 = rng.uniform(0.12, 0.28) * short
    aspect = rng.uniform(0.6, 1.6)
    rot = rng.uniform(0.0, np.pi)
    amps = rng.uniform(0.0, 0.12, 4)
    phases = rng.uniform(0.0, 2 * np.pi, 4)
    # Only the blob's bounding box (its largest radius plus the warp margin) can be inside, so the polar
    # maths runs on that window instead of the whole image (this was the slowest step).
    reach = r0 * (1.0 + amps.sum()) * max(1.0, 1.0 / aspect) + margin
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, h)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, w)
    dy, dx = yw[y0:y1, x0:x1] - cy, xw[y0:y1, x0:x1] - cx
    a = dx * np.cos(rot) + dy * np.sin(rot)
    b = (-dx * np.sin(rot) + dy * np.cos(rot)) * aspect
    theta = np.arctan2(b, a)
    radius = np.ones_like(theta)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=2):
        radius += amp * np.sin(k * theta + phase)
    inside = a * a + b * b < (r0 * radius) ** 2
    reg[y0:y1, x0:x1][inside] = index


def _make_layout(rng, h, w, n_regions):
    """Return (region map, list of layout kinds per region, kind name) with n_regions regions.

    Region roles matter for class assignment: bands are ordered top to bottom, so they get classes sorted by
    their vertical prior (sky on top, floor at the bottom) like real photos; cells and blobs get random ones.
    """
    yw, xw, margin = _warped_grid(rng, h, w)
    kind = rng.choice(["voronoi", "bands", "blobs"], p=[0.4, 0.3, 0.3])
    if kind == "voronoi":
        return _voronoi(rng, yw, xw, n_regions, h, w), n_regions * ["cell"], kind
    if kind == "bands":
        n_bands = int(rng.integers(3, min(5, n_regions) + 1))
        reg = _bands(rng, yw, xw, n_bands, h, w)
        roles = n_bands * ["band"]
    else:
        n_bands = int(rng.integers(1, 3))
        reg = _voronoi(rng, yw, xw, n_bands, h, w)
        roles = n_bands * ["cell"]
    for index in range(n_bands, n_regions):
        _paint_blob(rng, reg, yw, xw, margin, index, h, w)
        roles.append("blob")
    return reg, roles, kind


def _ignore_mask(rng, reg, n_regions):
    """Thin bands along a random subset of the borders between regions, as in real hand annotations."""
    h, w = reg.shape
    mask = np.zeros((h, w), dtype=bool)
    if rng.uniform() > 0.75:  # some images are annotated right up to the borders
        return mask
    selected = rng.uniform(size=(n_regions, n_regions)) < 0.6
    selected = selected | selected.T
    a, b = reg[:, :-1], reg[:, 1:]
    hit = (a != b) & selected[a, b]
    mask[:, :-1] |= hit
    mask[:, 1:] |= hit
    a, b = reg[:-1, :], reg[1:, :]
    hit = (a != b) & selected[a, b]
    mask[:-1, :] |= hit
    mask[1:, :] |= hit
    grow = int(rng.integers(0, 3))  # band width 2..6 px
    if grow and mask.any():
        mask = ndimage.binary_dilation(mask, iterations=grow)
    return mask


# ----------------------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------------------

def _image_size(rng):
    """(h, w) with shorter side 240..400 px, aspect ratio 1.0..1.6, landscape or portrait."""
    short = int(rng.integers(240, 401))
    long = int(round(short * rng.uniform(1.0, 1.6)))
    return (short, long) if rng.uniform() < 0.6 else (long, short)


def _paint_region(rng, style, box, scale):
    """Colour (float RGB, box shape) of one region in its bounding box, with per-region jitter."""
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # Orientation, period and colour vary a little per region so instances of a class are not copies,
    # but stay well inside the class's own range so the texture still identifies the class.
    angle = np.deg2rad(style.angle + rng.uniform(-8.0, 8.0))
    period = style.period * scale * rng.uniform(0.88, 1.12)
    ca, sa = np.cos(angle), np.sin(angle)
    u = xx * ca + yy * sa + rng.uniform(0.0, 1000.0)
    v = -xx * sa + yy * ca + rng.uniform(0.0, 1000.0)
    t = np.clip(_TEXTURES[style.texture](u, v, period, rng), 0.0, 1.0).astype(np.float32)
    mean = np.asarray(style.mean, dtype=np.float32) + rng.normal(0.0, 7.0, 3).astype(np.float32)
    tint = np.asarray(style.tint, dtype=np.float32)
    return mean + (t[..., None] - 0.5) * (style.amp * tint)


def _photometric(rng, img):
    """Per-image colour cast, saturation, contrast, brightness and illumination ramp (float HxWx3)."""
    h, w, _ = img.shape
    grey = img.mean(axis=2, keepdims=True)
    img = grey + rng.uniform(0.6, 1.3) * (img - grey)  # saturation
    img = img * rng.uniform(0.8, 1.2, 3).astype(np.float32)  # colour cast (white balance)
    centre = img.mean()
    img = centre + rng.uniform(0.7, 1.3) * (img - centre) + rng.uniform(-30.0, 30.0)  # contrast, brightness
    # Uneven lighting: a linear ramp in a random direction, up to +-17% across the image.
    direction = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * np.cos(direction) + (yy - h / 2) * np.sin(direction)) / np.hypot(h, w)
    return img * (1.0 + rng.uniform(0.0, 0.35) * ramp)[..., None]


def _render_image(rng, must_have):
    """Draw one (RGB uint8 image, uint8 fine-id label map) pair containing class ``must_have``."""
    h, w = _image_size(rng)
    scale = rng.uniform(0.6, 1.6)
    n_regions = int(rng.integers(3, 7))
    others = [c for c in _CLASS_ORDER if c != must_have]
    classes = [must_have] + list(rng.choice(others, n_regions - 1, replace=False))
    classes = [int(c) for c in rng.permutation(classes)]
    for _attempt in range(30):
        reg, roles, _kind = _make_layout(rng, h, w, n_regions)
        band_ids = [i for i, r in enumerate(roles) if r == "band"]
        if band_ids:
            # Sort the band classes by vertical prior (with noise, so orderings vary) and place them top-down.
            band_classes = classes[:len(band_ids)]
            keys = [_STYLE_BY_COARSE[c].height + rng.normal(0.0, 0.2) for c in band_classes]
            classes[:len(band_ids)] = [band_classes[i] for i in np.argsort(keys)]
        ignore = _ignore_mask(rng, reg, n_regions)
        counts = np.bincount(reg[~ignore], minlength=n_regions)
        # Reject layouts where a region vanished or became a sliver: every region keeps >= 1.5% of the image,
        # so each image really has n_regions >= 3 regions and the must-have class is really present.
        if counts.min() >= 0.015 * h * w:
            break
    img = np.empty((h, w, 3), dtype=np.float32)
    # Regions are painted only inside their bounding boxes (find_objects gets all boxes in one pass).
    for index, (coarse, sl) in enumerate(zip(classes, ndimage.find_objects(reg.astype(np.int32) + 1))):
        if sl is None:
            continue
        box = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
        colour = _paint_region(rng, _STYLE_BY_COARSE[coarse], box, scale)
        sub = reg[box[0]:box[1], box[2]:box[3]] == index
        img[box[0]:box[1], box[2]:box[3]][sub] = colour[sub]
    # Per-pixel noise with a class-specific strength; mostly luminance, a bit of chroma, like sensor noise.
    noise_std = np.array([_STYLE_BY_COARSE[c].noise for c in classes], dtype=np.float32)[reg]
    base = rng.standard_normal((h, w, 3), dtype=np.float32)
    img += (0.85 * base[..., :1] + 0.35 * base) * noise_std[..., None]
    img = _photometric(rng, img)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    fine = np.array([DEMO_FINE_IDS[c][0] for c in classes], dtype=np.uint8)[reg]
    fine[ignore] = IGNORE_INDEX
    return img, fine


# ----------------------------------------------------------------------------------------------------------
# Dataset on disk
# ----------------------------------------------------------------------------------------------------------

def _split_ids(split, n):
    """The 12-digit ids of a split, in sorted order."""
    return [f"{_ID_BASE[split] + i:012d}" for i in range(n)]


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
    for split, n in zip(SPLITS, (n_train, n_val)):
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
    table = "\n".join(f"  coarse {c:2d} <- fine {f:3d} {name}" for c, (f, name) in sorted(DEMO_FINE_IDS.items()))
    text = (
        "PiCIE toolkit synthetic demo dataset (NOT real COCO data).\n"
        "Generated by data/make_demo.py in the COCO-Stuff layout: images/, annotations/ (stuffthingmaps, fine ids,\n"
        "255 = unlabeled), curated/ (Coco164kFull_Stuff_Coarse_7.txt image lists).\n"
        "Each image is 3-6 textured regions of 15 stuff classes; colour groups share mean colours so texture matters.\n"
        f"seed={stamp['seed']} n_train={stamp['n_train']} n_val={stamp['n_val']} "
        f"generator_version={stamp['version']}\n"
        f"classes:\n{table}\n"
        f"{_STAMP_PREFIX}{json.dumps(stamp, sort_keys=True)}\n"
    )
    (root / "README.txt").write_text(text, encoding="utf-8")


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

    # One fixed permutation of the classes per split; image i is guaranteed to contain class perm[i % 15], so
    # any 15 consecutive images of a split cover every class (small demos still contain all of them).
    for split, n in zip(SPLITS, (n_train, n_val)):
        img_dir = root / "images" / split
        ann_dir = root / "annotations" / split
        cur_dir = root / "curated" / split
        for d in (img_dir, ann_dir, cur_dir):
            d.mkdir(parents=True, exist_ok=True)
        code = _SPLIT_CODE[split]
        perm = np.random.default_rng([seed, code, 1_000_003]).permutation(len(_CLASS_ORDER))
        ids = _split_ids(split, n)
        for index, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, code, index])
            img, label = _render_image(rng, _CLASS_ORDER[perm[index % len(_CLASS_ORDER)]])
            Image.fromarray(img).save(img_dir / f"{image_id}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(label).save(ann_dir / f"{image_id}.png")  # 2-D uint8 -> mode 'L'
        (cur_dir / CURATED_NAME).write_text("".join(f"{i}\n" for i in ids))

    _write_readme(root, stamp)
    (root / _INCOMPLETE_MARKER).unlink()
    return root


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(
        description="Generate the synthetic PiCIE demo dataset (COCO-Stuff layout, 15 textured stuff classes).")
    parser.add_argument("--root", default="datasets/demo",
                        help="output folder (created if missing); default: datasets/demo")
    parser.add_argument("--n_train", type=int, default=160, help="number of train2017 images (default 160)")
    parser.add_argument("--n_val", type=int, default=40, help="number of val2017 images (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed gives identical files")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the demo files if --root already holds other content")
    parser.add_argument("--preset", choices=("demo", "tiny"), default=None,
                        help="the data of train_picie.py's --preset demo|tiny: its data_root and sizes")
    args = parser.parse_args(argv)
    if args.preset:
        from modules.config import DEMO_SETS, PRESETS  # noqa: PLC0415 - only for --preset
        args = argparse.Namespace(**dict(vars(args), root=PRESETS[args.preset]["data_root"],
                                         **DEMO_SETS[args.preset]))
    start = time.perf_counter()
    try:
        root = generate_demo(args.root, n_train=args.n_train, n_val=args.n_val, seed=args.seed,
                             overwrite=args.overwrite)
    except FileExistsError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"demo dataset ready at {root} ({args.n_train} train + {args.n_val} val images, seed {args.seed}) "
          f"in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
