"""Tests for tools/make_demo.py, the synthetic demo dataset generator (COCO-Stuff layout, 6 pattern classes)."""

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.cocostuff import build_cocostuff
from data.cocostuff_classes import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, STUFF_CLASSES
from helpers import curated_ids
from modules.metrics import confusion_histogram, segmentation_metrics
from tools.make_demo import (
    DEMO_CLASSES,
    IMAGE_SIZE,
    N_CLASSES,
    N_REGIONS,
    SPLITS,
    generate_demo,
    image_rng,
    main,
    render_image,
)

N_TRAIN, N_VAL = 6, 4


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """One small demo shared by the read-only tests."""
    return generate_demo(tmp_path_factory.mktemp("demo") / "demo", n_train=N_TRAIN, n_val=N_VAL, seed=0)


def _label(root, split, image_id):
    return np.asarray(Image.open(root / "annotations" / split / f"{image_id}.png"))


def test_class_table_matches_the_toolkit():
    """Each class is a distinct real fine id whose coarse class is the stuff class named in the table."""
    fines = [c.fine for c in DEMO_CLASSES]
    assert len(set(fines)) == N_CLASSES == 6
    assert len({c.coarse for c in DEMO_CLASSES}) == N_CLASSES, "two classes would merge in evaluation"
    for c in DEMO_CLASSES:
        assert FINE_NAMES[c.fine] == c.fine_name
        assert FINE_TO_COARSE[c.fine] == c.coarse and COARSE_NAMES[c.coarse] == c.coarse_name
        assert c.coarse in STUFF_CLASSES, "the demo is evaluated with --stuff"


