"""Reliability: exact resume after SIGKILL at any phase, crash-safe checkpoints, graceful
SIGTERM/SIGINT, non-finite losses, unreadable and malformed data, full disks, empty clusters.

Kill points are exact: tests/_killpoint.py runs train_picie.py in a subprocess and sends the
signal to itself at a chosen progress-bar item or checkpoint write. Resumes run in-process.
"""
import errno
import hashlib
import json
import math
import signal
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from data.datasets import EvalImages, TrainImages
from data.validation import DataError
from helpers import REPO_ROOT, TINY_FLAGS, TINY_RUN_FLAGS, copy_demo, curated_ids, error_lines, run_records
from modules import objectives as objectives_module
from modules.loss import PiCIELoss
from utils import checkpoint as checkpoint_module
from utils import loaders as loaders_module
from utils import run as run_module
from utils.checkpoint import atomic_save
from utils.files import WriteError

# The reference configuration: the shared session run's (conftest's tiny_run): 2 epochs with the
# initial evaluations, bit-exact on the CPU.
BASE = [*TINY_FLAGS, '--stuff', '--K_train', '15', '--K_test', '15']
EXACT = [*TINY_FLAGS, *TINY_RUN_FLAGS]
KILLPOINT = REPO_ROOT / 'tests' / '_killpoint.py'


def _argv(data_root, save_root, name, *flags):
    return ['--data_root', str(data_root), '--save_root', str(save_root), '--run_name', name, *flags]


def _outcome(run):
    """Everything a run computed, without wall-clock times: final metrics, metrics.jsonl, weights."""
    final = {k: v for k, v in json.loads((run / 'final_metrics.json').read_text()).items() if not k.endswith('_s')}
    records = [{k: v for k, v in r.items() if k != 'phase_s'} for r in run_records(run)]
    model = torch.load(run / 'checkpoint.pth', weights_only=True)['model']
    return final, records, model


def _assert_same_outcome(run, reference):
    final, records, model = _outcome(run)
    ref_final, ref_records, ref_model = _outcome(reference)
    # The toolkit's own commit is recorded, not computed: an edit between the runs only marks it '-dirty'.
    final.pop('git_commit', None)
    ref_final.pop('git_commit', None)
    assert [r['epoch'] for r in records] == [r['epoch'] for r in ref_records]  # no duplicate line of a redone epoch
    assert records == ref_records
    assert final == ref_final  # bit for bit: floats compared with ==
    assert all(torch.equal(model[k], ref_model[k]) for k in ref_model)
    assert not list(run.glob('*.tmp')) and not list(run.glob('.*.tmp'))


def _run_until_signal(data_root, save_root, name, point, *flags):
    cmd = [sys.executable, str(KILLPOINT), point, *_argv(data_root, save_root, name, *flags)]
    # A new session, so that INT-GROUP signals this run's process group and not pytest's.
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, start_new_session=True)


@pytest.fixture(scope='module')
def reference(tiny_run):
    """The uninterrupted run every resumed run must reproduce exactly: the session's shared run."""
    return tiny_run


# -- 1. exact resume ---------------------------------------------------------------------------
def test_two_fresh_deterministic_runs_are_identical(reference, tiny_demo, tmp_path, train):
    assert train(tiny_demo, tmp_path, 'again', *EXACT) == 0
    _assert_same_outcome(tmp_path / 'again', reference)
    assert [r['epoch'] for r in run_records(reference)] == [0, 0, 1, 2]
    # benchmarks/fingerprint.py, the refactors' evidence, says so too (times and commit ignored).
    from benchmarks.fingerprint import fingerprint
    assert fingerprint(tmp_path / 'again') == fingerprint(reference)


# Kill points along one run, each in a process started with --restart from what the previous kill left
# (the first from nothing): every phase a run can die in, and the resumed run must still equal the
# uninterrupted one. One chain instead of a run per point: the same kills, a third of the training.
KILL_CHAIN = (
    'KILL@bar:init k-means:1',      # initial evaluation, before any checkpoint
    'KILL@bar:epoch 0 cluster:2',   # k-means of epoch 1 (only the epoch-0 checkpoint exists)
    'KILL@bar:epoch 1 train:2',     # training of epoch 2
    'KILL@bar:epoch 1 eval:1',      # evaluation of epoch 2, after its metrics were computed in part
    'KILL@save:1',                  # writing the epoch-2 checkpoint: its temporary file is removed on restart
    'KILL@bar:final k-means:1',     # final evaluation, after the last checkpoint
)


