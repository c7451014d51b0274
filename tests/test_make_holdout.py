"""tools/make_holdout.py: a data root whose val split is a labelled hold-out of train2017, so that
settings can be tuned without reading val2017."""
import json
import os

import pytest

from data.build import DataSettings, build_source
from helpers import curated_ids
from tools.make_holdout import draw_holdout, main


@pytest.fixture(scope='module')
def holdout(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp('holdout') / 'root'
    assert main(['--data_root', str(tiny_demo), '--out', str(out), '--n_holdout', '4', '--seed', '3']) == 0
    return out


def test_holdout_splits_train2017_and_never_reads_val2017(holdout, tiny_demo):
    source_train = curated_ids(tiny_demo, 'train2017')
    train, val = curated_ids(holdout, 'train2017'), curated_ids(holdout, 'val2017')
    assert len(val) == 4 and len(train) == len(source_train) - 4
    assert not set(train) & set(val) and sorted(train + val) == sorted(source_train)
    assert train == [i for i in source_train if i not in val]  # the curated list's order
    # Every file is a link into the source's train2017, never into its val2017.
    links = [p for p in holdout.rglob('*') if p.is_symlink()]
    assert links and all('val2017' not in os.readlink(p) for p in links)
    record = json.loads((holdout / 'HOLDOUT.json').read_text())
    assert (record['seed'], record['n_holdout'], record['n_train']) == (3, 4, len(train))
    assert record['holdout_ids'] == sorted(val)  # the record says which images are held out


def test_a_record_written_before_the_ids_gets_them(tiny_demo, tmp_path):
    out = tmp_path / 'root'
    argv = ['--data_root', str(tiny_demo), '--out', str(out), '--n_holdout', '4', '--seed', '3']
    assert main(argv) == 0
    record = json.loads((out / 'HOLDOUT.json').read_text())
    (out / 'HOLDOUT.json').write_text(json.dumps({k: v for k, v in record.items() if k != 'holdout_ids'}))
    assert main(argv) == 0
    assert json.loads((out / 'HOLDOUT.json').read_text()) == record


def test_the_toolkit_reads_the_holdout_root_as_it_is(holdout):
    source = build_source(DataSettings(dataset='cocostuff', data_root=str(holdout), stuff=True, thing=False))
    val = curated_ids(holdout, 'val2017')
    assert [p.stem for p in source.val_images] == val and [p.stem for p in source.val_labels] == val
    assert all(p.resolve().parent.name == 'train2017' for p in source.val_images + source.val_labels)
    assert not {p.stem for p in source.train_images} & set(val)
    # --fullcoco lists the image folder: the hold-out is not in it either.
    full = build_source(DataSettings(dataset='cocostuff', data_root=str(holdout), stuff=True, thing=False,
                                     fullcoco=True))
    assert sorted(p.stem for p in full.train_images) == sorted(curated_ids(holdout, 'train2017'))


def test_draw_is_reproducible_and_seed_dependent():
    ids = [f'{i:012d}' for i in range(100)]
    assert draw_holdout(ids, 10, 0) == draw_holdout(ids, 10, 0)
    assert draw_holdout(ids, 10, 0) != draw_holdout(ids, 10, 1)
    assert len(set(draw_holdout(ids, 10, 0))) == 10


def test_same_arguments_again_do_nothing_and_other_ones_stop(holdout, tiny_demo, capsys):
    before = sorted(str(p) for p in holdout.rglob('*'))
    assert main(['--data_root', str(tiny_demo), '--out', str(holdout), '--n_holdout', '4', '--seed', '3']) == 0
    assert sorted(str(p) for p in holdout.rglob('*')) == before
    capsys.readouterr()
    assert main(['--data_root', str(tiny_demo), '--out', str(holdout), '--n_holdout', '4', '--seed', '4']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --out') and 'seed 3' in err[0]


@pytest.mark.parametrize('args, fragment', [
    (['--n_holdout', '12'], '--n_holdout 12'),      # the tiny demo has 12 training images: none would be left
    (['--n_holdout', '0'], '--n_holdout 0'),
    (['--fraction', '1.5'], '--fraction 1.5'),
])
def test_bad_sizes_are_one_line_naming_the_flag(tiny_demo, tmp_path, capsys, args, fragment):
    assert main(['--data_root', str(tiny_demo), '--out', str(tmp_path / 'out'), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error:') and fragment in err[0]
    assert not (tmp_path / 'out').exists()


def test_missing_labels_and_lists_are_named(tiny_demo, tmp_path, capsys):
    assert main(['--data_root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'out'), '--fraction', '0.2']) == 2
    assert f"--data_root {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
    (tmp_path / 'no_lists').mkdir()
    assert main(['--data_root', str(tmp_path / 'no_lists'), '--out', str(tmp_path / 'out'), '--fraction', '0.2']) == 2
    assert 'curated list not found' in capsys.readouterr().err
    unlabelled = tmp_path / 'unlabelled'
    for sub in ('images', 'curated'):
        (unlabelled / sub).mkdir(parents=True)
        os.symlink(tiny_demo / sub / 'train2017', unlabelled / sub / 'train2017')
    (unlabelled / 'annotations' / 'train2017').mkdir(parents=True)
    assert main(['--data_root', str(unlabelled), '--out', str(tmp_path / 'out'), '--n_holdout', '2']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'have no label map' in err[0] and not (tmp_path / 'out').exists()
