"""Tests for data/cocostuff_classes.py and tools/write_fine_to_coarse.py."""

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from data.cocostuff_classes import (
    COARSE_NAMES,
    FINE171_NAMES,
    FINE171_VALUES,
    FINE_NAMES,
    FINE_TO_COARSE,
    N_FINE171,
    STUFF171_CLASSES,
    STUFF_CLASSES,
    THING171_CLASSES,
    THING_CLASSES,
    UNUSED_FINE,
    class_names,
    coarse_lut,
    fine171_lut,
    fine171_names,
    fine_to_coarse_dict,
    group_classes,
    load_fine_to_coarse,
    n_classes,
)
from helpers import REPO_ROOT
from tools.write_fine_to_coarse import main as write_main


def _load(path: Path) -> dict:
    with open(path, 'rb') as f:
        return pickle.load(f)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# SHA-256 of the original project's tables, in a canonical JSON form (keys as strings), taken from its
# fine_to_coarse_dict.pickle and COCO-Stuff's label list (../shared/data/picie_reference/): so the tables
# here are checked against the original on any clone, and against the files themselves where they are.
REFERENCE_INDEX_DIGEST = '2e524893b2ca1259d062e48f62a508074eddf63f8fda499c93c266015d901fce'
REFERENCE_NAME_DIGEST = '22144b86d994b005ea44bd4713569a380fd95d780122fd6c7e86287b280d7455'
REFERENCE_FINE_NAMES_DIGEST = '68b658155298369a379a4df18b7af4f1e4e825ba58c3d7d4c128e2d33f47b932'


def _table_digests(table: dict) -> tuple:
    return (_digest({str(k): int(v) for k, v in table['fine_index_to_coarse_index'].items()}),
            _digest({str(k): str(v) for k, v in table['fine_name_to_coarse_name'].items()}))


def test_tables_shape():
    assert len(FINE_NAMES) == 182 and len(set(FINE_NAMES)) == 182
    assert len(FINE_TO_COARSE) == 182
    assert len(COARSE_NAMES) == 27
    assert THING_CLASSES == tuple(range(12)) and STUFF_CLASSES == tuple(range(12, 27))
    # The coarse names say which group they belong to; the group split must agree with it.
    assert all(COARSE_NAMES[c].endswith('-things') for c in THING_CLASSES)
    assert all(COARSE_NAMES[c].endswith('-stuff') for c in STUFF_CLASSES)


def test_fine_names_match_label_list():
    """FINE_NAMES[i] is the name of COCO-Stuff id i + 1 in the official label list."""
    assert _digest(list(FINE_NAMES)) == REFERENCE_FINE_NAMES_DIGEST
    assert 'unlabeled' not in FINE_NAMES


def test_fine_to_coarse_dict_equals_reference():
    ours = fine_to_coarse_dict()
    assert set(ours) == {'fine_index_to_coarse_index', 'fine_name_to_coarse_name'}
    assert _table_digests(ours) == (REFERENCE_INDEX_DIGEST, REFERENCE_NAME_DIGEST)
    assert set(ours['fine_name_to_coarse_name'].values()) == set(COARSE_NAMES)


def test_written_pickle_equals_reference(tmp_path: Path):
    out = tmp_path / 'f2c.pickle'
    assert write_main(['--out', str(out)]) == 0
    assert _table_digests(_load(out)) == (REFERENCE_INDEX_DIGEST, REFERENCE_NAME_DIGEST)


def test_repo_root_pickle_equals_reference():
    """The repository's top-level fine_to_coarse_dict.pickle (the design card's file) is the original table."""
    assert _table_digests(_load(REPO_ROOT / 'fine_to_coarse_dict.pickle')) == (REFERENCE_INDEX_DIGEST,
                                                                               REFERENCE_NAME_DIGEST)


def test_reference_digests_are_those_of_the_original_files(shared_data_if_present):
    """Where ../shared is beside the clone, the digests above are recomputed from the original files."""
    if shared_data_if_present is None:
        return
    reference = shared_data_if_present / 'picie_reference'
    assert _table_digests(_load(reference / 'fine_to_coarse_dict.pickle')) == (REFERENCE_INDEX_DIGEST,
                                                                               REFERENCE_NAME_DIGEST)
    lines = (reference / 'cocostuff_labels.txt').read_text().splitlines()
    ids = dict(line.split(': ', 1) for line in lines if line.strip())
    assert ids['0'] == 'unlabeled'
    assert _digest([ids[str(i + 1)] for i in range(182)]) == REFERENCE_FINE_NAMES_DIGEST


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


def test_load_fine_to_coarse_reads_a_root_pickle(coco_mini: Path):
    """A fine_to_coarse_dict.pickle in --data_root is read (coco_mini holds the original table)."""
    assert load_fine_to_coarse(coco_mini) == dict(enumerate(FINE_TO_COARSE))


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