def test_sigkill_at_every_phase_then_restart_matches_uninterrupted_run(reference, tiny_demo, tmp_path, train):
    for step, point in enumerate(KILL_CHAIN):
        restart = ['--restart'] if step else []
        done = _run_until_signal(tiny_demo, tmp_path, 'run', point, *EXACT, *restart)
        assert done.returncode == -signal.SIGKILL, f'{point}: {done.stderr[-2000:]}'
        assert not (tmp_path / 'run' / 'final_metrics.json').exists(), point
        left = list((tmp_path / 'run').glob('.checkpoint.pth.*.tmp'))
        assert len(left) == (1 if point.startswith('KILL@save') else 0), (point, left)  # a restart removes it
    assert train(tiny_demo, tmp_path, 'run', *EXACT, '--restart') == 0
    _assert_same_outcome(tmp_path / 'run', reference)


def test_sigkill_during_labelling_then_restart(tiny_demo, tmp_path, train):
    """Labelling is a separate pass only when the features are not cached (--feature_cache_gb 0)."""
    flags = [*EXACT, '--feature_cache_gb', '0']
    assert train(tiny_demo, tmp_path, 'reference', *flags) == 0
    done = _run_until_signal(tiny_demo, tmp_path, 'run', 'KILL@bar:epoch 1 label:2', *flags)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert train(tiny_demo, tmp_path, 'run', *flags, '--restart') == 0
    _assert_same_outcome(tmp_path / 'run', tmp_path / 'reference')


