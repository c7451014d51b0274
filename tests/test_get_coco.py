"""tools/get_coco.py end to end against a local HTTP server (127.0.0.1, a thread of the test) serving
small archives in the published layout: 3 train + 2 val images, expected counts set with --expect_counts."""
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from data.cocostuff import CURATED_NAME, build_cocostuff
from helpers import REPO_ROOT, LocalServer, image_bytes, one_error_line, write_zip
from tools import get_coco

pytestmark = pytest.mark.usefixtures('local_network_only')

TRAIN_IDS = ('000000000009', '000000000025', '000000000030')
VAL_IDS = ('000000000139', '000000000285')
CURATED = {'train2017': TRAIN_IDS[1:], 'val2017': VAL_IDS[:1]}
EXPECT = ['--expect_counts', 'train2017=3', 'val2017=2']
HALF = 'train2017.zip'  # the archive the faults hit; its first image is large, so half of it is mid-file


@pytest.fixture(scope='module')
def archives(tmp_path_factory) -> Path:
    """The three archives (as published: member folders train2017/, val2017/ at the top) and a curated/
    folder of test lists, in one folder."""
    folder = tmp_path_factory.mktemp('coco_archives')
    ids = {'train2017': TRAIN_IDS, 'val2017': VAL_IDS}
    for split, split_ids in ids.items():
        write_zip(folder / f'{split}.zip', {f'{split}/{i}.jpg': image_bytes(160 if n == 0 else 8, n)
                                            for n, i in enumerate(split_ids)})
    write_zip(folder / 'stuffthingmaps_trainval2017.zip',
              {f'{split}/{i}.png': image_bytes(8, n, 'PNG', 'L') for split, split_ids in ids.items()
               for n, i in enumerate(split_ids)})
    for split, listed in CURATED.items():
        (folder / 'curated' / split).mkdir(parents=True)
        (folder / 'curated' / split / CURATED_NAME).write_text(''.join(f'{i}\n' for i in listed))
    return folder


def prepare(root: Path, archives: Path, *flags, url: str = None) -> int:
    argv = ['--root', str(root), '--curated', str(archives / 'curated'), '--retry_wait_s', '0', *EXPECT, *flags]
    return get_coco.main(argv + (['--base_url', url] if url else []))