# -- COCO-Stuff-171 ---------------------------------------------------------------------------------
# The fine ids the official COCO-Stuff label list marks "Removed from COCO." (1-based, as the list numbers
# them), with their names there: nightrome/cocostuff, labels.md at commit 0f0cb3f941650257dbc8d952fb412e2e7259d836
# (its labels.txt, commit cad94560af961375160d9e9e55a1612bc319cd5b, gives the same names for these ids).
# A stuffthingmaps value is the list's id - 1.
REMOVED_FROM_COCO = {12: 'street sign', 26: 'hat', 29: 'shoe', 30: 'eye glasses', 45: 'plate', 66: 'mirror',
                     68: 'window', 69: 'desk', 71: 'door', 83: 'blender', 91: 'hair brush'}
# SHA-256 of the 171 names in class order: labels.txt's names of ids 1..182 without the removed ones.
REFERENCE_FINE171_NAMES_DIGEST = '0d1caff40f22c2f8de07c9d3016f2521dea096ae8b51889a12d3511bc33a18e7'


def test_unused_ids_are_those_removed_from_coco():
    assert UNUSED_FINE == (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
    assert UNUSED_FINE == tuple(sorted(i - 1 for i in REMOVED_FROM_COCO))
    assert all(FINE_NAMES[i - 1] == name for i, name in REMOVED_FROM_COCO.items())


def test_fine171_tables():
    assert len(FINE171_NAMES) == N_FINE171 == 171 and len(set(FINE171_NAMES)) == 171
    assert _digest(list(FINE171_NAMES)) == REFERENCE_FINE171_NAMES_DIGEST
    assert FINE171_VALUES == tuple(v for v in range(182) if v not in UNUSED_FINE)
    # 80 things (values 0..90) then 91 stuff (values 91..181), each in value order.
    assert THING171_CLASSES == tuple(range(80)) and STUFF171_CLASSES == tuple(range(80, 171))
    assert FINE171_VALUES[79] == 89 and FINE171_VALUES[80] == 91 and FINE171_VALUES[170] == 181
    assert (FINE171_NAMES[0], FINE171_NAMES[11], FINE171_NAMES[79]) == ('person', 'stop sign', 'toothbrush')
    assert (FINE171_NAMES[80], FINE171_NAMES[145], FINE171_NAMES[170]) == ('banner', 'sky-other', 'wood')
    # Every stuff class of 171 is a stuff class of 27 and every thing class a thing class.
    assert {FINE_TO_COARSE[FINE171_VALUES[c]] for c in THING171_CLASSES} == set(THING_CLASSES)
    assert {FINE_TO_COARSE[FINE171_VALUES[c]] for c in STUFF171_CLASSES} == set(STUFF_CLASSES)
    # The class order of CAUSE's COCO-171 loader (ByungKwanLee/Causal-Unsupervised-Segmentation,
    # loader/dataloader.py, Coco171.fine_to_coarse, commit 3330e4a): a few of its value -> class entries.
    cause = {0: 0, 10: 10, 12: 11, 26: 24, 30: 26, 45: 40, 66: 60, 69: 61, 71: 62, 83: 73, 89: 79, 91: 80,
             156: 145, 181: 170}
    assert {v: FINE171_VALUES.index(v) for v in cause} == cause


def test_fine171_names_from_the_official_list(shared_data_if_present):
    """Where ../shared is beside the clone: the 171 names are the official list's, less the removed ids."""
    if shared_data_if_present is None:
        return
    lines = (shared_data_if_present / 'picie_reference' / 'cocostuff_labels.txt').read_text().splitlines()
    ids = dict(line.split(': ', 1) for line in lines if line.strip())
    assert all(ids[str(i)] == name for i, name in REMOVED_FROM_COCO.items())
    kept = [ids[str(i)] for i in range(1, 183) if i not in REMOVED_FROM_COCO]
    assert kept == list(FINE171_NAMES)


@pytest.mark.parametrize('stuff, thing, n, first, last', [
    (True, True, 171, 'person', 'wood'), (True, False, 91, 'banner', 'wood'),
    (False, True, 80, 'person', 'toothbrush')])
def test_fine171_lut(stuff, thing, n, first, last):
    lut = fine171_lut(stuff, thing)
    names = fine171_names(stuff, thing)
    assert lut.dtype == np.int16 and lut.shape == (256,)
    assert sorted(set(lut.tolist()) - {-1}) == list(range(n)) and len(names) == n
    assert (names[0], names[-1]) == (first, last)
    assert all(lut[v] == -1 for v in (*UNUSED_FINE, *range(182, 256)))
    for value in range(182):  # each kept value maps to the class of its own name
        if lut[value] >= 0:
            assert names[lut[value]] == FINE_NAMES[value]
    if stuff and thing:
        assert (lut[0], lut[12], lut[89], lut[91], lut[156], lut[181]) == (0, 11, 79, 80, 145, 170)
        assert group_classes(171, True, True) == (THING171_CLASSES, STUFF171_CLASSES)
    else:
        assert group_classes(171, stuff, thing) == ((), ())
        assert all(lut[v] == -1 for v in (range(91) if stuff else range(91, 182)))


def test_group_classes_of_27_are_the_coarse_groups():
    assert group_classes(27, True, True) == (THING_CLASSES, STUFF_CLASSES)
    assert group_classes(27, True, False) == ((), ())
