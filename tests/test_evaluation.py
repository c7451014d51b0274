"""modules/evaluation.py's options through test_picie.py: --flip and --crf (reported beside the plain
protocol, in one pass), the many-to-one (majority) matching reported beside one-to-one Hungarian for
over-clustering, --K_test checked against the feature vectors of --recluster (and said to be unused without
it), and --save_root through test_picie.py and train_picie.py --eval_only."""
import json

import pytest
import torch

import test_picie
import train_picie
from config import data_settings, get_test_parser, parse_args
from data.build import build_source, val_dataset
from helpers import error_lines, evaluate_checkpoint, write_checkpoint
from modules.crf import crf_refine
from modules.evaluation import eval_features, upsampled_logits
from modules.metrics import confusion_histogram, segmentation_metrics
from modules.networks import build_model
from utils.runtime import make_runtime

CPU = ['--device', 'cpu', '--precision', 'fp32', '--num_workers', '0', '--res', '64', '--stuff']


@pytest.fixture(scope='module')
def random_checkpoints(tmp_path_factory):
    """A random network with 15 centroids (as many as the demo's stuff classes) and with 20 (over-clustering)."""
    torch.manual_seed(0)
    model = build_model('resnet18_tiny')  # plumbing: the tiny net (small files)
    model.eval()
    folder = tmp_path_factory.mktemp('ckpt')
    centroids = torch.nn.functional.normalize(torch.randn(20, model.feat_dim), dim=1)
    return (model, centroids,
            write_checkpoint(folder / 'k15.pth', model, {'view1': centroids[:15]}, {'res': 64, 'stuff': True}),
            write_checkpoint(folder / 'k20.pth', model, {'view1': centroids}, {'res': 64, 'stuff': True}))


def _score(tiny_demo, tmp_path, checkpoint, *extra):
    return evaluate_checkpoint(checkpoint, tmp_path / 'm.json', '--data_root', str(tiny_demo), *CPU, *extra)


def _manual_acc(model, centroids, tiny_demo, flip, crf):
    """Pixel accuracy of the flip-averaged and/or CRF-refined predictions, computed image by image."""
    args = parse_args(get_test_parser(), ['--data_root', str(tiny_demo), '--stuff'])
    source = build_source(data_settings(args))
    dataset = val_dataset(source, 64)
    runtime = make_runtime('cpu', 'fp32', False)
    hist = torch.zeros(15, centroids.shape[0], dtype=torch.int64)
    with torch.inference_mode():
        for i in range(len(dataset)):
            _, image, label = dataset[i]
            x = image[None]
            logits = upsampled_logits(eval_features(model, x, runtime, True), centroids, None, (64, 64))
            if flip:
                mirrored = upsampled_logits(eval_features(model, x.flip(-1), runtime, True), centroids, None, (64, 64))
                logits = (logits + mirrored.flip(-1)) / 2
            pred = crf_refine(logits[0], image).argmax(0) if crf else logits[0].argmax(0)
            hist += confusion_histogram(label.long(), pred, 15, centroids.shape[0])
    return segmentation_metrics(hist, source.class_names)['acc']


def test_flip_and_crf_beside_plain(random_checkpoints, tiny_demo, tmp_path, capsys):
    pytest.importorskip('pydensecrf.densecrf')
    model, centroids, k15, _ = random_checkpoints
    plain = _score(tiny_demo, tmp_path, k15)
    result = _score(tiny_demo, tmp_path, k15, '--flip', '--crf')
    stdout = capsys.readouterr().out
    for key in ('acc', 'mIoU', 'per_class_iou', 'cluster_to_class'):
        assert result[key] == plain[key]  # the plain protocol is unchanged by the options
    assert 'flip' not in plain and 'seconds_per_image' not in plain
    assert set(result['seconds_per_image']) == {'plain', 'flip', 'crf', 'flip_crf'}
    for variant, flip, crf in (('flip', True, False), ('crf', False, True), ('flip_crf', True, True)):
        assert 0 <= result[variant]['mIoU'] <= 100
        assert result[variant]['acc'] == pytest.approx(_manual_acc(model, centroids[:15], tiny_demo, flip, crf),
                                                       abs=1e-6), variant
        assert f'{variant}:' in stdout
    assert result['crf']['acc'] != plain['acc'] and result['flip']['acc'] != plain['acc']


def test_flip_with_fresh_clusters(random_checkpoints, tiny_demo, tmp_path):
    _, _, k15, _ = random_checkpoints
    result = _score(tiny_demo, tmp_path, k15, '--recluster', '--K_test', '15', '--flip', '--batch_size_cluster', '8',
                    '--num_init_batches', '1', '--kmeans_n_iter', '5')
    assert 'flip' in result and result['flip']['repeats'] == 1 and 'flip' in result['runs'][0]
    assert 'crf' not in result