# -- 2. crash-safe checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize('error, raised', [
    (RuntimeError('injected'), RuntimeError), (KeyboardInterrupt(), KeyboardInterrupt),
    (OSError(errno.ENOSPC, 'full'), WriteError),
    (RuntimeError('PytorchStreamWriter failed writing file data/0: file write failed'), WriteError),
    (RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 503296 vs 503192'), WriteError)])
def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, error, raised):
    """A bug stays itself; a failed write (torch reports some as RuntimeError) becomes WriteError."""
    path = tmp_path / 'checkpoint.pth'
    atomic_save({'epoch': 1, 'weight': torch.ones(3)}, path)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b'half a checkpoint')
        raise error
    monkeypatch.setattr(checkpoint_module.torch, 'save', broken_save)
    with pytest.raises(raised):
        atomic_save({'epoch': 2, 'weight': torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.pth']  # no temporary file left


@pytest.mark.parametrize('error, reason', [
    (OSError(errno.ENOSPC, 'No space left on device'), 'No space left'),
    # torch.save reports a failed write of its stream as a RuntimeError, not an OSError
    (RuntimeError('[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\nPytorchStreamWriter failed '
                  'writing file data/0: file write failed'), 'file write failed')])
def test_full_disk_at_a_checkpoint_then_restart(reference, tiny_demo, tmp_path, monkeypatch, capsys, train, error,
                                                reason):
    """A full disk while writing epoch 2's checkpoint: one line, epoch 1's checkpoint intact,
    metrics.jsonl without epoch 2 (the checkpoint does not hold it), exact resume."""
    real_save, calls = torch.save, [0]

    def save(obj, handle, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:  # epoch-0, epoch-1, then epoch 2's checkpoint
            handle.write(b'partial')
            raise error
        return real_save(obj, handle, *args, **kwargs)
    monkeypatch.setattr(checkpoint_module.torch, 'save', save)
    assert train(tiny_demo, tmp_path, 'run', *EXACT) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and 'checkpoint.pth' in lines[0] and reason in lines[0] and '--restart' in lines[0]
    run = tmp_path / 'run'
    assert torch.load(run / 'checkpoint.pth', weights_only=True)['epoch'] == 1
    assert [r['epoch'] for r in run_records(run) if r['stage'] == 'train'] == [1]
    assert not list(run.glob('.*.tmp'))
    monkeypatch.setattr(checkpoint_module.torch, 'save', real_save)
    assert train(tiny_demo, tmp_path, 'run', *EXACT, '--restart') == 0
    _assert_same_outcome(run, reference)


def test_keep_checkpoints_keeps_the_last_n(tiny_demo, tmp_path, train):
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '3', '--keep_checkpoints', '2') == 0
    run = tmp_path / 'run'
    assert sorted(p.name for p in run.glob('checkpoint_epoch*.pth')) == ['checkpoint_epoch2.pth',
                                                                          'checkpoint_epoch3.pth']
    for epoch in (2, 3):
        assert torch.load(run / f'checkpoint_epoch{epoch}.pth', weights_only=True)['epoch'] == epoch


# -- 3. SIGTERM and SIGINT ---------------------------------------------------------------------------
def test_sigterm_finishes_the_step_keeps_the_checkpoint_and_says_how_to_resume(reference, tiny_demo, tmp_path, train):
    done = _run_until_signal(tiny_demo, tmp_path, 'run', 'TERM@bar:epoch 1 train:1', *EXACT)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert 'stopped by SIGTERM in epoch 2 of 2 (training)' in done.stderr
    assert 'checkpoint after epoch 1' in done.stderr and 'epoch 2 will be redone' in done.stderr
    resume = [line for line in done.stderr.splitlines() if line.startswith('resume with: ')]
    assert len(resume) == 1 and resume[0].endswith('--restart') and '--run_name run' in resume[0]
    assert 'Traceback' not in done.stderr
    run = tmp_path / 'run'
    assert torch.load(run / 'checkpoint.pth', weights_only=True)['epoch'] == 1
    assert train(tiny_demo, tmp_path, 'run', *EXACT, '--restart') == 0
    _assert_same_outcome(run, reference)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_process_group_with_workers(reference, tiny_demo, tmp_path, signum, train, worker_core):
    """The signal reaches the DataLoader workers too (Ctrl-C in a terminal, a scheduler's SIGTERM
    to the job): workers ignore SIGINT, and workers killed by SIGTERM do not turn the stop into a
    worker error; the resumed run (also with workers) matches the reference."""
    flags = [*EXACT, '--num_workers', '2']
    name = signal.Signals(signum).name
    done = _run_until_signal(tiny_demo, tmp_path, 'run', f'{name[3:]}-GROUP@bar:epoch 0 cluster:1', *flags)
    assert done.returncode == 128 + signum, done.stderr[-2000:]
    assert f'stopped by {name} in epoch 1 of 2 (clustering and labelling)' in done.stderr
    assert 'checkpoint after epoch 0' in done.stderr and 'Traceback' not in done.stderr
    assert train(tiny_demo, tmp_path, 'run', *flags, '--restart') == 0
    _assert_same_outcome(tmp_path / 'run', reference)


# -- 4. non-finite loss --------------------------------------------------------------------------------
def _nan_loss_at(call_number):
    class NaNLoss(PiCIELoss):
        calls = 0

        def forward(self, *args, **kwargs):
            loss, parts = super().forward(*args, **kwargs)
            NaNLoss.calls += 1
            return (loss * float('nan'), parts) if NaNLoss.calls == call_number else (loss, parts)
    return NaNLoss


def test_nonfinite_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tiny_demo, tmp_path, monkeypatch, capsys,
                                                                           train):
    monkeypatch.setattr(objectives_module, 'PiCIELoss', _nan_loss_at(4))  # epoch 2, step 1 (3 steps per epoch)
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '2') == 3
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    for fragment in ('non-finite loss (nan) in epoch 2, training step 1 of 3', 'checkpoint after epoch 1',
                     '--lr', 'bf16', '--skip_nonfinite'):
        assert fragment in lines[0], lines[0]
    run = tmp_path / 'run'
    assert torch.load(run / 'checkpoint.pth', weights_only=True)['epoch'] == 1
    assert not (run / 'final_metrics.json').exists()


