"""PiCIE+H and the MDC baseline: their objectives, and short runs through the one training loop."""
import json

import pytest
import torch
import torch.nn.functional as F

import train_mdc
import train_picie
from data.transforms import AugmentConfig, ViewMaker
from helpers import error_lines
from modules.loss import PiCIELoss, centroid_logits, class_weights
from modules.objectives import MDCObjective, ObjectiveSettings, PiCIEObjective, build_objective, picie_heads
from modules.siamese import SiamesePair, features_of_views
from utils.runtime import Runtime

B, C, H, W = 2, 8, 4, 4


def _batch(seed, n_heads, sizes):
    g = torch.Generator().manual_seed(seed)
    feats = [F.normalize(torch.randn(B, C, H, W, generator=g), dim=1) for _ in range(2)]
    centroids = [torch.randn(k, C, generator=g) for k in sizes]
    counts = [torch.randint(1, 50, (k,), generator=g).double() for k in sizes]
    labels = [torch.randint(0, k, (B, H, W), generator=g) for k in sizes]
    assert len(sizes) == n_heads
    return feats, centroids, counts, labels


def test_heads():
    assert [(h.view, h.n_clusters, h.name, h.aux) for h in picie_heads(27, 2, 100)] == [
        (0, 27, 'view1', False), (1, 27, 'view2', False), (0, 100, 'view1_aux', True), (1, 100, 'view2_aux', True)]
    assert PiCIEObjective(27).n_views == 2 and MDCObjective(27, C, nonparametric=True).n_views == 1
    # Auxiliary heads get their own k-means seeds; the main heads keep PiCIE's.
    seeds = [h.kmeans_seed(1, 3) for h in picie_heads(27, 2, 100)]
    assert seeds[:2] == [1 * 1000 + 3 * 2, 1 * 1000 + 3 * 2 + 1] and len(set(seeds)) == 4


def test_picie_objective_is_the_picie_loss():
    feats, centroids, counts, labels = _batch(0, 2, (5, 5))
    objective = PiCIEObjective(5)
    objective.start_epoch(centroids, counts, 'size', torch.device('cpu'))
    loss, parts = objective(feats, labels)
    expected, _ = PiCIELoss()(*feats, *centroids, *labels, class_weights(counts[0]), class_weights(counts[1]))
    torch.testing.assert_close(loss, expected)
    assert set(parts) == {'within', 'cross'}


def test_picie_h_sums_the_two_picie_losses():
    feats, centroids, counts, labels = _batch(1, 4, (5, 5, 12, 12))
    objective = PiCIEObjective(5, aux_clusters=12)
    objective.start_epoch(centroids, counts, 'size', torch.device('cpu'))
    loss, parts = objective(feats, labels)
    weights = [class_weights(c) for c in counts]
    main, _ = PiCIELoss()(*feats, centroids[0], centroids[1], labels[0], labels[1], weights[0], weights[1])
    aux, _ = PiCIELoss()(*feats, centroids[2], centroids[3], labels[2], labels[3], weights[2], weights[3])
    torch.testing.assert_close(loss, main + aux)
    torch.testing.assert_close(parts['aux'], aux)
    assert list(objective.named_centroids(centroids, main_only=True)) == ['view1', 'view2']


def test_mdc_nonparametric_is_balanced_ce_on_the_centroids():
    feats, centroids, counts, labels = _batch(2, 1, (6,))
    objective = MDCObjective(6, C, nonparametric=True)
    objective.start_epoch(centroids, counts, 'size', torch.device('cpu'))
    loss, parts = objective(feats[:1], labels)
    expected = F.cross_entropy(centroid_logits(feats[0], centroids[0]), labels[0], weight=class_weights(counts[0]))
    torch.testing.assert_close(loss, expected)
    assert set(parts) == {'ce'}


def test_mdc_classifier_is_trained_and_reinitialised_every_epoch():
    feats, centroids, counts, labels = _batch(3, 1, (6,))
    optimizers = []

    def make_optimizer(module):
        optimizers.append(torch.optim.Adam(module.parameters(), lr=0.1))
        return optimizers[-1]

    objective = MDCObjective(6, C, make_optimizer=make_optimizer, seed=0)
    objective.start_epoch(centroids, counts, 'size', torch.device('cpu'))
    first = objective.classifier
    initial = first.weight.detach().clone()
    assert initial.std() == pytest.approx(0.01, rel=0.3) and (first.bias == 0).all()
    objective.zero_grad()
    loss, _ = objective([feats[0].requires_grad_()], labels)
    loss.backward()
    assert feats[0].grad is not None  # the network gets gradients through the classifier
    objective.step()
    assert not torch.equal(first.weight, initial)  # trained jointly, with its own optimiser
    objective.start_epoch(centroids, counts, 'size', torch.device('cpu'))
    assert objective.classifier is not first and len(optimizers) == 2
    assert not torch.equal(objective.classifier.weight, initial)  # a fresh draw, not a copy


