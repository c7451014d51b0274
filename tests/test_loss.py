"""Tests for modules/loss.py: PiCIE's within/cross-view balanced cross-entropy."""

import math

import pytest
import torch

from modules.loss import PiCIELoss, centroid_logits, class_weights

# A tiny hand-made example: B=1, C=2, 2x2 maps, K=3.
# Pixels in row-major order (h, w) = (0,0), (0,1), (1,0), (1,1); each pixel's feature (c0, c1).
Z1 = [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8), (-1.0, 0.5)]
Z2 = [(0.5, -0.5), (0.2, 0.9), (-0.7, -0.3), (1.5, 0.1)]
C1 = [(1.0, 0.0), (0.0, 1.0), (-0.7, -0.7)]
C2 = [(0.8, 0.6), (-0.6, 0.8), (0.0, -1.0)]
Y1 = [0, 1, 1, 2]
Y2 = [1, 0, 2, 0]
COUNTS1 = [10, 30, 60]
COUNTS2 = [50, 25, 25]


def _feats(z):
    """[(c0, c1)] per pixel -> [1, 2, 2, 2]."""
    return torch.tensor(z, dtype=torch.float32).T.reshape(1, 2, 2, 2)


def _labels(y):
    return torch.tensor(y, dtype=torch.int64).reshape(1, 2, 2)


def _hand_ce(z, c, y, w=None):
    """Weighted-mean CE by hand: sum_i w_{y_i} nll_i / sum_i w_{y_i}, nll from an explicit log-softmax."""
    num = den = 0.0
    for (z0, z1), label in zip(z, y, strict=True):
        logits = [z0 * k0 + z1 * k1 for (k0, k1) in c]
        log_norm = math.log(sum(math.exp(v) for v in logits))
        nll = -(logits[label] - log_norm)
        weight = 1.0 if w is None else w[label]
        num += weight * nll
        den += weight
    return num / den


def _hand_losses(w1=None, w2=None):
    within = 0.5 * (_hand_ce(Z1, C1, Y1, w1) + _hand_ce(Z2, C2, Y2, w2))
    cross = 0.5 * (_hand_ce(Z1, C2, Y2, w2) + _hand_ce(Z2, C1, Y1, w1))
    return 0.5 * (within + cross), within, cross


def _run(weighted):
    loss_fn = PiCIELoss()
    w1 = class_weights(torch.tensor(COUNTS1)) if weighted else None
    w2 = class_weights(torch.tensor(COUNTS2)) if weighted else None
    return loss_fn(_feats(Z1), _feats(Z2), torch.tensor(C1), torch.tensor(C2), _labels(Y1), _labels(Y2), w1, w2)


def test_class_weights_are_counts_over_total():
    w = class_weights(torch.tensor(COUNTS1))
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([0.1, 0.3, 0.6]))
    torch.testing.assert_close(class_weights(torch.tensor([2.0, 0.0, 6.0], dtype=torch.float64)),
                               torch.tensor([0.25, 0.0, 0.75]))
    # No division by zero for an all-empty count vector.
    assert torch.equal(class_weights(torch.zeros(3)), torch.zeros(3))


def test_inverse_frequency_weights_by_hand():
    """w_k = N / (K' n_k) over the K' non-empty clusters: equal total weight per cluster, mean 1."""
    torch.testing.assert_close(class_weights(torch.tensor(COUNTS1), 'inverse'),
                               torch.tensor([10 / 3, 10 / 9, 10 / 18]))
    torch.testing.assert_close(class_weights(torch.tensor([2.0, 0.0, 6.0]), 'inverse'), torch.tensor([2.0, 0.0, 2 / 3]))
    assert class_weights(torch.tensor(COUNTS1), 'none') is None


@pytest.mark.parametrize('terms, part', [('within', 1), ('cross', 2)])
def test_component_ablations_keep_one_term(terms, part):
    """--loss_terms within (no cross-view term) / cross: the loss is that term alone, by hand."""
    w1, w2 = class_weights(torch.tensor(COUNTS1)), class_weights(torch.tensor(COUNTS2))
    loss, parts = PiCIELoss(terms)(_feats(Z1), _feats(Z2), torch.tensor(C1), torch.tensor(C2), _labels(Y1),
                                   _labels(Y2), w1, w2)
    expected = _hand_losses(w1.tolist(), w2.tolist())[part]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(parts) == {'within', 'cross'}


def test_centroid_logits_by_hand():
    logits = centroid_logits(_feats(Z1), torch.tensor(C1))
    assert logits.shape == (1, 3, 2, 2)
    for p, (z0, z1) in enumerate(Z1):
        for k, (k0, k1) in enumerate(C1):
            assert float(logits[0, k].reshape(-1)[p]) == pytest.approx(z0 * k0 + z1 * k1, abs=1e-6)
    bias = torch.tensor([1.0, -2.0, 0.5])
    with_bias = centroid_logits(_feats(Z1), torch.tensor(C1), bias)
    torch.testing.assert_close(with_bias, logits + bias.view(1, 3, 1, 1))


