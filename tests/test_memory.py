"""The memory estimate made before any work (utils/memory.py, config/memory.py): a run, a test
or a prediction that cannot fit stops at once with one line naming the flag and the largest
value that fits, and writes nothing."""
import pytest

import test_picie
from config import get_args_parser, parse_args, settings_from_args, training_memory
from helpers import error_lines
from modules.networks import build_model, network_cost
from utils.memory import Available, MemoryLimitError, largest_fitting, training_parts

GB = 2 ** 30


def _settings(*flags):
    return settings_from_args(parse_args(get_args_parser(), ['--preset', 'tiny', '--data_root', 'unused', *flags]))


@pytest.fixture(scope='module')
def tiny_cost():
    return network_cost(build_model('resnet18_tiny'))


def test_the_named_value_is_the_largest_that_fits(tiny_cost):
    """The line names a --res1 whose estimate fits and whose next step does not."""
    s = _settings('--res1', '4000', '--res2', '8000')
    available = Available(host=3 * GB, device=None)
    with pytest.raises(MemoryLimitError) as error:
        training_memory(s, tiny_cost, 100, [15, 15], 'cpu', available=available)
    message = str(error.value)
    assert message.startswith('training with --res1 4000 needs about') and 'of RAM where 3.0 GB' in message
    best = int(message.split('the largest --res1 that fits is ')[1].split(';')[0])
    assert best % 4 == 0
    fits = _settings('--res1', str(best), '--res2', str(2 * best))
    training_memory(fits, tiny_cost, 100, [15, 15], 'cpu', available=available)
    over = _settings('--res1', str(best + 4), '--res2', str(2 * best + 8))
    with pytest.raises(MemoryLimitError):
        training_memory(over, tiny_cost, 100, [15, 15], 'cpu', available=available)
    training_memory(_settings('--res1', '4000', '--res2', '8000', '--skip_memory_check'), tiny_cost, 100, [15, 15],
                    'cpu', available=available)


def test_parts_grow_with_the_dataset_the_batch_and_the_resolution(tiny_cost):
    base = dict(n_images=100, res1=64, res2=128, batch_cluster=8, batch_train=4, head_clusters=[15, 15],
                feature_cache_bytes=2 * GB, init_points=1000, optimizer_slots=2, loader_batches=2)
    total = sum(training_parts(tiny_cost, **base).values())
    for key, value in (('n_images', 10 ** 6), ('batch_train', 64), ('res1', 128), ('head_clusters', [300, 300])):
        assert sum(training_parts(tiny_cost, **dict(base, **{key: value})).values()) > total, key
    assert largest_fitting(lambda v: {'x': v}, lambda p: p['x'] <= 10, 4, 100, 4) == 8
    assert largest_fitting(lambda v: {'x': v}, lambda p: p['x'] <= 1, 4, 100, 4) is None


def test_training_that_cannot_fit_stops_before_any_file(tiny_demo, tmp_path, capsys, train):
    """--res1 8000 --res2 16000 needs hundreds of GB: exit 2 at once, one line naming --res1, no run folder."""
    assert train(tiny_demo, tmp_path, 'big', '--res1', '8000', '--res2', '16000') == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and '--res1 8000' in errors[0] and 'the largest --res1 that fits is' in errors[0]
    assert not (tmp_path / 'big').exists()


def test_evaluation_that_cannot_fit_stops_before_any_pass(tiny_run, tiny_demo, tmp_path, capsys):
    out = tmp_path / 'm.json'
    code = test_picie.cli(['--eval_path', str(tiny_run / 'checkpoint.pth'), '--data_root', str(tiny_demo),
                           '--res', '8000', '--device', 'cpu', '--num_workers', '0', '--out', str(out)])
    errors = error_lines(capsys.readouterr().err)
    assert code == 2 and len(errors) == 1 and 'the largest --res that fits is' in errors[0], errors
    assert not out.exists()


def test_the_presets_fit_a_24_gb_machine():
    """Not so cautious that the shipped presets stop: the demo on a CPU with 24 GB, the paper's
    settings (COCO-Stuff's 118287 training images) on a 24 GB GPU under bf16 with 24 GB of RAM."""
    cost = network_cost(build_model('resnet18'))
    training_memory(_settings('--preset', 'demo'), cost, 480, [6, 6], 'cpu', available=Available(24 * GB, None))
    training_memory(_settings('--preset', 'paper'), cost, 118287, [27, 27], 'cuda', half_precision=True,
                    available=Available(24 * GB, 24 * GB))


def test_the_parts_that_grow_with_the_dataset_follow_the_arithmetic(tiny_cost):
    """The pseudo-label arrays are N x 2 views x (res1 / stride)^2 bytes (uint8 for K <= 256): at the
    paper's 49,629 images and 80 x 80 cells 635 MB, the figure docs/measurements.md states; the
    feature cache grows with N up to --feature_cache_gb."""
    budget = _settings('--feature_cache_gb', '2').train.feature_cache_bytes  # 2 GiB
    parts = training_parts(tiny_cost, 49629, 320, 640, 256, 128, [27, 27], budget, 20 * 256 * 128, 2, 2)
    assert parts['pseudo-labels'] == 49629 * 2 * 80 * 80 == 635_251_200
    assert parts['feature cache'] == budget == 2 ** 31
    assert parts['image lists'] == 49629 * 3 * 1024  # measured by benchmarks/bench_scale.py
    small = training_parts(tiny_cost, 100, 320, 640, 256, 128, [27, 27], budget, 20 * 256 * 128, 2, 2)
    assert small['feature cache'] < budget and small['pseudo-labels'] == 100 * 2 * 80 * 80


def test_config_memory_prints_the_estimate_without_training(tiny_demo, tmp_path, capsys):
    """python -m config --memory: every part of both estimates, the data root's image count, and
    whether it fits; nothing is written."""
    import logging

    from config.__main__ import main
    before, level = sorted(tmp_path.iterdir()), logging.getLogger('picie').level
    assert main(['--preset', 'tiny', '--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--memory']) == 0
    assert logging.getLogger('picie').level == level  # later runs in this process still log their INFO lines
    out = capsys.readouterr().out
    n_images = len(list((tiny_demo / 'images' / 'train2017').iterdir()))
    assert out.startswith(f'memory estimate: {n_images} training images')
    for part in ('pseudo-labels', 'feature cache', 'image lists', 'k-means sample', 'training activations',
                 'evaluation pass'):
        assert part in out
    assert out.count('  fits: ') == 2 and sorted(tmp_path.iterdir()) == before


def test_config_memory_names_a_missing_data_root(tmp_path, capsys):
    from config.__main__ import main
    assert main(['--preset', 'tiny', '--data_root', str(tmp_path / 'none'), '--memory']) == 2
    assert str(tmp_path / 'none') in capsys.readouterr().err
