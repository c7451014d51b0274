"""Tests for data/make_demo.py, the synthetic COCO-Stuff-layout demo dataset generator."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from data.cocostuff_classes import fine_to_coarse_dict
from data.make_demo import CURATED_NAME, DEMO_FINE_IDS, IGNORE_INDEX, SPLITS, generate_demo, main


N_TRAIN, N_VAL = 6, 4


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """One small demo shared by the read-only tests (generation is the slow part)."""
    return generate_demo(tmp_path_factory.mktemp("demo") / "demo", n_train=N_TRAIN, n_val=N_VAL, seed=0)


def _ids(root, split):
    """Ids listed in a split's curated file."""
    return (root / "curated" / split / CURATED_NAME).read_text().split()


def test_class_table_is_real_stuff_ids():
    """15 distinct fine ids, one per stuff coarse class 12..26, and the original table agrees."""
    assert sorted(DEMO_FINE_IDS) == list(range(12, 27))
    fine_ids = [fine for fine, _name in DEMO_FINE_IDS.values()]
    assert len(set(fine_ids)) == 15 and all(0 <= f <= 181 for f in fine_ids)
    table = fine_to_coarse_dict()  # the original's table (tests/test_cocostuff_classes.py checks it)
    for coarse, (fine, name) in DEMO_FINE_IDS.items():
        assert table["fine_index_to_coarse_index"][fine] == coarse, (fine, name)
        assert name in table["fine_name_to_coarse_name"], name


def test_layout_complete_and_ids_match(demo_root):
    """Every split has sorted 12-digit ids, and images, annotations and curated lists agree exactly."""
    assert (demo_root / "README.txt").is_file()
    assert not (demo_root / "fine_to_coarse_dict.pickle").exists()
    all_ids = []
    for split, n in zip(SPLITS, (N_TRAIN, N_VAL)):
        ids = _ids(demo_root, split)
        assert len(ids) == n and ids == sorted(ids)
        assert all(len(i) == 12 and i.isdigit() for i in ids)
        images = sorted(p.stem for p in (demo_root / "images" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (demo_root / "annotations" / split).glob("*.png"))
        assert images == ids and labels == ids
        all_ids += ids
    assert len(set(all_ids)) == len(all_ids), "train and val ids must not overlap"


def test_labels_and_sizes(demo_root):
    """Labels are mode-L PNGs holding only demo fine ids and 255, and match their image's size."""
    allowed = {fine for fine, _name in DEMO_FINE_IDS.values()} | {IGNORE_INDEX}
    for split in SPLITS:
        for image_id in _ids(demo_root, split):
            image = Image.open(demo_root / "images" / split / f"{image_id}.jpg")
            label = Image.open(demo_root / "annotations" / split / f"{image_id}.png")
            assert image.format == "JPEG" and image.mode == "RGB"
            assert label.format == "PNG" and label.mode == "L"
            assert image.size == label.size
            assert 240 <= min(image.size) <= 400 and max(image.size) <= 1.6 * min(image.size) + 1
            values = set(np.unique(np.asarray(label)).tolist())
            assert values <= allowed
            assert len(values - {IGNORE_INDEX}) >= 3, "each image is a composition of 3-6 regions"


def test_determinism(tmp_path):
    """Same seed gives identical label bytes; a different seed gives different ones."""
    rel = Path("annotations") / "train2017" / "000000000001.png"
    a = generate_demo(tmp_path / "a", n_train=2, n_val=0, seed=3)
    b = generate_demo(tmp_path / "b", n_train=2, n_val=0, seed=3)
    c = generate_demo(tmp_path / "c", n_train=2, n_val=0, seed=4)
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "images" / "train2017" / "000000000001.jpg").read_bytes() == \
        (b / "images" / "train2017" / "000000000001.jpg").read_bytes()
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
    assert _ids(foreign, "train2017") == ["000000000001"]


def test_interrupted_run_is_regenerated(tmp_path):
    """A folder left half-written (marker present, no README) is ours and is finished without overwrite."""
    root = generate_demo(tmp_path / "demo", n_train=2, n_val=1, seed=0)
    (root / "README.txt").unlink()
    (root / ".make_demo_incomplete").write_text("")
    (root / "images" / "train2017" / "000000000002.jpg").unlink()
    generate_demo(root, n_train=2, n_val=1, seed=0)
    assert (root / "images" / "train2017" / "000000000002.jpg").is_file()
    assert not (root / ".make_demo_incomplete").exists()


def test_all_classes_occur(tmp_path):
    """All 15 classes appear in a 20-image sample, each with a non-trivial number of pixels."""
    root = generate_demo(tmp_path / "demo", n_train=16, n_val=4, seed=0)
    counts = {}
    for split in SPLITS:
        for image_id in _ids(root, split):
            label = np.asarray(Image.open(root / "annotations" / split / f"{image_id}.png"))
            values, n = np.unique(label, return_counts=True)
            for v, k in zip(values.tolist(), n.tolist()):
                counts[v] = counts.get(v, 0) + k
    for coarse, (fine, name) in DEMO_FINE_IDS.items():
        assert counts.get(fine, 0) > 1000, f"class {coarse} ({name}) missing"


def test_cli(tmp_path, capsys):
    """The command line writes the same layout and reports where."""
    root = tmp_path / "cli"
    assert main(["--root", str(root), "--n_train", "1", "--n_val", "1", "--seed", "5"]) == 0
    assert "demo dataset ready" in capsys.readouterr().out
    assert _ids(root, "val2017") == ["000000500000"]
