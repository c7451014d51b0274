"""Shared pytest fixtures for the PiCIE toolkit tests (shared constants and plain functions: helpers.py).

Training runs are the suite's cost: a test that only reads what a run wrote uses a session-scoped
run (`tiny_run`) instead of training its own, and every test that trains goes through `train`.
"""
import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers import (
    FIXTURES,
    REPO_ROOT,
    SHARED_DATA,
    TINY_FLAGS,
    TINY_RUN_FLAGS,
    made_once,
    original_format_checkpoint,
    run_script,
)


def pytest_configure(config):
    """Under pytest-xdist (`make test`), each process gets its share of the CPUs for torch's threads:
    two processes on 2 cores with 2 threads each would fight over the cores."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 0))
    if workers:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        # The scripts the tests start inherit it: a deterministic run's numbers depend on the thread
        # count, and the exact-resume tests compare runs made in this process and in scripts.
        os.environ['OMP_NUM_THREADS'] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture
def worker_core():
    """For tests of DataLoader workers: on the CPU a run only starts workers on the cores torch's
    threads leave free (utils/loaders.py: usable_workers). Under `make test` each process has fewer
    threads than the machine has cores; a single pytest process using every core skips the test
    rather than pass it without workers."""
    from utils.loaders import usable_workers
    if usable_workers(1, torch.device('cpu')) == 0:
        pytest.skip('no CPU left for a DataLoader worker beside torch\'s threads: run under make test '
                    '(or with OMP_NUM_THREADS=1)')


@pytest.fixture(scope='session')
def shared_data_if_present():
    """Path of ../shared/data (read-only real data) where it is beside the clone, else None: every
    test runs on the repository's fixtures; the shared data only adds checks where it is present."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory) -> Path:
    """A 12 + 6 image demo dataset (the built-in generator), shared by the tests of a session."""
    from tools.make_demo import generate_demo
    def make(folder):
        generate_demo(folder / 'demo', n_train=12, n_val=6, seed=0)
    folder, _ = made_once(tmp_path_factory, 'demo', make)
    return folder / 'demo'


@pytest.fixture(scope='session')
def coco_mini(tmp_path_factory) -> Path:
    """A real COCO-Stuff root with both splits, built from the 8 val fixtures: val2017 = the 8 pairs
    (curated list: all 8), train2017 = the same images and labels (curated list: the first 5, so
    --fullcoco reads 8), the repository's fine_to_coarse_dict.pickle."""
    root = tmp_path_factory.mktemp('coco_mini')
    fixture = FIXTURES / 'cocostuff'
    ids = (fixture / 'curated' / 'val2017' / 'Coco164kFull_Stuff_Coarse_7.txt').read_text().split()
    for split, listed in (('val2017', ids), ('train2017', ids[:5])):
        for sub in ('images', 'annotations'):
            shutil.copytree(fixture / sub / 'val2017', root / sub / split)
        (root / 'curated' / split).mkdir(parents=True)
        (root / 'curated' / split / 'Coco164kFull_Stuff_Coarse_7.txt').write_text(''.join(f'{i}\n' for i in listed))
    shutil.copy(REPO_ROOT / 'fine_to_coarse_dict.pickle', root / 'fine_to_coarse_dict.pickle')
    return root


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op thread for a module of small-tensor tests (threads only add synchronisation cost)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def coco_val_root() -> Path:
    """A COCO-Stuff root holding only the val split: the 8 real val pairs of tests/fixtures."""
    return FIXTURES / 'cocostuff'


@pytest.fixture(scope='session')
def train():
    """train(data_root, save_root, run_name, *flags, entry=train_picie.cli) -> exit code: a training
    run in this process with the tiny preset (`flags` win over it). data_root / save_root / run_name
    may be None to leave that flag out (e.g. to test a missing one); the run folder is
    save_root / run_name."""
    import train_picie

    def run(data_root, save_root, run_name, *flags, entry=None):
        argv = list(TINY_FLAGS)
        for flag, value in (('--data_root', data_root), ('--save_root', save_root), ('--run_name', run_name)):
            if value is not None:
                argv += [flag, str(value)]
        return (entry or train_picie.cli)([*argv, *map(str, flags)])
    return run


@pytest.fixture(scope='session')
def tiny_run(tiny_demo, tmp_path_factory, train) -> Path:
    """A finished two-epoch tiny run on `tiny_demo` (TINY_RUN_FLAGS), trained once per session for the
    many tests that only read a run's outputs (metrics, checkpoint, logs). Do not write into it:
    copy it with `tiny_run_copy` first."""
    def make(save_root):
        assert train(tiny_demo, save_root, 'tiny', *TINY_RUN_FLAGS) == 0
    save_root, _ = made_once(tmp_path_factory, 'tiny_run', make)
    return save_root / 'tiny'


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the shared run (same folder name), for a test that resumes or changes it."""
    return Path(shutil.copytree(tiny_run, tmp_path / 'runs' / tiny_run.name))


@pytest.fixture(scope='session')
def tiny_ablation(tiny_demo, tmp_path_factory):
    """(root, stdout) of sh_files/ablate_transforms.sh with TINY=1 over the combinations 'none' and
    'jitter+random_crop' (runs in root/runs/<combination>, with TensorBoard logs where tensorboard is
    installed), shared by the tests of the script, tools/visualize.py, tools/invariance.py and TensorBoard."""
    extra = ['--tensorboard'] if importlib.util.find_spec('tensorboard') is not None else []

    def make(root):
        done = run_script('ablate_transforms.sh', {'TINY': 1, 'DATA_ROOT': tiny_demo, 'SAVE_ROOT': root / 'runs',
                                                   'REPORT_DIR': root / 'report', 'COMBOS': 'none jitter+random_crop'},
                          *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    return made_once(tmp_path_factory, 'ablation', make)


@pytest.fixture(scope='session')
def original_checkpoints(tmp_path_factory):
    """original_checkpoints(seed) -> path of helpers.original_format_checkpoint(seed) for seed 0 or 7
    (those test_reference.py has the original code's scores for): ResNet-18 checkpoints in the
    original's format, 45 MB each, written once per session and only read by tests."""
    def make(folder):
        for seed in (0, 7):
            original_format_checkpoint(folder / f'seed{seed}.pth', seed)
    folder, _ = made_once(tmp_path_factory, 'original_checkpoints', make)
    return lambda seed: folder / f'seed{seed}.pth'


@pytest.fixture
def local_network_only(monkeypatch):
    """utils/fetch.py may open only addresses on 127.0.0.1 (the tests' own servers): a download that
    would leave the machine fails the test instead."""
    from urllib.parse import urlparse

    from utils import fetch
    real = fetch.urlopen

    def guarded(request, *args, **kwargs):
        assert urlparse(request.full_url).hostname == '127.0.0.1', f'a test reached {request.full_url}'
        return real(request, *args, **kwargs)
    monkeypatch.setattr(fetch, 'urlopen', guarded)
