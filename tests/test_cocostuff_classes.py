"""Tests for data/cocostuff_classes.py and tools/write_fine_to_coarse.py."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from data.cocostuff_classes import (
    COARSE_NAMES,
    FINE_NAMES,
    FINE_TO_COARSE,
    STUFF_CLASSES,
    THING_CLASSES,
    class_names,
    coarse_lut,
    fine_to_coarse_dict,
    load_fine_to_coarse,
    n_classes,
)
from tools.write_fine_to_coarse import main as write_main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _need(path: Path) -> Path:
    """Return ``path``, skipping the test when that reference file is absent."""
    if not path.exists():
        pytest.skip(f'reference file not found: {path}')
    return path


def _load(path: Path) -> dict:
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.fixture(scope='module')
def reference_pickle(shared_data: Path) -> dict:
    """The original PiCIE fine_to_coarse_dict.pickle."""
    return _load(_need(shared_data / 'picie_reference' / 'fine_to_coarse_dict.pickle'))


def test_tables_shape():
    assert len(FINE_NAMES) == 182 and len(set(FINE_NAMES)) == 182
    assert len(FINE_TO_COARSE) == 182
    assert len(COARSE_NAMES) == 27
    assert THING_CLASSES == tuple(range(12)) and STUFF_CLASSES == tuple(range(12, 27))
    # The coarse names say which group they belong to; the group split must agree with it.
    assert all(COARSE_NAMES[c].endswith('-things') for c in THING_CLASSES)
    assert all(COARSE_NAMES[c].endswith('-stuff') for c in STUFF_CLASSES)


def test_fine_names_match_label_list(shared_data: Path):
    """FINE_NAMES[i] is the name of COCO-Stuff id i + 1 in the official label list."""
    lines = _need(shared_data / 'picie_reference' / 'cocostuff_labels.txt').read_text().splitlines()
    ids = dict(line.split(': ', 1) for line in lines if line.strip())
    assert ids['0'] == 'unlabeled'
    assert FINE_NAMES == tuple(ids[str(i + 1)] for i in range(182))


def test_fine_to_coarse_dict_equals_reference(reference_pickle: dict):
    ours = fine_to_coarse_dict()
    assert set(ours) == set(reference_pickle)
    assert ours['fine_index_to_coarse_index'] == reference_pickle['fine_index_to_coarse_index']
    assert ours['fine_name_to_coarse_name'] == reference_pickle['fine_name_to_coarse_name']
    assert set(reference_pickle['fine_name_to_coarse_name'].values()) == set(COARSE_NAMES)


def test_written_pickle_equals_reference(tmp_path: Path, reference_pickle: dict):
    out = tmp_path / 'sub' / 'fine_to_coarse_dict.pickle'
    assert write_main(['--out', str(out)]) == 0
    assert _load(out) == reference_pickle


def test_repo_root_pickle_equals_reference(reference_pickle: dict):
    """The generated copy at the repo root (tools/write_fine_to_coarse.py default output)."""
    assert _load(_need(REPO_ROOT / 'fine_to_coarse_dict.pickle')) == reference_pickle


def test_coarse_lut_all_classes():
    lut = coarse_lut(load_fine_to_coarse('/nonexistent-data-root'), stuff=True, thing=True)
    assert lut.dtype == np.int16 and lut.shape == (256,)
    assert lut[0] == 9  # person -> person-things
    assert lut[2] == 11  # car -> vehicle
    assert lut[71] == 0  # tv -> electronic
    assert lut[156] == 23  # sky-other -> sky
    assert lut[123] == 22  # grass -> plant
    assert lut[181] == 24  # wood -> solid
    assert lut[255] == -1  # unlabeled
    assert (lut[182:255] == -1).all()  # values with no fine class
    assert class_names(True, True) == list(COARSE_NAMES) and n_classes(True, True) == 27


def test_coarse_lut_stuff_only():
    lut = coarse_lut(dict(enumerate(FINE_TO_COARSE)), stuff=True, thing=False)
    assert lut[156] == 11  # sky: coarse 23 - 12
    assert lut[101] == 0  # ceiling-other -> ceiling, first stuff class
    assert lut[177] == 14  # water-other -> water, last stuff class
    assert lut[0] == -1 and lut[2] == -1  # things are ignored
    assert lut[255] == -1
    assert set(np.unique(lut)) == set(range(-1, 15))
    names = class_names(stuff=True, thing=False)
    assert n_classes(stuff=True, thing=False) == 15 == len(names)
    assert names[11] == 'sky-stuff' and names[0] == 'ceiling-stuff'


def test_coarse_lut_thing_only():
    lut = coarse_lut(dict(enumerate(FINE_TO_COARSE)), stuff=False, thing=True)
    assert lut[0] == 9 and lut[71] == 0
    assert lut[156] == -1 and lut[123] == -1  # stuff is ignored
    assert lut[255] == -1
    assert set(np.unique(lut)) == set(range(-1, 12))
    names = class_names(stuff=False, thing=True)
    assert n_classes(stuff=False, thing=True) == 12 == len(names)
    assert names[9] == 'person-things'


def test_coarse_lut_applies_to_label_maps():
    labels = np.array([[0, 156], [255, 200]], dtype=np.uint8)
    lut = coarse_lut(dict(enumerate(FINE_TO_COARSE)), stuff=True, thing=True)
    assert lut[labels].tolist() == [[9, 23], [-1, -1]]


def test_neither_stuff_nor_thing_is_an_error():
    with pytest.raises(ValueError):
        coarse_lut(dict(enumerate(FINE_TO_COARSE)), stuff=False, thing=False)
    with pytest.raises(ValueError):
        class_names(False, False)
    with pytest.raises(ValueError):
        n_classes(False, False)


def test_load_fine_to_coarse_builtin_without_pickle(tmp_path: Path):
    assert load_fine_to_coarse(tmp_path) == dict(enumerate(FINE_TO_COARSE))


def test_load_fine_to_coarse_reads_user_pickle(tmp_path: Path):
    # A user mapping that differs from the built-in one must win.
    table = {i: 26 - (i % 27) for i in range(182)}
    with open(tmp_path / 'fine_to_coarse_dict.pickle', 'wb') as f:
        pickle.dump({'fine_index_to_coarse_index': table, 'fine_name_to_coarse_name': {}}, f)
    assert load_fine_to_coarse(tmp_path) == table
    assert coarse_lut(load_fine_to_coarse(tmp_path), True, True)[0] == 26


def test_load_fine_to_coarse_reads_shared_pickle(shared_data: Path):
    root = shared_data / 'cocostuff_mini'
    _need(root / 'fine_to_coarse_dict.pickle')
    assert load_fine_to_coarse(root) == dict(enumerate(FINE_TO_COARSE))


@pytest.mark.parametrize('payload, why', [
    (b'this is not a pickle', 'cannot be read'),
    (pickle.dumps({'something_else': {}}), 'fine_index_to_coarse_index'),
    (pickle.dumps({'fine_index_to_coarse_index': {i: 0 for i in range(100)}}), 'does not cover'),
    (pickle.dumps({'fine_index_to_coarse_index': {i: 30 for i in range(182)}}), 'outside'),
])
def test_load_fine_to_coarse_bad_pickle(tmp_path: Path, payload: bytes, why: str):
    path = tmp_path / 'fine_to_coarse_dict.pickle'
    path.write_bytes(payload)
    with pytest.raises(ValueError) as info:
        load_fine_to_coarse(tmp_path)
    message = str(info.value)
    assert str(path) in message and why in message
    assert '\n' not in message