def test_diverged_weights_stop_before_clustering_also_on_restart(tiny_run_copy, tiny_demo, capsys, train):
    """Weights that diverged without a non-finite loss give non-finite features: the next epoch's
    clustering (faiss, the CPU default) stops with exit 3 and one line, not faiss's traceback, and
    a --restart from that checkpoint says the same."""
    path = tiny_run_copy / 'checkpoint.pth'
    ckpt = torch.load(path, weights_only=True)
    ckpt['model'] = {k: v * float('inf') if v.is_floating_point() else v for k, v in ckpt['model'].items()}
    torch.save(ckpt, path)
    for _ in range(2):
        assert train(tiny_demo, tiny_run_copy.parent, tiny_run_copy.name, *TINY_RUN_FLAGS, '--num_epoch', '3',
                     '--restart') == 3
        err = capsys.readouterr().err
        lines = error_lines(err)
        assert len(lines) == 1 and 'non-finite features' in lines[0] and '--lr' in lines[0], err[-2000:]
        assert 'Traceback' not in err
    assert torch.load(path, weights_only=True)['epoch'] == 2


def test_skip_nonfinite_skips_and_counts(tiny_demo, tmp_path, monkeypatch, train):
    monkeypatch.setattr(objectives_module, 'PiCIELoss', _nan_loss_at(4))
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '2', '--skip_nonfinite') == 0
    records = run_records(tmp_path / 'run')
    assert [(r['n_steps'], r['n_nonfinite_steps']) for r in records] == [(3, 0), (2, 1)]
    assert all(math.isfinite(r['loss']) for r in records)
    assert json.loads((tmp_path / 'run' / 'final_metrics.json').read_text())['n_nonfinite_steps'] == 1


# -- 5. unreadable data --------------------------------------------------------------------------------
def _break_train_images(root):
    """A truncated JPEG, a zero-byte file and a corrupt PNG (under the .jpg name the list expects)."""
    folder = root / 'images' / 'train2017'
    ids = curated_ids(root, 'train2017')
    truncated, empty, bad_png = (folder / f'{i}.jpg' for i in ids[:3])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    empty.write_bytes(b'')
    png = Image.new('RGB', (40, 30), (10, 200, 30))
    png.save(bad_png, format='PNG')
    data = bytearray(bad_png.read_bytes())
    data[60:] = b'\0' * (len(data) - 60)  # header intact, compressed data destroyed
    bad_png.write_bytes(bytes(data))
    return sorted(str(p) for p in (truncated, empty, bad_png))


def test_unreadable_training_images_are_skipped_named_and_counted(tiny_demo, tmp_path, capsys, train):
    root = copy_demo(tiny_demo, tmp_path)
    bad = _break_train_images(root)
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1', '--max_bad_fraction', '0.3') == 0
    err = capsys.readouterr().err  # warnings go to stderr, each on its own line
    for path in bad:
        assert f'warning: skipping unreadable training image {path}' in err
    record = run_records(tmp_path / 'run')[-1]
    assert record['n_bad_images'] == 3 and record['bad_images'] == bad
    assert record['n_steps'] == 3  # 9 readable images in batches of 4: 4 + 4 + 1 (per the sampler's order)
    final = json.loads((tmp_path / 'run' / 'final_metrics.json').read_text())
    assert final['n_unreadable_train_images'] == 3 and final['unreadable_train_images'] == bad