def test_majority_matching_beside_hungarian(random_checkpoints, tiny_demo, tmp_path, capsys):
    _, _, k15, k20 = random_checkpoints
    result = _score(tiny_demo, tmp_path, k20)
    stdout = capsys.readouterr().out
    assert result['matching'] == 'hungarian' and result['majority']['matching'] == 'majority'
    assert result['majority']['acc'] >= result['acc']  # many-to-one can only match more pixels
    assert len(result['majority']['cluster_to_class']) == 20 and 'majority' in result['per_classifier']['view1']
    assert 'one-to-one Hungarian' in stdout and 'many-to-one majority' in stdout
    assert 'majority' not in _score(tiny_demo, tmp_path, k15)  # as many clusters as classes: one-to-one only
    fresh = _score(tiny_demo, tmp_path, k15, '--recluster', '--K_test', '20', '--batch_size_cluster', '8',
                   '--num_init_batches', '1', '--kmeans_n_iter', '5')
    assert fresh['majority']['acc'] >= fresh['acc'] and fresh['majority']['repeats'] == 1
    assert 'many-to-one majority' in capsys.readouterr().out


def test_options_are_not_for_the_linear_probe(random_checkpoints, tiny_demo, capsys):
    _, _, k15, _ = random_checkpoints
    code = test_picie.cli(['--eval_path', str(k15), '--data_root', str(tiny_demo), *CPU, '--linear_probe', '--flip'])
    err = capsys.readouterr().err
    assert code == 2 and '--flip' in err and '--linear_probe' in err


def test_recluster_with_more_clusters_than_feature_vectors_stops_before_any_work(random_checkpoints, tiny_demo,
                                                                                  tmp_path, monkeypatch, capsys):
    _, _, k15, _ = random_checkpoints

    def no_work(*args, **kwargs):
        pytest.fail('the evaluation started')

    monkeypatch.setattr(test_picie, 'val_loader', no_work)
    monkeypatch.setattr(test_picie, 'fresh_cluster_evaluation', no_work)
    code = test_picie.cli(['--eval_path', str(k15), '--data_root', str(tiny_demo), *CPU, '--recluster', '--K_test',
                           '100000', '--save_root', str(tmp_path / 'evals')])
    errors = error_lines(capsys.readouterr().err)
    # The 12 train images at --res 64 and stride 4: 12 x 16 x 16 = 3072 feature vectors.
    assert code == 2 and len(errors) == 1, errors
    assert '--K_test 100000' in errors[0] and 'give 3072' in errors[0] and '--K_test 3072 or fewer' in errors[0]
    assert not (tmp_path / 'evals').exists()  # nothing written


def test_k_test_without_recluster_is_said_to_be_unused(random_checkpoints, tiny_demo, tmp_path, capsys):
    _, _, k15, _ = random_checkpoints
    _score(tiny_demo, tmp_path, k15)
    assert 'warning' not in capsys.readouterr().err  # not given: nothing to say
    _score(tiny_demo, tmp_path, k15, '--K_test', '40')
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1 and warnings[0].startswith('warning: --K_test 40 is unused: the stored classifier')
    assert 'its own 15 clusters' in warnings[0] and '--recluster' in warnings[0]


def test_save_root_is_where_the_metrics_go_through_both_entry_points(random_checkpoints, tiny_demo, tmp_path):
    """test_picie.py --save_root X and the original's train_picie.py --eval_only --save_root X both write
    X/test_metrics.json; --out names the file instead."""
    _, _, k15, _ = random_checkpoints
    argv = ['--eval_path', str(k15), '--data_root', str(tiny_demo), *CPU]
    assert test_picie.cli([*argv, '--save_root', str(tmp_path / 'a')]) == 0
    assert train_picie.cli(['--eval_only', *argv, '--save_root', str(tmp_path / 'b')]) == 0
    first = json.loads((tmp_path / 'a' / 'test_metrics.json').read_text())
    second = json.loads((tmp_path / 'b' / 'test_metrics.json').read_text())
    assert first == second and first['checkpoint'] == str(k15)
    assert train_picie.cli(['--eval_only', *argv, '--save_root', str(tmp_path / 'c'), '--out',
                            str(tmp_path / 'm.json')]) == 0
    assert json.loads((tmp_path / 'm.json').read_text()) == first and not (tmp_path / 'c').exists()
