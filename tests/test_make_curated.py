"""Tests for tools/make_curated.py (IIC/PiCIE curated-list generation)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.cocostuff_classes import FINE_TO_COARSE
from helpers import REPO_ROOT, one_error_line
from tools.make_curated import LIST_NAME, main, select_curated

SKY = 156  # fine 'sky-other', a stuff class
PERSON = 0  # fine 'person', a thing class
UNLABELED = 255


def _read_ids(path: Path) -> list:
    return path.read_text().splitlines()


@pytest.fixture(scope='module')
def generated(coco_val_root: Path, tmp_path_factory) -> Path:
    """Run the tool once on the 8 real val pairs of tests/fixtures, writing into a temporary out_dir."""
    out_dir = tmp_path_factory.mktemp('curated_out')
    assert main(['--data_root', str(coco_val_root), '--out_dir', str(out_dir), '--splits', 'val2017',
                 '--workers', '2']) == 0
    return out_dir


def test_selects_the_official_curated_images(generated: Path, coco_val_root: Path):
    """The 8 fixture images are all in the official curated val list (version 7), and their label
    maps pass its rule: the tool selects all 8, in sorted order, one id per line."""
    ids = _read_ids(generated / 'curated' / 'val2017' / LIST_NAME)
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 8
    assert all(len(i) == 12 and i.isdigit() for i in ids)
    assert set(ids) == {p.stem for p in (coco_val_root / 'annotations' / 'val2017').glob('*.png')}


def test_matches_the_fixture_curated_file(generated: Path, coco_val_root: Path):
    """Byte-identical to the fixture's own curated list (same format as the official files)."""
    expected = (coco_val_root / 'curated' / 'val2017' / LIST_NAME).read_text()
    assert (generated / 'curated' / 'val2017' / LIST_NAME).read_text() == expected


def _write_label(path: Path, labels: np.ndarray) -> Path:
    Image.fromarray(labels.astype(np.uint8), mode='L').save(path)
    return path


def _label_map(h: int, w: int, stuff: float, unlabeled: float) -> np.ndarray:
    """A label map with the given fractions of sky and unlabeled pixels; the rest is person."""
    flat = np.full(h * w, PERSON, dtype=np.uint8)
    n_stuff, n_unl = round(stuff * h * w), round(unlabeled * h * w)
    flat[:n_stuff] = SKY
    flat[n_stuff:n_stuff + n_unl] = UNLABELED
    return flat.reshape(h, w)


def test_rule_on_synthetic_maps(tmp_path: Path):
    """Size is inclusive at 360; the stuff fraction counts unlabeled pixels in the denominator."""
    cases = {
        '000000000001': (_label_map(360, 400, 0.80, 0.0), True),
        '000000000002': (_label_map(359, 400, 1.00, 0.0), False),  # too short
        '000000000003': (_label_map(400, 359, 1.00, 0.0), False),  # too narrow
        '000000000004': (_label_map(400, 400, 0.70, 0.0), False),  # too little stuff
        # 74% stuff + 26% unlabeled: 100% of the labelled pixels are stuff, but the official rule
        # divides by all pixels, so this image is out.
        '000000000005': (_label_map(400, 400, 0.74, 0.26), False),
        '000000000006': (_label_map(400, 400, 0.76, 0.24), True),
        '000000000007': (_label_map(400, 400, 0.75, 0.0), True),  # threshold is inclusive
    }
    paths = [_write_label(tmp_path / f'{i}.png', labels) for i, (labels, _) in cases.items()]
    expected = sorted(i for i, (_, ok) in cases.items() if ok)
    table = dict(enumerate(FINE_TO_COARSE))
    assert select_curated(paths, 360, 0.75, table) == expected
    # Same answer from the worker pool.
    assert select_curated(paths, 360, 0.75, table, workers=2) == expected


def test_lists_only_ids_with_an_image(tmp_path: Path):
    root = tmp_path / 'root'
    (root / 'annotations' / 'val2017').mkdir(parents=True)
    (root / 'images' / 'val2017').mkdir(parents=True)
    for image_id in ('000000000011', '000000000012'):
        _write_label(root / 'annotations' / 'val2017' / f'{image_id}.png',
                     _label_map(400, 400, 1.0, 0.0))
    (root / 'images' / 'val2017' / '000000000012.jpg').write_bytes(b'')
    assert main(['--data_root', str(root), '--splits', 'val2017', '--workers', '1']) == 0
    # Without --out_dir the list goes under the data root.
    assert _read_ids(root / 'curated' / 'val2017' / LIST_NAME) == ['000000000012']


def test_missing_annotations_folder(tmp_path: Path, capsys):
    assert main(['--data_root', str(tmp_path), '--out_dir', str(tmp_path / 'out')]) == 2
    one_error_line(capsys.readouterr().err, f'--data_root {tmp_path}', 'no annotations folder', 'docs/datasets.md')
    assert not (tmp_path / 'out').exists()


def test_missing_split_folder(tmp_path: Path, capsys):
    (tmp_path / 'annotations' / 'train2017').mkdir(parents=True)
    assert main(['--data_root', str(tmp_path), '--splits', 'val2017']) == 2
    one_error_line(capsys.readouterr().err, str(tmp_path / 'annotations' / 'val2017'), 'not found', '--splits')


@pytest.mark.parametrize('how', [['tools/make_curated.py'], ['-m', 'tools.make_curated']])
def test_command_line_error_is_one_line(tmp_path: Path, how: list):
    """Both ways of running the tool work and report a missing folder in one line, no traceback."""
    missing = tmp_path / 'no_such_root'
    result = subprocess.run([sys.executable, *how, '--data_root', str(missing)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f'error: --data_root {missing}: no annotations folder; give a COCO-Stuff root ' \
                                    '(docs/datasets.md)'
