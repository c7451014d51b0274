"""modules/probe.py through test_picie.py --linear_probe: a 1x1 classifier on frozen features,
scored without matching."""
import json
import shutil

import numpy as np
import pytest
import torch

import test_picie
from helpers import error_lines, write_checkpoint
from modules.metrics import segmentation_metrics
from modules.networks import build_model

PROBE_FLAGS = ['--linear_probe', '--probe_epochs', '3', '--probe_lr', '3e-3', '--res', '64', '--device', 'cpu',
               '--precision', 'fp32', '--num_workers', '0', '--batch_size_test', '16']


def test_identity_matching_scores_classes_directly():
    hist = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 0]])  # hist[class, predicted class]; class 2 absent
    metrics = segmentation_metrics(hist, ['a', 'b', 'c'], matching='identity')
    assert metrics['acc'] == pytest.approx(100 * 70 / 90)
    iou_a, iou_b = 50 / (50 + 5 + 10), 20 / (20 + 10 + 10)
    assert metrics['per_class_iou']['a'] == pytest.approx(100 * iou_a)
    assert metrics['per_class_iou']['c'] == pytest.approx(0.0)  # predicted 5 times, never present
    assert metrics['mIoU'] == pytest.approx(100 * (iou_a + iou_b + 0) / 3)
    # Hungarian matching would swap nothing here, but on a permuted histogram only identity is fooled.
    assert segmentation_metrics(hist[:, [1, 0, 2]], ['a', 'b', 'c'], matching='identity')['acc'] < 30


@pytest.fixture(scope='module')
def random_checkpoint(tmp_path_factory):
    """A toolkit checkpoint of a randomly initialised ResNet-18 FPN."""
    torch.manual_seed(0)
    model = build_model('resnet18_tiny')  # plumbing: the tiny net (small files)
    path = tmp_path_factory.mktemp('ckpt') / 'checkpoint.pth'
    return write_checkpoint(path, model, {'view1': torch.randn(27, model.feat_dim)}, {'stuff': True, 'thing': True})


def test_probe_on_the_real_sample(coco_mini, random_checkpoint, tmp_path):
    out = tmp_path / 'probe.json'
    assert test_picie.cli(['--eval_path', str(random_checkpoint), '--data_root', str(coco_mini), *PROBE_FLAGS,
                           '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['protocol'] == 'linear_probe' and result['matching'] == 'identity'
    probe = result['probe']
    assert probe['n_train_images'] == 5 and probe['n_val_images'] == 8 and result['n_images'] == 8
    losses = probe['train_loss']
    assert len(losses) == 3 and losses[-1] < losses[0]  # the probe learns on the frozen features
    assert 0 < result['acc'] <= 100 and 0 < result['mIoU'] <= 100
    assert len(result['per_class_iou']) == 27 and result['thing_mIoU'] is not None


def test_probe_needs_the_train_labels(tiny_demo, random_checkpoint, tmp_path, capsys):
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    missing = sorted((root / 'annotations' / 'train2017').glob('*.png'))[3]
    missing.unlink()
    code = test_picie.cli(['--eval_path', str(random_checkpoint), '--data_root', str(root), *PROBE_FLAGS])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and str(missing) in lines[0] and '--linear_probe' in lines[0]


def test_probe_and_recluster_are_exclusive(capsys):
    assert test_picie.cli(['--eval_path', 'x.pth', '--linear_probe', '--recluster']) == 2
    assert '--linear_probe and --recluster' in capsys.readouterr().err


def test_probe_says_that_k_test_is_unused(tiny_demo, random_checkpoint, tmp_path, capsys):
    """The probe trains a classifier of the classes and clusters nothing: --K_test (any value) is unused."""
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    sorted((root / 'annotations' / 'train2017').glob('*.png'))[0].unlink()  # stops the probe before it trains
    code = test_picie.cli(['--eval_path', str(random_checkpoint), '--data_root', str(root), *PROBE_FLAGS,
                           '--K_test', '100000'])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert code == 2 and warnings == ['warning: --K_test 100000 is unused: --linear_probe trains a classifier of the '
                                      'classes and clusters nothing']
