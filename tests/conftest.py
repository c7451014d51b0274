"""Shared pytest fixtures for the PiCIE toolkit tests."""

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# Make the repo's packages (data, tools, ...) importable when pytest is started as `pytest`
# rather than `python -m pytest` from the repo root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Read-only real data beside the repository: <repo>/../shared/data.
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """Path of ../shared/data (read-only real data); skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'shared data folder not found: {SHARED_DATA}')
    return SHARED_DATA


#: Flags of a tiny, fast training run (CPU, fp32, low resolution) used by end-to-end tests.
TINY_FLAGS = ['--res', '64', '--res1', '64', '--res2', '128', '--batch_size_cluster', '8',
              '--batch_size_train', '4', '--batch_size_test', '8', '--num_init_batches', '1',
              '--kmeans_n_iter', '5', '--num_workers', '0', '--device', 'cpu', '--precision', 'fp32',
              '--augment', '--jitter', '--grey', '--blur', '--equiv', '--random_crop', '--h_flip']


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory) -> Path:
    """A 12 + 6 image demo dataset (the built-in generator), shared by the tests of a session."""
    from data.make_demo import generate_demo
    return generate_demo(tmp_path_factory.mktemp('demo') / 'demo', n_train=12, n_val=6, seed=0)


@pytest.fixture(scope='session')
def coco_mini(shared_data) -> Path:
    """The real COCO-Stuff sample in ../shared/data (skips where it is absent)."""
    root = shared_data / 'cocostuff_mini'
    if not (root / 'images').is_dir():
        pytest.skip(f'real COCO-Stuff sample not found: {root}')
    return root


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op thread for a module of small-tensor tests (threads only add synchronisation cost)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
