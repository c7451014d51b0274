"""Shared pytest fixtures for the PiCIE toolkit tests."""

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Read-only real data beside the repository: <repo>/../shared/data.
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """Path of ../shared/data (read-only real data); skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'shared data folder not found: {SHARED_DATA}')
    return SHARED_DATA


#: A tiny, fast training run (CPU, fp32, low resolution, 1 epoch): train_picie.py's --preset tiny.
TINY_FLAGS = ['--preset', 'tiny']


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


def write_checkpoint(path: Path, model, classifiers: dict, eval_config: dict = None, epoch: int = 1) -> Path:
    """Save `model` as a toolkit checkpoint with the given classifiers ({name: centroids [K, C]})."""
    from utils.checkpoint import checkpoint_state
    optimizer = torch.optim.Adam(model.parameters())
    torch.save(checkpoint_state(model.config.to_dict(), model.state_dict(), optimizer.state_dict(), epoch,
                                {'seed': 1}, classifiers, eval_config or {}), path)
    return path