def tree(root: Path, skip=()) -> dict:
    """{relative path: bytes} of every file under root, folders in `skip` left out."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file() and p.relative_to(root).parts[0] not in skip}


@pytest.fixture(scope='module')
def fresh(archives, tmp_path_factory) -> Path:
    """A root prepared by one uninterrupted download from the server."""
    root = tmp_path_factory.mktemp('fresh') / 'coco'
    with LocalServer(archives) as server:
        assert prepare(root, archives, url=server.url) == 0
        assert sorted(server.requests) == [(name, None) for name in
                                           ('stuffthingmaps_trainval2017.zip', 'train2017.zip', 'val2017.zip')]
    return root


def test_fresh_download_gives_the_layout_the_reader_reads(fresh, archives, capsys):
    for split, ids in (('train2017', TRAIN_IDS), ('val2017', VAL_IDS)):
        assert sorted(p.stem for p in (fresh / 'images' / split).glob('*.jpg')) == list(ids)
        assert sorted(p.stem for p in (fresh / 'annotations' / split).glob('*.png')) == list(ids)
        assert (fresh / 'curated' / split / CURATED_NAME).read_text().split() == list(CURATED[split])
    for name in ('train2017.zip', 'val2017.zip', 'stuffthingmaps_trainval2017.zip'):
        assert (fresh / 'archives' / name).read_bytes() == (archives / name).read_bytes()
    assert not list(fresh.glob('.unpack-*')) and not list(fresh.rglob('*.part'))
    source = build_cocostuff(fresh)
    assert [p.stem for p in source.train_images] == list(CURATED['train2017'])
    assert [p.stem for p in source.val_labels] == list(CURATED['val2017'])


def test_second_run_changes_nothing_and_downloads_nothing(fresh, archives, tmp_path, capsys):
    root = Path(shutil.copytree(fresh, tmp_path / 'coco'))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob('*')if p.is_file()}
    with LocalServer(archives) as server:
        assert prepare(root, archives, url=server.url) == 0
        assert server.requests == []
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob('*') if p.is_file()} == before
    out = capsys.readouterr().out
    assert out.count('already unpacked') == 3 and 'DATA_ROOT=' in out and 'train_picie.sh' in out


def test_killed_download_goes_on_where_it_stopped(fresh, archives, tmp_path):
    """The process is killed (SIGKILL) with half of train2017.zip on disk; the next run asks for the
    rest only, and the unpacked tree is the uninterrupted one's."""
    root = tmp_path / 'coco'
    part = root / 'archives' / (HALF + '.part')
    half = (archives / HALF).stat().st_size // 2
    with LocalServer(archives) as server:
        server.hold_at[HALF] = half
        argv = ['--root', str(root), '--curated', str(archives / 'curated'), '--base_url', server.url, *EXPECT]
        proc = subprocess.Popen([sys.executable, '-m', 'tools.get_coco', *argv], cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(2400):  # until the first half is on disk (a bound, not a timed assertion)
                if part.is_file() and part.stat().st_size == half or proc.poll() is not None:
                    break
                time.sleep(0.05)
            assert proc.poll() is None and part.stat().st_size == half
        finally:
            proc.kill()
            proc.wait()
        del server.hold_at[HALF]
        assert not (root / 'images').exists()
        assert prepare(root, archives, url=server.url) == 0
        assert (HALF, f'bytes={half}-') in server.requests
    assert tree(root) == tree(fresh)


def test_server_closing_mid_file_is_resumed(fresh, archives, tmp_path):
    root = tmp_path / 'coco'
    half = (archives / HALF).stat().st_size // 2
    with LocalServer(archives) as server:
        server.cut_at[HALF] = (half, 2)
        assert prepare(root, archives, url=server.url) == 0
        assert [r for name, r in server.requests if name == HALF] == [None, f'bytes={half}-', f'bytes={half}-']
    assert tree(root) == tree(fresh)


def test_download_that_keeps_failing_stops_with_one_line_then_resumes(fresh, archives, tmp_path, capsys):
    root = tmp_path / 'coco'
    half = (archives / HALF).stat().st_size // 2
    with LocalServer(archives) as server:
        server.cut_at[HALF] = (half, 3)
        assert prepare(root, archives, '--retries', '2', url=server.url) == 2
        one_error_line(capsys.readouterr().err, server.url + HALF, 'run the same command again')
        assert (root / 'archives' / (HALF + '.part')).stat().st_size == half
        assert not (root / 'images').exists() and not (root / '.prepared').exists()
        assert prepare(root, archives, url=server.url) == 0
        assert server.requests[-3:][0] == (HALF, f'bytes={half}-')
    assert tree(root) == tree(fresh)


def _damage(source: Path, dest: Path, how: str) -> Path:
    data = bytearray(source.read_bytes())
    if how == 'truncated':
        data = data[: len(data) // 2]
    else:  # one byte of the first member's data flipped: its CRC-32 no longer matches
        with zipfile.ZipFile(source) as archive:
            info = archive.infolist()[0]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + info.compress_size // 2] ^= 0xFF
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize('how', ['flipped byte', 'truncated'])
@pytest.mark.parametrize('where', ['--from', 'server'])
def test_damaged_archive_is_one_line_and_leaves_nothing_unpacked(archives, tmp_path, capsys, how, where):
    served = Path(shutil.copytree(archives, tmp_path / 'served'))
    damaged = _damage(archives / 'val2017.zip', served / 'val2017.zip', how)
    root = tmp_path / 'coco'
    with LocalServer(served) as server:
        flags = ['--from', str(served)] if where == '--from' else []
        assert prepare(root, archives, *flags, url=server.url) == 2
    path = damaged if where == '--from' else root / 'archives' / 'val2017.zip'
    fix = 'replace it' if where == '--from' else 'delete it and run the same command again'
    one_error_line(capsys.readouterr().err, str(path), 'damaged', fix)
    assert not (root / 'images' / 'val2017').exists() and not (root / '.prepared' / 'val2017.zip.json').exists()
    assert not list(root.glob('.unpack-*'))
    assert (root / 'images' / 'train2017').is_dir()  # the archive before it is complete


def test_too_little_disk_to_download(archives, tmp_path, capsys):
    root = tmp_path / 'coco'
    with LocalServer(archives) as server:
        assert prepare(root, archives, '--free_bytes', '1000', url=server.url) == 2
    size = (archives / 'train2017.zip').stat().st_size
    one_error_line(capsys.readouterr().err, 'to download train2017.zip', f'{size / 1000:.1f} KB', '1.0 KB free')
    assert not (root / 'archives' / 'train2017.zip.part').exists()


def test_too_little_disk_to_unpack(archives, tmp_path, capsys):
    root = tmp_path / 'coco'
    with zipfile.ZipFile(archives / 'train2017.zip') as archive:
        need = sum(info.file_size for info in archive.infolist())
    assert prepare(root, archives, '--from', str(archives), '--free_bytes', str(need - 1)) == 2
    one_error_line(capsys.readouterr().err, 'to unpack train2017.zip', f'{need / 1000:.1f} KB')
    assert not (root / 'images').exists() and not list(root.glob('.unpack-*'))


def test_interrupted_unpack_is_detected_and_redone(fresh, archives, tmp_path, monkeypatch, capsys):
    from utils import fetch
    extract, calls = fetch._extract_member, []

    def stop_at_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        extract(*args)
    root = tmp_path / 'coco'
    monkeypatch.setattr(fetch, '_extract_member', stop_at_second)
    assert prepare(root, archives, '--from', str(archives)) == 130
    assert (root / '.unpack-train2017.zip').is_dir() and not (root / 'images').exists()
    monkeypatch.setattr(fetch, '_extract_member', extract)
    assert prepare(root, archives, '--from', str(archives)) == 0
    assert 'interrupted unpack' in capsys.readouterr().err
    assert tree(root) == tree(fresh, skip=('archives',))


def test_from_folder_downloads_nothing(fresh, archives, tmp_path):
    root = tmp_path / 'coco'
    with LocalServer(archives) as server:
        assert prepare(root, archives, '--from', str(archives), url=server.url) == 0
        assert server.requests == []
    assert tree(root) == tree(fresh, skip=('archives',))


def test_wrong_counts_missing_ids_and_removed_files_are_one_line(fresh, archives, tmp_path, capsys):
    root = Path(shutil.copytree(fresh, tmp_path / 'coco'))
    curated = Path(shutil.copytree(archives / 'curated', tmp_path / 'curated'))
    argv = ['--root', str(root), '--curated', str(curated), '--from', str(archives)]
    assert get_coco.main([*argv, '--expect_counts', 'train2017=4', 'val2017=2']) == 2
    one_error_line(capsys.readouterr().err, str(root / 'images' / 'train2017'), 'holds 3 images', '4')
    # A listed id without its image: the list put in place names it.
    shutil.rmtree(root / 'curated')
    with open(curated / 'val2017' / CURATED_NAME, 'a') as listed:
        listed.write('000000999999\n')
    assert get_coco.main([*argv, *EXPECT]) == 2
    one_error_line(capsys.readouterr().err, '000000999999', str(root / 'curated' / 'val2017' / CURATED_NAME))
    # A file removed after the preparation: the folder no longer holds what its archive does.
    (root / 'images' / 'val2017' / f'{VAL_IDS[1]}.jpg').unlink()
    assert get_coco.main([*argv, *EXPECT]) == 2
    one_error_line(capsys.readouterr().err, str(root / 'images' / 'val2017'), 'lacks 1 of the 2 files')


def test_unpack_interrupted_between_its_renames_is_redone(fresh, archives, tmp_path):
    """stuffthingmaps fills two folders: killed after moving the first, the journal says so, and the
    next run removes it and unpacks the archive again."""
    root = Path(shutil.copytree(fresh, tmp_path / 'coco', ignore=shutil.ignore_patterns('archives')))
    (root / '.prepared' / 'stuffthingmaps_trainval2017.zip.json').unlink()
    (root / '.prepared' / 'stuffthingmaps_trainval2017.zip.moving').write_text('stuffthingmaps_trainval2017.zip')
    shutil.rmtree(root / 'annotations' / 'val2017')
    assert prepare(root, archives, '--from', str(archives)) == 0
    assert tree(root) == tree(fresh, skip=('archives',))


def test_delete_archives_keeps_only_the_prepared_data(fresh, archives, tmp_path):
    root = tmp_path / 'coco'
    with LocalServer(archives) as server:
        assert prepare(root, archives, '--delete_archives', url=server.url) == 0
        assert prepare(root, archives, url=server.url) == 0  # complete: nothing fetched again
        assert len(server.requests) == 3
    assert list((root / 'archives').iterdir()) == []
    assert tree(root) == tree(fresh, skip=('archives',))