def test_too_many_unreadable_training_images_stop_the_run(tiny_demo, tmp_path, capsys, train):
    root = copy_demo(tiny_demo, tmp_path)
    bad = _break_train_images(root)
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1') == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and 'of 12 training images' in lines[0] and '--max_bad_fraction' in lines[0]
    assert any(path in lines[0] for path in bad)
    # Found by the image check before the run starts: nothing is written.
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('cache_gb', ['2', '0'])
def test_image_unreadable_only_in_the_clustering_pass_is_not_trained_on(tiny_demo, tmp_path, monkeypatch, cache_gb,
                                                                         train):
    """An image that fails in the clustering (and labelling) pass has no labels this epoch;
    training skips it even when it reads fine again (cached views or a fresh read alike)."""
    real_getitem, failed = TrainImages.__getitem__, []
    n_failing_reads = 1 if cache_gb != '0' else 2  # without the cache, labelling reads the images again

    def flaky(self, index):
        if index == 0 and len(failed) < n_failing_reads:
            failed.append(index)
            return index, None
        return real_getitem(self, index)
    trained = []

    class CountingLoss(PiCIELoss):
        def forward(self, feats_view1, *args, **kwargs):
            trained.append(feats_view1.shape[0])
            return super().forward(feats_view1, *args, **kwargs)
    monkeypatch.setattr(TrainImages, '__getitem__', flaky)
    monkeypatch.setattr(objectives_module, 'PiCIELoss', CountingLoss)  # PiCIEObjective builds its loss from here
    flags = [*BASE, '--num_epoch', '1', '--max_bad_fraction', '0.2', '--calibrate_bn', '0',
             '--feature_cache_gb', cache_gb]
    assert train(tiny_demo, tmp_path, 'run', *flags) == 0
    assert sum(trained) == 11
    assert run_records(tmp_path / 'run')[-1]['n_bad_images'] == 1


def test_zero_byte_evaluation_image_is_an_error_before_training(tiny_demo, tmp_path, capsys, train):
    root = copy_demo(tiny_demo, tmp_path)
    path = root / 'images' / 'val2017' / f"{curated_ids(root, 'val2017')[0]}.jpg"
    path.write_bytes(b'')
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1') == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f'unreadable evaluation image {path}' in lines[0]
    assert not (tmp_path / 'run' / 'checkpoint.pth').exists()


def test_truncated_evaluation_image_in_a_worker_is_one_clear_line(tiny_demo, tmp_path, capsys, train, worker_core):
    root = copy_demo(tiny_demo, tmp_path)
    path = root / 'images' / 'val2017' / f"{curated_ids(root, 'val2017')[2]}.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1', '--num_workers', '2') == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f'error: unreadable evaluation image {path}'), err
    assert 'Caught' not in err and 'Traceback' not in err
    assert torch.load(tmp_path / 'run' / 'checkpoint.pth', weights_only=True)['epoch'] == 0  # kept


def test_worker_error_message_is_unwrapped():
    wrapped = DataError('Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call '
                        'last):\n  File "x.py", line 1, in f\ndata.validation.DataError: unreadable evaluation image '
                        '/d/a.jpg (OSError: truncated); re-download or remove it from the list\n')
    assert loaders_module.worker_error_message(wrapped) == (
        'unreadable evaluation image /d/a.jpg (OSError: truncated); re-download or remove it from the list')
    assert loaders_module.worker_error_message(DataError('plain')) == 'plain'


# -- 6. malformed label maps ---------------------------------------------------------------------------
def _label_path(root, n=0):
    return root / 'annotations' / 'val2017' / f"{curated_ids(root, 'val2017')[n]}.png"


def _resize_label(path):
    label = Image.open(path)
    label.resize((label.size[0] + 7, label.size[1] - 5), Image.NEAREST).save(path)


def _undefined_values(path):
    raw = np.array(Image.open(path))
    raw[:10, :10] = 200  # no COCO-Stuff fine class
    Image.fromarray(raw, 'L').save(path)


@pytest.mark.parametrize('damage,fragment', [(_resize_label, '--bad_labels fix'),
                                             (_undefined_values, 'outside 0..181 and 255 (200)')])
def test_malformed_label_map_is_an_error_naming_it_before_training(tiny_demo, tmp_path, capsys, damage, fragment,
                                                                    train):
    root = copy_demo(tiny_demo, tmp_path)
    path = _label_path(root, 1)
    damage(path)
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1') == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f'label map {path}' in lines[0] and fragment in lines[0], lines
    assert not (tmp_path / 'run' / 'checkpoint.pth').exists()  # stopped before any training


