"""Shared pytest fixtures for the PiCIE toolkit tests."""

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Real-data fixtures in the repository (8 COCO val pairs, one Cityscapes val pair; tests/fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / 'fixtures'

#: Read-only real data beside the repository: <repo>/../shared/data.
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data_if_present():
    """Path of ../shared/data (read-only real data) where it is beside the clone, else None: every
    test runs on the repository's fixtures; the shared data only adds checks where it is present."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


#: A tiny, fast training run (CPU, fp32, low resolution, 1 epoch): train_picie.py's --preset tiny.
TINY_FLAGS = ['--preset', 'tiny']


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory) -> Path:
    """A 12 + 6 image demo dataset (the built-in generator), shared by the tests of a session."""
    from tools.make_demo import generate_demo
    return generate_demo(tmp_path_factory.mktemp('demo') / 'demo', n_train=12, n_val=6, seed=0)


@pytest.fixture(scope='session')
def coco_mini(tmp_path_factory) -> Path:
    """A real COCO-Stuff root with both splits, built from the 8 val fixtures: val2017 = the 8 pairs
    (curated list: all 8), train2017 = the same images and labels (curated list: the first 5, so
    --fullcoco reads 8), the repository's fine_to_coarse_dict.pickle."""
    import shutil
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


def write_checkpoint(path: Path, model, classifiers: dict, eval_config: dict = None, epoch: int = 1) -> Path:
    """Save `model` as a toolkit checkpoint with the given classifiers ({name: centroids [K, C]})."""
    from utils.checkpoint import checkpoint_state
    optimizer = torch.optim.Adam(model.parameters())
    torch.save(checkpoint_state(model.config.to_dict(), model.state_dict(), optimizer.state_dict(), epoch,
                                {'seed': 1}, classifiers, eval_config or {}), path)
    return path


@pytest.fixture(scope='session')
def coco_val_root() -> Path:
    """A COCO-Stuff root holding only the val split: the 8 real val pairs of tests/fixtures."""
    return FIXTURES / 'cocostuff'


def original_format_checkpoint(path: Path, seed: int, arch: str = 'resnet18', n_clusters: int = 27) -> Path:
    """A checkpoint in the original project's on-disk format with seeded random weights, drawn by
    the rule of the reference checkpoints whose original-code scores tests/fixtures/README.md gives:
    tensors in the original state dict's order (DataParallel 'module.' names; the original's
    decoder.layer<5-i> is this toolkit's lateral<i>, same order), from one generator seeded with
    `seed` (classifier 1: seed + 1, classifier 2: seed + 2): num_batches_tracked 0, running_var
    0.5 + U[0, 1), running_mean 0.1 N, BatchNorm weights 1 + 0.1 N, other vectors 0.05 N, conv
    weights N * sqrt(2 / fan_in); no 'args'."""
    from modules.networks import build_model

    def draw(shapes, generator_seed):
        generator = torch.Generator().manual_seed(generator_seed)
        out = {}
        for name, shape in shapes:
            if name.endswith('num_batches_tracked'):
                out[name] = torch.tensor(0)
            elif name.endswith('running_var'):
                out[name] = 0.5 + torch.rand(shape, generator=generator)
            elif name.endswith('running_mean'):
                out[name] = 0.1 * torch.randn(shape, generator=generator)
            elif len(shape) == 1 and ('bn' in name or 'downsample.1' in name) and name.endswith('weight'):
                out[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
            elif len(shape) == 1:
                out[name] = 0.05 * torch.randn(shape, generator=generator)
            else:
                fan_in = int(torch.tensor(shape[1:]).prod())
                out[name] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        return out

    model = build_model(arch)
    shapes = []
    for key, value in model.state_dict().items():
        if key.startswith('decoder.lateral'):
            key = f'decoder.layer{5 - int(key[len("decoder.lateral")])}' + key[len('decoder.lateralN'):]
        shapes.append(('module.' + key, list(value.shape)))
    head = [('module.weight', [n_clusters, model.feat_dim, 1, 1]), ('module.bias', [n_clusters])]
    n_params = sum(1 for name, _ in shapes if not name.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    torch.save({'epoch': 10, 'state_dict': draw(shapes, seed), 'classifier1_state_dict': draw(head, seed + 1),
                'classifier2_state_dict': draw(head, seed + 2),
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4, 'params': list(range(n_params))}]}}, path)
    return path


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for torchrun's rendezvous in DDP tests."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]