def test_layout_complete_and_ids_match(demo_root):
    """Every split has sorted 12-digit ids, and images, annotations and curated lists agree exactly."""
    assert (demo_root / "README.txt").is_file()
    all_ids = []
    for split, n in zip(SPLITS, (N_TRAIN, N_VAL), strict=True):
        ids = curated_ids(demo_root, split)
        assert len(ids) == n and ids == sorted(ids)
        assert all(len(i) == 12 and i.isdigit() for i in ids)
        images = sorted(p.stem for p in (demo_root / "images" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (demo_root / "annotations" / split).glob("*.png"))
        assert images == ids and labels == ids
        all_ids += ids
    assert len(set(all_ids)) == len(all_ids), "train and val ids must not overlap"


def test_labels_and_sizes(demo_root):
    """Labels are mode-L PNGs of demo fine ids only, the image's size, with 3-5 regions per image."""
    allowed = {c.fine for c in DEMO_CLASSES}
    for split in SPLITS:
        for image_id in curated_ids(demo_root, split):
            image = Image.open(demo_root / "images" / split / f"{image_id}.jpg")
            label = Image.open(demo_root / "annotations" / split / f"{image_id}.png")
            assert image.format == "JPEG" and image.mode == "RGB"
            assert label.format == "PNG" and label.mode == "L"
            assert image.size == label.size == (IMAGE_SIZE, IMAGE_SIZE)
            assert set(np.unique(np.asarray(label)).tolist()) <= allowed


def test_toolkit_reads_it_as_six_stuff_classes(demo_root):
    """The COCO-Stuff reader (--stuff) maps the labels to exactly the six demo classes, with their names."""
    source = build_cocostuff(demo_root, stuff=True, thing=False)
    assert len(source.train_images) == N_TRAIN and len(source.val_images) == N_VAL
    seen = set()
    for path in source.val_labels:
        seen |= set(source.label_lut[np.asarray(Image.open(path))].ravel().tolist())
    expected = {source.class_names.index(c.coarse_name) for c in DEMO_CLASSES}
    assert seen == expected and -1 not in seen


def test_metrics_are_over_the_six_classes_only(demo_root):
    """Scored with K = 6 clusters, the absent stuff classes get no IoU and do not enter the mIoU: a perfect
    clustering (clusters permuted) scores 100, and merging two classes costs exactly those two classes' IoU."""
    source = build_cocostuff(demo_root, stuff=True, thing=False)
    labels = torch.from_numpy(np.concatenate(
        [source.label_lut[np.asarray(Image.open(p))].ravel() for p in source.val_labels]).astype(np.int64))
    present = sorted(set(labels.tolist()))
    cluster_of = {cls: k for k, cls in enumerate(reversed(present))}
    perfect = torch.tensor([cluster_of[int(c)] for c in labels.tolist()])
    result = segmentation_metrics(confusion_histogram(labels, perfect, source.n_classes, 6), source.class_names)
    assert result["mIoU"] == pytest.approx(100.0) and result["acc"] == pytest.approx(100.0)
    scored = [name for name, iou in result["per_class_iou"].items() if iou is not None]
    assert sorted(scored) == sorted(c.coarse_name for c in DEMO_CLASSES)
    merged = perfect.clone()
    merged[merged == 1] = 0  # two classes in one cluster; cluster 1 left empty
    result = segmentation_metrics(confusion_histogram(labels, merged, source.n_classes, 6), source.class_names)
    ious = [v for v in result["per_class_iou"].values() if v is not None]
    assert len(ious) == 6 and result["mIoU"] == pytest.approx(np.mean(ious))


def test_determinism_and_independence_of_count(tmp_path):
    """Same seed gives identical bytes; another seed differs; an image does not depend on how many are made."""
    rel_label = Path("annotations") / "train2017" / "000000000002.png"
    rel_image = Path("images") / "train2017" / "000000000002.jpg"
    a = generate_demo(tmp_path / "a", n_train=2, n_val=0, seed=3)
    b = generate_demo(tmp_path / "b", n_train=2, n_val=0, seed=3)
    c = generate_demo(tmp_path / "c", n_train=2, n_val=0, seed=4)
    d = generate_demo(tmp_path / "d", n_train=3, n_val=1, seed=3)
    for rel in (rel_label, rel_image):
        assert (a / rel).read_bytes() == (b / rel).read_bytes() == (d / rel).read_bytes()
        assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_second_call_is_noop(tmp_path):
    """Regenerating with the same parameters leaves the files untouched."""
    root = generate_demo(tmp_path / "demo", n_train=2, n_val=1, seed=0)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert generate_demo(tmp_path / "demo", n_train=2, n_val=1, seed=0) == root
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_existing_other_content_raises(tmp_path):
    """A non-demo folder, or a demo with other parameters, is not touched without overwrite."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=str(foreign)):
        generate_demo(foreign, n_train=1, n_val=1)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    demo = generate_demo(tmp_path / "demo", n_train=1, n_val=1, seed=0)
    with pytest.raises(FileExistsError, match="different parameters"):
        generate_demo(demo, n_train=2, n_val=1, seed=0)
    # overwrite replaces the demo files but leaves unrelated files alone
    generate_demo(foreign, n_train=1, n_val=1, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    assert curated_ids(foreign, "train2017") == ["000000000001"]


def test_interrupted_run_is_regenerated(tmp_path):
    """A folder left half-written (marker present, no README) is ours and is finished without overwrite."""
    root = generate_demo(tmp_path / "demo", n_train=2, n_val=1, seed=0)
    (root / "README.txt").unlink()
    (root / ".make_demo_incomplete").write_text("")
    (root / "images" / "train2017" / "000000000002.jpg").unlink()
    generate_demo(root, n_train=2, n_val=1, seed=0)
    assert (root / "images" / "train2017" / "000000000002.jpg").is_file()
    assert not (root / ".make_demo_incomplete").exists()


@pytest.fixture(scope="module")
def regions():
    """Per region of 240 rendered images: class, measured mean colour (hue as a saturation-weighted unit vector,
    saturation, value), size fraction, three texture measures, and the mean colour as luma, Cb, Cr."""
    rows = []
    for index in range(240):
        img, label, records = render_image(image_rng(7, "train2017", index), must_have=index % N_CLASSES)
        assert N_REGIONS[0] <= len(records) <= N_REGIONS[1]
        rgb = img.astype(np.float64) / 255.0
        for cls in np.unique(label):
            inside = label == cls
            mean = rgb[inside].mean(0)
            h, s, v = colorsys.rgb_to_hsv(*mean)
            # Texture measures (the positive control): luminance std and mean gradient along x and along y.
            luma = rgb @ np.array([0.299, 0.587, 0.114])
            core = inside[1:, 1:] & inside[:-1, 1:] & inside[1:, :-1]
            gx = np.abs(np.diff(luma, axis=1))[1:, :][core].mean()
            gy = np.abs(np.diff(luma, axis=0))[:, 1:][core].mean()
            y = float(mean @ np.array([0.299, 0.587, 0.114]))
            rows.append((int(cls), np.cos(2 * np.pi * h) * s, np.sin(2 * np.pi * h) * s, s, v, inside.mean(),
                         luma[inside].std(), gx, gy, y, (mean[2] - y) / 1.772, (mean[0] - y) / 1.402))
    return np.array(rows)


def _knn_accuracy(features, classes, k=9):
    """Leave-one-out k-nearest-neighbour accuracy on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-12)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1)[:, :k]
    votes = classes[neighbours]
    predicted = np.array([np.bincount(row, minlength=N_CLASSES).argmax() for row in votes])
    return float((predicted == classes).mean())