def test_bad_labels_fix_resizes_and_ignores_and_counts(tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    resized, undefined = _label_path(root, 1), _label_path(root, 2)
    _resize_label(resized)
    _undefined_values(undefined)
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1', '--bad_labels', 'fix') == 0
    report = json.loads((tmp_path / 'run' / 'final_metrics.json').read_text())['label_maps']
    assert report['n_labels_resized'] == 1 and report['n_labels_bad_values'] == 1
    assert sorted(report['fixed_label_maps']) == sorted([str(resized), str(undefined)])


@pytest.mark.parametrize('policy', ['fix', 'resize'])
def test_undefined_label_values_become_ignore_with_fix(tmp_path, policy):
    image, label = tmp_path / 'a.jpg', tmp_path / 'a.png'
    Image.new('RGB', (64, 64), (90, 90, 90)).save(image)
    raw = np.full((64, 64), 150, dtype=np.uint8)
    raw[:, :32] = 200
    Image.fromarray(raw, 'L').save(label)
    lut = np.full(256, -1, dtype=np.int16)
    lut[150] = 3
    lut[200] = 4  # a table entry for an undefined value must not let it through
    valid = np.zeros(256, dtype=bool)
    valid[:182] = valid[255] = True
    _, _, mapped = EvalImages([image], 32, [label], lut, label_policy=policy, label_valid=valid)[0]
    assert set(mapped[:, :16].unique().tolist()) == {-1} and set(mapped[:, 16:].unique().tolist()) == {3}
    with pytest.raises(DataError, match=str(label)):
        EvalImages([image], 32, [label], lut, label_policy='error', label_valid=valid)[0]


# -- 7. odd image modes and sizes ----------------------------------------------------------------------
def _png_rgb16(path, width, height):
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib
    rows = b''.join(b'\0' + np.full((width, 3), 40000, dtype='>u2').tobytes() for _ in range(height))

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 2, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def _odd_image(path, kind, width, height):
    if kind == 'RGB16':
        _png_rgb16(path, width, height)
        return
    fmt = {'CMYK': 'JPEG', 'I': 'TIFF', 'F': 'TIFF'}.get(kind, 'PNG')
    if kind == 'I;16':
        image = Image.fromarray(np.full((height, width), 50000, dtype=np.uint16))
    elif kind == 'P-transparent':
        image = Image.new('P', (width, height), 3)
        image.info['transparency'] = 3
    else:
        image = Image.new(kind, (width, height))
    image.save(path, format=fmt)


ODD = [('L', 5, 3), ('LA', 3, 5), ('1', 7, 7), ('P', 9, 4), ('P-transparent', 6, 6), ('CMYK', 16, 12),
       ('I;16', 8, 8), ('RGB16', 5, 3), ('RGBA', 1, 1), ('I', 4, 9), ('F', 9, 4), ('RGB', 1000, 2),
       ('RGB', 2, 1000), ('RGBA', 640, 48)]


@pytest.mark.parametrize('kind,width,height', ODD)
def test_odd_modes_and_sizes_load_at_the_crop_size(tmp_path, kind, width, height):
    path, label = tmp_path / 'odd.img', tmp_path / 'odd.png'
    _odd_image(path, kind, width, height)
    Image.fromarray(np.full((height, width), 150, dtype=np.uint8), 'L').save(label)
    index, image = TrainImages([path], 128)[0]
    assert image is not None and image.shape == (3, 128, 128) and image.dtype == torch.uint8
    lut = np.full(256, -1, dtype=np.int16)
    lut[150] = 1
    _, image, mapped = EvalImages([path], 64, [label], lut)[0]
    assert image.shape == (3, 64, 64) and mapped.shape == (64, 64) and set(mapped.unique().tolist()) == {1}


def test_training_on_odd_images_end_to_end(tiny_demo, tmp_path, train):
    """Every kind of ODD image, trained on (train2017) or scored with its label map (val2017)."""
    root = copy_demo(tiny_demo, tmp_path)
    train_ids = curated_ids(root, 'train2017')
    places = [('train2017', i) for i in train_ids] + [('val2017', i) for i in curated_ids(root, 'val2017')]
    kinds = [*ODD, ('RGBA', 5, 3)]
    for (split, image_id), (kind, width, height) in zip(places[:len(kinds)], kinds, strict=True):
        _odd_image(root / 'images' / split / f'{image_id}.jpg', kind, width, height)
        if split == 'val2017':
            Image.fromarray(np.full((height, width), 150, dtype=np.uint8), 'L').save(
                root / 'annotations' / split / f'{image_id}.png')
    assert len(train_ids) < len(kinds)  # some kinds reach the evaluation
    assert train(root, tmp_path, 'run', *BASE, '--num_epoch', '1') == 0
    assert run_records(tmp_path / 'run')[-1]['n_bad_images'] == 0


# -- 8. save location --------------------------------------------------------------------------------------
def test_full_save_location_is_detected_before_training(tiny_demo, tmp_path, monkeypatch, capsys, train):
    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(run_module.shutil, 'disk_usage', lambda path: usage(10 * 2 ** 30, 10 * 2 ** 30, 50 * 2 ** 20))
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '1') == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(tmp_path / 'run') in lines[0]
    assert '50 MB free' in lines[0] and '--save_root' in lines[0]
    assert not (tmp_path / 'run').exists()  # nothing written