def test_weighted_loss_by_hand():
    loss, parts = _run(weighted=True)
    w1 = [c / sum(COUNTS1) for c in COUNTS1]
    w2 = [c / sum(COUNTS2) for c in COUNTS2]
    total, within, cross = _hand_losses(w1, w2)
    assert float(parts["within"]) == pytest.approx(within, abs=1e-5)
    assert float(parts["cross"]) == pytest.approx(cross, abs=1e-5)
    assert float(loss) == pytest.approx(total, abs=1e-5)
    assert loss.dim() == 0 and parts["within"].dim() == 0 and parts["cross"].dim() == 0
    # The weights matter in this example (otherwise the test could not tell them apart).
    assert abs(total - _hand_losses()[0]) > 1e-2


def test_unweighted_loss_by_hand():
    loss, parts = _run(weighted=False)
    total, within, cross = _hand_losses()
    assert float(parts["within"]) == pytest.approx(within, abs=1e-5)
    assert float(parts["cross"]) == pytest.approx(cross, abs=1e-5)
    assert float(loss) == pytest.approx(total, abs=1e-5)
    # Uniform weights are the same as no weights.
    uniform = torch.full((3,), 1 / 3)
    loss_u, _ = PiCIELoss()(_feats(Z1), _feats(Z2), torch.tensor(C1), torch.tensor(C2),
                            _labels(Y1), _labels(Y2), uniform, uniform)
    assert float(loss_u) == pytest.approx(total, abs=1e-5)


def test_views_and_labels_are_paired_correctly():
    """Swapping view 2's labels for view 1's changes the loss: labels follow their view's centroids."""
    loss_fn = PiCIELoss()
    loss, _ = _run(weighted=False)
    swapped, _ = loss_fn(_feats(Z1), _feats(Z2), torch.tensor(C1), torch.tensor(C2), _labels(Y2), _labels(Y1))
    assert abs(float(loss) - float(swapped)) > 1e-3


def test_batch_of_several_images_is_pixel_mean():
    """B=2 with the same image twice gives the same loss as B=1."""
    loss_fn = PiCIELoss()
    w1, w2 = class_weights(torch.tensor(COUNTS1)), class_weights(torch.tensor(COUNTS2))
    single, _ = _run(weighted=True)
    double, _ = loss_fn(_feats(Z1).repeat(2, 1, 1, 1), _feats(Z2).repeat(2, 1, 1, 1), torch.tensor(C1),
                        torch.tensor(C2), _labels(Y1).repeat(2, 1, 1), _labels(Y2).repeat(2, 1, 1), w1, w2)
    assert float(double) == pytest.approx(float(single), abs=1e-6)


def test_gradient_reaches_features_not_centroids():
    f1 = _feats(Z1).requires_grad_(True)
    f2 = _feats(Z2).requires_grad_(True)
    c1, c2 = torch.tensor(C1), torch.tensor(C2)
    c1_before, c2_before = c1.clone(), c2.clone()
    loss, parts = PiCIELoss()(f1, f2, c1, c2, _labels(Y1), _labels(Y2),
                              class_weights(torch.tensor(COUNTS1)), class_weights(torch.tensor(COUNTS2)))
    assert loss.requires_grad
    assert not parts["within"].requires_grad and not parts["cross"].requires_grad
    loss.backward()
    for f in (f1, f2):
        assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert c1.grad is None and c2.grad is None
    assert torch.equal(c1, c1_before) and torch.equal(c2, c2_before)
    # One optimiser step on the features lowers the loss; the centroids stay as they were.
    opt = torch.optim.SGD([f1, f2], lr=0.5)
    opt.step()
    new_loss, _ = PiCIELoss()(f1, f2, c1, c2, _labels(Y1), _labels(Y2),
                              class_weights(torch.tensor(COUNTS1)), class_weights(torch.tensor(COUNTS2)))
    assert new_loss.item() < loss.item()
    assert torch.equal(c1, c1_before) and torch.equal(c2, c2_before)


def test_gradient_matches_hand_derivative():
    """d loss / d z for one pixel, from the softmax formula, unweighted."""
    f1 = _feats(Z1).requires_grad_(True)
    f2 = _feats(Z2)
    loss, _ = PiCIELoss()(f1, f2, torch.tensor(C1), torch.tensor(C2), _labels(Y1), _labels(Y2))
    loss.backward()
    # z1 appears in CE(C1 z1, y1) (within, factor 1/4) and CE(C2 z1, y2) (cross, factor 1/4);
    # each CE is a mean over 4 pixels. d CE_pixel / dz = sum_k (p_k - [k = y]) c_k.
    pixel = 2
    grad = [0.0, 0.0]
    for centroids, labels in ((C1, Y1), (C2, Y2)):
        z = Z1[pixel]
        logits = [z[0] * k[0] + z[1] * k[1] for k in centroids]
        norm = sum(math.exp(v) for v in logits)
        for k, (k0, k1) in enumerate(centroids):
            coef = math.exp(logits[k]) / norm - (1.0 if k == labels[pixel] else 0.0)
            grad[0] += 0.25 * coef * k0 / 4
            grad[1] += 0.25 * coef * k1 / 4
    got = f1.grad[0, :, 1, 0]
    assert float(got[0]) == pytest.approx(grad[0], abs=1e-6)
    assert float(got[1]) == pytest.approx(grad[1], abs=1e-6)


def test_bfloat16_features_give_float32_loss():
    loss, _ = PiCIELoss()(_feats(Z1).bfloat16(), _feats(Z2).bfloat16(), torch.tensor(C1), torch.tensor(C2),
                          _labels(Y1), _labels(Y2))
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(_hand_losses()[0], abs=2e-2)
