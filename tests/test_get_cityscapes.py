"""tools/get_cityscapes.py: small archives in the published layout (README and licence at the top,
leftImg8bit/ and gtFine/ below), laid out and read by data/cityscapes.py; expected counts set with
--expect_counts. No download: the tool reads only --from."""
import shutil
from pathlib import Path

import pytest

from data.cityscapes import cityscapes_source
from helpers import error_lines, image_bytes, write_zip
from tools import get_cityscapes
from tools.get_cityscapes import check_splits
from utils.fetch import FetchError

FRAMES = {'train': ['aachen_000000_000019', 'aachen_000001_000019'], 'val': ['frankfurt_000000_000294'],
          'test': ['berlin_000000_000019'], 'train_extra': ['augsburg_000000_000000', 'augsburg_000001_000000']}
EXPECT = ['--expect_counts', 'train=2', 'val=1', 'test=1', 'train_extra=2']


def _city(frame: str) -> str:
    return frame.split('_')[0]


@pytest.fixture(scope='module')
def archives(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('cityscapes_archives')
    top = {'README': b'readme', 'license.txt': b'licence'}
    images = {f'leftImg8bit/{s}/{_city(f)}/{f}_leftImg8bit.png': image_bytes(8, n, 'PNG')
              for s in ('train', 'val', 'test') for n, f in enumerate(FRAMES[s])}
    labels = {f'gtFine/{s}/{_city(f)}/{f}_gtFine_{kind}.png': image_bytes(8, n, 'PNG', 'L')
              for s in ('train', 'val', 'test') for n, f in enumerate(FRAMES[s]) for kind in ('labelIds', 'color')}
    extra = {f'leftImg8bit/train_extra/{_city(f)}/{f}_leftImg8bit.png': image_bytes(8, n, 'PNG')
             for n, f in enumerate(FRAMES['train_extra'])}
    write_zip(folder / 'leftImg8bit_trainvaltest.zip', {**top, **images})
    write_zip(folder / 'gtFine_trainvaltest.zip', {**top, **labels})
    write_zip(folder / 'leftImg8bit_trainextra.zip', {**top, **extra})
    return folder


def test_archives_laid_out_for_the_reader(archives, tmp_path, capsys):
    root = tmp_path / 'cityscapes'
    assert get_cityscapes.main(['--from', str(archives), '--root', str(root), *EXPECT]) == 0
    for split, frames in FRAMES.items():
        assert sorted(p.name for p in (root / 'leftImg8bit' / split).glob('*/*.png')) == \
            [f'{f}_leftImg8bit.png' for f in frames]
    assert not (root / 'README').exists() and not (root / 'license.txt').exists()
    source = cityscapes_source(root)  # PiCIE's splits: train on train_extra + test, evaluate on val + train
    assert [p.name[:-len('_leftImg8bit.png')] for p in source.train_images] == FRAMES['train_extra'] + FRAMES['test']
    assert [p.name for p in source.val_labels] == [f'{f}_gtFine_labelIds.png' for f in FRAMES['val'] + FRAMES['train']]
    out = capsys.readouterr().out
    assert 'train_picie_cityscapes.sh' in out and 'train_extra 2' in out
    # A second run reads nothing and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in root.rglob('*')}
    assert get_cityscapes.main(['--from', str(archives), '--root', str(root), *EXPECT]) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob('*')} == before
    assert capsys.readouterr().out.count('already unpacked') == 3


def test_missing_archive_says_where_to_get_it(archives, tmp_path, capsys):
    partial = Path(shutil.copytree(archives, tmp_path / 'downloads'))
    (partial / 'leftImg8bit_trainextra.zip').unlink()
    assert get_cityscapes.main(['--from', str(partial), '--root', str(tmp_path / 'cs'), *EXPECT]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and 'leftImg8bit_trainextra.zip not found in' in lines[0]
    assert 'cityscapes-dataset.com' in lines[0]


def test_published_counts_are_checked(archives, tmp_path, capsys):
    """Without --expect_counts the published split sizes apply: 2 train frames are not 2,975."""
    root = tmp_path / 'cs'
    assert get_cityscapes.main(['--from', str(archives), '--root', str(root)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(root / 'leftImg8bit' / 'train') in lines[0] and '2975' in lines[0]


def test_frame_without_label_map_is_named(archives, tmp_path):
    root = tmp_path / 'cs'
    assert get_cityscapes.main(['--from', str(archives), '--root', str(root), *EXPECT]) == 0
    gone = root / 'gtFine' / 'val' / 'frankfurt' / f'{FRAMES["val"][0]}_gtFine_labelIds.png'
    gone.unlink()
    with pytest.raises(FetchError) as info:
        check_splits(root, {'train': 2, 'val': 1, 'test': 1, 'train_extra': 2})
    assert str(gone) in str(info.value) and '1 val frames have no labelIds map' in str(info.value)