def test_restart_keeps_the_existing_run_untouched_until_it_resumes(tiny_demo, tmp_path, train):
    """A finished run restarted for more epochs: the earlier lines of metrics.jsonl are kept as they were."""
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '1') == 0
    before = (tmp_path / 'run' / 'metrics.jsonl').read_text()
    digest = hashlib.sha256(before.encode()).hexdigest()
    assert train(tiny_demo, tmp_path, 'run', *BASE, '--num_epoch', '2', '--restart') == 0
    after = (tmp_path / 'run' / 'metrics.jsonl').read_text()
    assert hashlib.sha256(after[: len(before)].encode()).hexdigest() == digest
    assert [r['epoch'] for r in run_records(tmp_path / 'run')] == [1, 2]


# -- 9. k-means with empty clusters ------------------------------------------------------------------------
@pytest.mark.parametrize('backend', ['faiss', 'torch'])
def test_more_clusters_than_distinct_features(tmp_path, backend, capsys, train):
    """K_train 40 on two images of one colour: empty clusters are re-seeded or left empty and
    logged; centroids, losses and metrics stay finite."""
    root = tmp_path / 'uniform'
    for split, ids in (('train2017', ['000000000001', '000000000002']), ('val2017', ['000000000003'])):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        (root / 'curated' / split).mkdir(parents=True)
        (root / 'curated' / split / 'Coco164kFull_Stuff_Coarse_7.txt').write_text('\n'.join(ids) + '\n')
        for image_id in ids:
            Image.new('RGB', (96, 80), (120, 60, 30)).save(root / 'images' / split / f'{image_id}.jpg')
            Image.new('L', (96, 80), 150).save(root / 'annotations' / split / f'{image_id}.png')
    flags = [*TINY_FLAGS, '--stuff', '--K_train', '40', '--K_test', '40', '--num_epoch', '2',
             '--kmeans_backend', backend]
    assert train(root, tmp_path, 'run', *flags) == 0
    out = capsys.readouterr().out
    assert 're-seeded' in out or 'clusters are empty' in out
    records = run_records(tmp_path / 'run')
    assert all(math.isfinite(r['loss']) and math.isfinite(r['view1']['acc']) for r in records)
    ckpt = torch.load(tmp_path / 'run' / 'checkpoint.pth', weights_only=True)
    assert torch.isfinite(ckpt['classifiers']['view1']['weight']).all()
    final = json.loads((tmp_path / 'run' / 'final_metrics.json').read_text())
    assert math.isfinite(final['acc']) and math.isfinite(final['mIoU'])


def test_deterministic_weighted_cross_entropy_equals_the_fused_one():
    """--deterministic forms the weighted CE from per-pixel losses (CUDA's fused weighted loss has
    no deterministic kernel); value and gradient are those of F.cross_entropy(weight=...)."""
    from modules.loss import weighted_cross_entropy
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 7), generator=generator)
    weight = torch.rand(5, generator=generator, dtype=torch.float64)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        value = weighted_cross_entropy(logits, labels, weight)
        (grad,) = torch.autograd.grad(value, logits)
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    assert torch.allclose(value, expected, atol=1e-12) and torch.allclose(grad, expected_grad, atol=1e-12)