def test_every_class_occurs_in_a_small_sample(regions):
    counts = np.bincount(regions[:, 0].astype(int), minlength=N_CLASSES)
    assert counts.min() >= 0.5 * counts.mean(), counts


@pytest.mark.parametrize("columns, what", [((1, 2, 3, 4), "mean colour (hue, saturation, value)"),
                                           ((4,), "mean brightness"), ((5,), "region size")])
def test_class_is_not_predictable_from_nuisances(regions, columns, what):
    """The class of a region cannot be told from its measured mean colour, brightness or size better than
    chance by a margin: these nuisances are drawn independently of the class, and every pattern has zero mean,
    so a region's mean colour is the drawn one. (If colour were tied to class, k-NN would be near 100%.)"""
    classes = regions[:, 0].astype(int)
    chance = np.bincount(classes).max() / len(classes)
    accuracy = _knn_accuracy(regions[:, list(columns)], classes)
    assert accuracy < chance + 0.1, f"class predicted from {what} with accuracy {accuracy:.2f} (chance {chance:.2f})"


def test_mean_colour_does_not_shift_with_class(regions):
    """Per class, the average of the regions' mean luma and chroma (Cb, Cr) is the overall average, within about
    4 standard errors (about 120 regions a class): no pattern brightens or tints its regions."""
    classes = regions[:, 0].astype(int)
    for column, what, tolerance in ((9, "luma", 0.015), (10, "Cb", 0.05), (11, "Cr", 0.05)):
        overall = regions[:, column].mean()
        for cls in range(N_CLASSES):
            shift = regions[classes == cls, column].mean() - overall
            assert abs(shift) < tolerance, f"{DEMO_CLASSES[cls].pattern}: mean {what} off by {shift:+.3f}"


def test_class_is_predictable_from_texture(regions):
    """Positive control for the test above: the same classifier on three crude texture measures (luminance
    std, gradient along x, gradient along y) finds the class far above chance."""
    classes = regions[:, 0].astype(int)
    assert _knn_accuracy(regions[:, [6, 7, 8]], classes) > 0.7


def test_cli(tmp_path, capsys):
    """The command line writes the same layout and reports where."""
    root = tmp_path / "cli"
    assert main(["--root", str(root), "--n_train", "1", "--n_val", "1", "--seed", "5"]) == 0
    assert "demo dataset ready" in capsys.readouterr().out
    assert curated_ids(root, "val2017") == ["000000500000"]


def test_cli_flags_beside_preset_win(tmp_path, capsys):
    """--preset tiny --root DIR writes the set into DIR (the preset's other values kept), as train_picie.py lets a
    flag given on the command line win over its preset."""
    root = tmp_path / "given"
    assert main(["--preset", "tiny", "--root", str(root), "--n_val", "1"]) == 0
    assert f"ready at {root} (12 train + 1 val images, seed 0)" in capsys.readouterr().out
    assert len(curated_ids(root, "train2017")) == 12 and len(curated_ids(root, "val2017")) == 1