def test_bad_method_flags(capsys, tmp_path):
    with pytest.raises(ValueError, match='--overcluster'):
        build_objective(ObjectiveSettings(27, method='mdc', aux_clusters=100), C)
    for extra, fragment in ((['--nonparametric'], '--nonparametric applies to --method mdc'),
                            (['--method', 'mdc', '--overcluster'], '--overcluster'),
                            (['--overcluster', '--K_aux', '1'], '--K_aux 1')):
        code = train_picie.cli(['--data_root', str(tmp_path), '--save_root', str(tmp_path), *extra])
        lines = error_lines(capsys.readouterr().err)
        assert code == 2 and len(lines) == 1 and fragment in lines[0], lines


def _run(train, tiny_demo, save_root, name, *extra, entry=None):
    """A one-epoch tiny run through conftest's `train`: (last metrics record, checkpoint, final metrics)."""
    assert train(tiny_demo, save_root, name, '--stuff', '--K_train', '15', '--K_test', '15', '--num_epoch', '1',
                 *extra, entry=entry) == 0
    run = save_root / name
    record = json.loads((run / 'metrics.jsonl').read_text().splitlines()[-1])
    ckpt = torch.load(run / 'checkpoint.pth', weights_only=True)
    return record, ckpt, json.loads((run / 'final_metrics.json').read_text())


def test_picie_h_run(tiny_demo, tmp_path, train):
    record, ckpt, final = _run(train, tiny_demo, tmp_path, 'h', '--overcluster', '--K_aux', '40')
    assert record['loss'] == pytest.approx(0.5 * (record['loss_within'] + record['loss_cross']) + record['loss_aux'],
                                           rel=1e-5)
    assert len(record['kmeans_loss']) == 4
    assert {'view1', 'view2'} <= set(record) and 'view1_aux' not in record  # scored on the K_test heads
    shapes = {name: tuple(c['weight'].shape) for name, c in ckpt['classifiers'].items()}
    assert shapes == {'view1': (15, 128), 'view2': (15, 128), 'view1_aux': (40, 128), 'view2_aux': (40, 128)}
    assert final['K'] == 15 and len(final['per_class_iou']) == 15


def test_mdc_run(tiny_demo, tmp_path, train):
    record, ckpt, final = _run(train, tiny_demo, tmp_path, 'mdc', '--method', 'mdc')
    assert record['loss'] == pytest.approx(record['loss_ce']) and 'loss_within' not in record
    assert len(record['kmeans_loss']) == 1 and 'view2' not in record
    assert list(ckpt['classifiers']) == ['view1'] and ckpt['args']['method'] == 'mdc'
    assert 0 <= final['mIoU'] <= 100


def test_train_mdc_entry_point_nonparametric(tiny_demo, tmp_path, capsys, train):
    record, ckpt, _ = _run(train, tiny_demo, tmp_path, 'mdc_np', '--nonparametric', entry=train_mdc.cli)
    assert ckpt['args']['method'] == 'mdc' and ckpt['args']['nonparametric'] is True
    assert record['n_steps'] == 3
    assert train_mdc.cli(['--method', 'picie']) == 2
    assert 'always trains --method mdc' in capsys.readouterr().err


def test_one_view_methods_forward_view_1_only():
    """MDC's clustering and training passes never run the network on view 2."""
    calls = []

    def model(images):
        calls.append(images.shape)
        return torch.randn(images.shape[0], C, images.shape[-2] // 4, images.shape[-1] // 4)

    view_maker = ViewMaker(AugmentConfig(eqv_list=('random_crop', 'h_flip')), 32, seed=0)
    params = view_maker.params(0, [0, 1], torch.device('cpu'))
    view1, view2 = view_maker.views(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), params)
    runtime = Runtime(device=torch.device('cpu'))
    pair = SiamesePair(model)
    assert len(features_of_views(pair, view_maker, view1, view2, params, runtime, True, n_views=1)) == 1
    assert len(calls) == 1
    assert len(features_of_views(pair, view_maker, view1, view2, params, runtime, True)) == 2
    assert len(calls) == 3
