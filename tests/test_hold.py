"""One run at a time per run folder or output (utils/hold.py): a second run into a held folder stops
with one line naming the holder and changes nothing; the hold ends with its process, kill -9
included. A first run is paused at an exact point (tests/_killpoint.py WAIT) while the second
one is tried, so nothing depends on timing."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import predict
import test_picie
import train_picie
from helpers import REPO_ROOT, TINY_FLAGS, error_lines, file_hashes, run_records
from utils.hold import HeldError, Hold, lock_file

KILLPOINT = REPO_ROOT / 'tests' / '_killpoint.py'


def _argv(data_root, save_root, *flags):
    return [*TINY_FLAGS, '--data_root', str(data_root), '--save_root', str(save_root), '--run_name', 'run', *flags]


def _start(point, argv, gate=None):
    env = dict(os.environ, KILLPOINT_GATE=str(gate)) if gate else None
    return subprocess.Popen([sys.executable, str(KILLPOINT), point, *argv], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_until_paused(process, gate, timeout=300):
    """Until the first run has reached its WAIT point (tests/_killpoint.py creates <gate>.paused)."""
    paused = gate.with_name(gate.name + '.paused')
    deadline = time.monotonic() + timeout
    while not paused.exists():
        if process.poll() is not None:
            pytest.fail(f'the first run ended ({process.returncode}) before its pause: {process.stderr.read()[-2000:]}')
        if time.monotonic() > deadline:
            pytest.fail('the first run did not reach its pause')
        time.sleep(0.05)


def test_a_second_run_into_a_held_folder_stops_and_the_first_finishes(tiny_demo, tmp_path, capsys):
    gate = tmp_path / 'gate'
    # Paused in its initial evaluation: the folder exists, no checkpoint yet (the checkpoint check cannot refuse).
    first = _start('WAIT@bar:init k-means:1', _argv(tiny_demo, tmp_path, '--eval_init'), gate)
    try:
        _wait_until_paused(first, gate)
        run = tmp_path / 'run'
        assert f'pid {first.pid} ' in lock_file(run).read_text()  # the holder's details, for the message
        assert not (run / 'checkpoint.pth').exists()
        before = file_hashes(run)
        for flags in ([], ['--restart'], ['--overwrite']):
            started = time.monotonic()
            assert train_picie.cli(_argv(tiny_demo, tmp_path, '--eval_init', *flags)) == 2
            errors = error_lines(capsys.readouterr().err)
            assert len(errors) == 1, errors
            assert f'{run} is in use by another run: pid {first.pid} on {socket.gethostname()}, started' in errors[0]
            assert "_killpoint.py 'WAIT@bar:init" in errors[0]  # the holder's command
            assert time.monotonic() - started < 30  # refused before any work
        assert file_hashes(run) == before  # the refused runs changed nothing
        gate.touch()
        out, err = first.communicate(timeout=600)
    finally:
        gate.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    records = run_records(run)
    assert [(r['stage'], r['epoch']) for r in records] == [('init', 0), ('init_bn', 0), ('train', 1)]
    assert 'in use' not in (run / 'train.log').read_text()
    assert not lock_file(run).exists()  # the hold ended with the run


def test_a_run_killed_with_sigkill_leaves_no_hold(tiny_demo, tmp_path, worker_core):
    """Killed while its DataLoader workers run: they outlive it by seconds, and must not keep the hold."""
    first = _start('KILL@bar:epoch 0 train:1', _argv(tiny_demo, tmp_path, '--num_workers', '2'))
    first.communicate(timeout=600)
    assert first.returncode == -signal.SIGKILL
    lock = lock_file(tmp_path / 'run')
    assert f'pid {first.pid} ' in lock.read_text()  # its lock file is left, but no longer locked
    assert train_picie.cli(_argv(tiny_demo, tmp_path, '--restart')) == 0
    records = run_records(tmp_path / 'run')
    assert [r['epoch'] for r in records] == [1]
    assert not lock.exists()


def test_a_failed_start_leaves_no_folder_and_no_lock_file(tmp_path, capsys):
    save_root = tmp_path / 'results' / 'deeper'
    assert train_picie.cli(_argv(tmp_path / 'nowhere', save_root)) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1
    assert not (tmp_path / 'results').exists()  # the folders made for the lock file are removed with it


def test_predict_and_test_picie_hold_what_they_write(tmp_path, capsys):
    """Held by another run (here: this process through a second descriptor, which flock treats alike)."""
    output = tmp_path / 'maps'
    with Hold(output, '--output'):
        assert predict.cli(['--eval_path', str(tmp_path / 'none.pth'), '--input', str(tmp_path),
                            '--output', str(output)]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and f'{output} is in use by another run: pid {os.getpid()}' in errors[0]
    assert '--output' in errors[0] and not output.exists()
    with Hold(tmp_path / 'metrics' / 'test_metrics.json', '--save_root'):
        assert test_picie.cli(['--eval_path', str(tmp_path / 'none.pth'), '--save_root',
                               str(tmp_path / 'metrics')]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and 'test_metrics.json is in use by another run' in errors[0]
    assert not (tmp_path / 'metrics').exists()


def test_hold_is_exclusive_and_released(tmp_path):
    target = tmp_path / 'a' / 'run'
    with Hold(target, '--run_name') as held:
        assert held.held and lock_file(target).is_file()
        with pytest.raises(HeldError, match='choose another --run_name'):
            Hold(target, '--run_name').acquire()
        assert Hold(target, '--run_name', enabled=False).__enter__().held is False  # DDP ranks other than 0
    assert not (tmp_path / 'a').exists()
    with Hold(target, '--run_name'):  # free again
        pass
