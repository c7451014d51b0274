"""Tests for data/transforms.py (batched photometric/geometric ops, seeded view parameters,
ViewMaker) and for the transform-list resolution in config/from_args.py."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF1
import torchvision.transforms.v2.functional as TF

import config
from data import transforms as T
from data.transforms import IMAGENET_STD, AugmentConfig, ViewMaker

CPU = torch.device("cpu")
MEAN = torch.tensor(T.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(T.IMAGENET_STD).view(1, 3, 1, 1)


# Tiny tensors: intra-op threads mostly add synchronisation cost on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(batch=6, height=24, width=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g)


def _smooth_uint8(batch, size, cells, seed=0):
    """Smooth random images: low-res noise upsampled bicubically, as uint8 [B, 3, size, size]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, cells, cells, generator=g)
    img = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (img * 255).round().to(torch.uint8)


def _unnormalize(x):
    return x * STD + MEAN


# ----------------------------------------------------------------------------------------
# Photometric ops against torchvision's per-image functions
# ----------------------------------------------------------------------------------------
FACTORS = torch.tensor([0.7, 0.85, 1.0, 1.1, 1.3, 0.95])


@pytest.mark.parametrize("ours, theirs", [
    (T.adjust_brightness, TF.adjust_brightness),
    (T.adjust_contrast, TF.adjust_contrast),
    (T.adjust_saturation, TF.adjust_saturation),
    (T.adjust_brightness, TF1.adjust_brightness),
    (T.adjust_contrast, TF1.adjust_contrast),
    (T.adjust_saturation, TF1.adjust_saturation),
], ids=["brightness-v2", "contrast-v2", "saturation-v2", "brightness-v1", "contrast-v1", "saturation-v1"])
def test_colour_factor_ops_match_torchvision(ours, theirs):
    x = _images()
    out = ours(x.clone(), FACTORS)
    ref = torch.stack([theirs(x[i], float(FACTORS[i])) for i in range(len(x))])
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_colour_ops_have_per_image_factors():
    """Each image gets its own factor: the batched op is not a single-factor op."""
    x = _images()
    out = T.adjust_contrast(x.clone(), FACTORS)
    same = T.adjust_contrast(x.clone(), torch.full_like(FACTORS, float(FACTORS[0])))
    assert torch.allclose(out[0], same[0])
    assert not torch.allclose(out[1], same[1], atol=1e-3)


@pytest.mark.parametrize("theirs", [TF.adjust_hue, TF1.adjust_hue], ids=["v2", "v1"])
def test_adjust_hue_matches_torchvision(theirs):
    x = _images(batch=7)
    shifts = torch.tensor([-0.1, -0.05, -0.01, 0.0, 0.02, 0.07, 0.1])
    out = T.adjust_hue(x, shifts)
    ref = torch.stack([theirs(x[i], float(shifts[i])) for i in range(len(x))])
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_adjust_hue_handles_grey_and_saturated_pixels():
    """Pixels with max == min (grey) and pure primaries are edge cases of the HSV conversion."""
    x = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                      [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.2, 0.8, 0.8]])
    x = x.T.reshape(1, 3, 2, 4).repeat(2, 1, 1, 1)
    shifts = torch.tensor([0.1, -0.1])
    out = T.adjust_hue(x, shifts)
    ref = torch.stack([TF.adjust_hue(x[i], float(shifts[i])) for i in range(2)])
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_grayscale_matches_torchvision():
    x = _images()
    ours = T.grayscale(x)
    assert ours.shape == (6, 1, 24, 20)
    torch.testing.assert_close(ours.expand(-1, 3, -1, -1), TF.rgb_to_grayscale(x, num_output_channels=3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.expand(-1, 3, -1, -1), TF1.rgb_to_grayscale(x, num_output_channels=3),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("theirs", [TF.gaussian_blur, TF1.gaussian_blur], ids=["v2", "v1"])
def test_gaussian_blur_matches_torchvision(theirs):
    x = _images(batch=5, height=30, width=26)
    sigmas = torch.tensor([0.1, 0.4, 1.0, 1.55, 2.0])  # mixed kernel sizes in one batch
    out = T.gaussian_blur(x, sigmas)
    ref = torch.stack([theirs(x[i], [T.blur_kernel_size(float(s))] * 2, [float(s)] * 2)
                       for i, s in enumerate(sigmas)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_blur_kernel_size_is_odd_and_covers_three_sigma():
    for sigma in (0.1, 0.5, 1.0, 1.34, 2.0):
        k = T.blur_kernel_size(sigma)
        assert k % 2 == 1
        assert k // 2 >= 3 * sigma


def test_apply_photometric_matches_sequential_torchvision():
    """All ops together, per image, in the documented order: brightness, contrast, saturation,
    hue, greyscale, blur."""
    cfg = T.AugmentConfig(inv_list=T.PHOTOMETRIC_OPS, jitter_p=0.8, grey_p=0.3, blur_p=0.5)
    indices = list(range(16))
    params = T.draw_view_params(cfg, seed=5, epoch=2, indices=indices, grid=8).photometric1
    # The draw mixes applied and skipped ops across the batch.
    assert params.grey_on.any() and not params.grey_on.all()
    assert (params.blur_sigma > 0).any() and not (params.blur_sigma > 0).all()
    x = _images(batch=len(indices), height=32, width=32, seed=3)
    out = T.apply_photometric(x.clone(), params)
    for i in range(len(indices)):
        ref = x[i]
        ref = TF.adjust_brightness(ref, float(params.brightness[i]))
        ref = TF.adjust_contrast(ref, float(params.contrast[i]))
        ref = TF.adjust_saturation(ref, float(params.saturation[i]))
        if params.hue_on[i]:
            ref = TF.adjust_hue(ref, float(params.hue[i]))
        if params.grey_on[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        sigma = float(params.blur_sigma[i])
        if sigma > 0:
            ref = TF.gaussian_blur(ref, [T.blur_kernel_size(sigma)] * 2, [sigma] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-4, rtol=0, msg=f"image {i}")


def test_apply_photometric_identity_when_nothing_enabled():
    params = T.draw_view_params(T.AugmentConfig(), 1, 0, range(4), 8).photometric1
    x = _images(batch=4)
    assert torch.equal(T.apply_photometric(x.clone(), params), x)


# ----------------------------------------------------------------------------------------
# Seeded parameter draws
# ----------------------------------------------------------------------------------------
ALL_CFG = T.AugmentConfig(inv_list=T.PHOTOMETRIC_OPS, eqv_list=T.GEOMETRIC_OPS)


def _rows(params: T.ViewParams):
    """Per-image tuple of every parameter of both views."""
    out = []
    for i in range(len(params.geometric.top)):
        row = []
        for p in (params.photometric1, params.photometric2):
            row += [float(getattr(p, f.name)[i]) for f in dataclasses.fields(p)]
        g = params.geometric
        row += [int(g.top[i]), int(g.left[i]), int(g.size[i]), bool(g.h_flip[i]), bool(g.v_flip[i])]
        out.append(tuple(row))
    return out


def test_draw_is_independent_of_batch_composition_and_order():
    a = _rows(T.draw_view_params(ALL_CFG, 1, 3, [5, 2, 9, 40], 20))
    b = _rows(T.draw_view_params(ALL_CFG, 1, 3, [40, 9, 7, 5, 11, 2], 20))
    single = {i: _rows(T.draw_view_params(ALL_CFG, 1, 3, [i], 20))[0] for i in (2, 5, 9, 40)}
    assert a == [single[i] for i in (5, 2, 9, 40)]
    assert [b[0], b[1], b[3], b[5]] == [single[i] for i in (40, 9, 5, 2)]
    # Accepts a tensor of indices too (a DataLoader batch).
    c = _rows(T.draw_view_params(ALL_CFG, 1, 3, torch.tensor([9, 2]), 20))
    assert c == [single[9], single[2]]


def test_draw_is_repeatable_and_depends_on_epoch_seed_and_index():
    idx = list(range(32))
    a = _rows(T.draw_view_params(ALL_CFG, 1, 0, idx, 20))
    assert a == _rows(T.draw_view_params(ALL_CFG, 1, 0, idx, 20))
    other_epoch = _rows(T.draw_view_params(ALL_CFG, 1, 1, idx, 20))
    other_seed = _rows(T.draw_view_params(ALL_CFG, 2, 0, idx, 20))
    assert all(x != y for x, y in zip(a, other_epoch, strict=True))
    assert all(x != y for x, y in zip(a, other_seed, strict=True))
    assert len(set(a)) == len(a)  # different images, different parameters


def test_two_views_draw_different_photometric_params():
    p = T.draw_view_params(ALL_CFG, 1, 0, range(64), 20)
    assert not torch.equal(p.photometric1.brightness, p.photometric2.brightness)
    assert not torch.equal(p.photometric1.blur_sigma, p.photometric2.blur_sigma)


def test_enabling_one_op_leaves_other_ops_unchanged():
    idx = list(range(200))
    base = T.AugmentConfig(inv_list=("brightness", "contrast", "saturation"), eqv_list=("random_crop",))
    more = T.AugmentConfig(inv_list=("brightness", "contrast", "saturation", "hue", "grey", "blur"),
                           eqv_list=("random_crop", "h_flip", "v_flip"))
    a = T.draw_view_params(base, 1, 4, idx, 20)
    b = T.draw_view_params(more, 1, 4, idx, 20)
    for view in ("photometric1", "photometric2"):
        for name in ("brightness", "contrast", "saturation"):
            assert torch.equal(getattr(getattr(a, view), name), getattr(getattr(b, view), name)), (view, name)
    for name in ("top", "left", "size"):
        assert torch.equal(getattr(a.geometric, name), getattr(b.geometric, name)), name
    # ... and the newly enabled ops really changed something.
    assert b.photometric1.hue_on.any() and not a.photometric1.hue_on.any()
    assert b.geometric.h_flip.any() and not a.geometric.h_flip.any()
    # Disabling brightness only sets brightness back to 1.
    c = T.draw_view_params(T.AugmentConfig(inv_list=("contrast", "saturation")), 1, 4, idx, 20)
    assert torch.all(c.photometric1.brightness == 1)
    assert torch.equal(c.photometric1.contrast, a.photometric1.contrast)


def test_disabled_ops_are_identity_values():
    p = T.draw_view_params(T.AugmentConfig(), 1, 0, range(50), 20)
    for ph in (p.photometric1, p.photometric2):
        assert torch.all(ph.brightness == 1) and torch.all(ph.contrast == 1) and torch.all(ph.saturation == 1)
        assert torch.all(ph.hue == 0) and not ph.hue_on.any() and not ph.grey_on.any()
        assert torch.all(ph.blur_sigma == 0)
    g = p.geometric
    assert torch.all(g.size == 20) and torch.all(g.top == 0) and torch.all(g.left == 0)
    assert not g.h_flip.any() and not g.v_flip.any()


N_STAT = 3000


@pytest.fixture(scope="module")
def many_params():
    return T.draw_view_params(ALL_CFG, 7, 1, range(N_STAT), 80)


def test_parameter_ranges(many_params):
    for ph in (many_params.photometric1, many_params.photometric2):
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(ph, name)
            assert v.min() >= 0.7 - 1e-6 and v.max() <= 1.3 + 1e-6, name
            on = v[v != 1]
            assert on.min() < 0.72 and on.max() > 1.28, name  # spans the range
        assert ph.hue.abs().max() <= 0.1 + 1e-6
        assert torch.all(ph.hue[~ph.hue_on] == 0)
        hue = ph.hue[ph.hue_on]
        assert hue.min() < -0.095 and hue.max() > 0.095
        sigma = ph.blur_sigma[ph.blur_sigma > 0]
        # The original drew sigma in [-1.8, 0.1): check the whole range over many draws.
        assert sigma.min() >= 0.1 - 1e-6 and sigma.max() <= 2.0 + 1e-6
        assert sigma.min() < 0.15 and sigma.max() > 1.95
        assert abs(float(sigma.mean()) - 1.05) < 0.05  # uniform on [0.1, 2.0]


def test_crop_box_ranges(many_params):
    g = many_params.geometric
    grid = g.grid
    assert g.size.min() >= round(0.5 * grid) and g.size.max() <= grid
    assert g.size.min() <= round(0.5 * grid) + 1 and g.size.max() >= grid - 1
    assert g.top.min() >= 0 and g.left.min() >= 0
    assert torch.all(g.top + g.size <= grid) and torch.all(g.left + g.size <= grid)
    # Position is random too, reaching both ends.
    assert (g.top == 0).any() and ((g.top + g.size) == grid).any()


def test_crop_respects_min_scale():
    cfg = T.AugmentConfig(eqv_list=("random_crop",), min_scale=0.8)
    g = T.draw_view_params(cfg, 1, 0, range(500), 40).geometric
    assert g.size.min() >= 32 and g.size.max() <= 40


def test_probabilities(many_params):
    tol = 0.05
    for ph in (many_params.photometric1, many_params.photometric2):
        for name in ("brightness", "contrast", "saturation"):
            frac = float((getattr(ph, name) != 1).float().mean())
            assert abs(frac - 0.8) < tol, (name, frac)
        assert abs(float(ph.hue_on.float().mean()) - 0.8) < tol
        assert abs(float(ph.grey_on.float().mean()) - 0.2) < tol
        assert abs(float((ph.blur_sigma > 0).float().mean()) - 0.5) < tol
        # Each colour op is drawn independently of the others.
        both = float(((ph.brightness != 1) & (ph.contrast != 1)).float().mean())
        assert abs(both - 0.64) < tol
    g = many_params.geometric
    assert abs(float(g.h_flip.float().mean()) - 0.5) < tol
    assert abs(float(g.v_flip.float().mean()) - 0.5) < tol


def test_probabilities_follow_config():
    cfg = T.AugmentConfig(inv_list=T.PHOTOMETRIC_OPS, eqv_list=("h_flip",), jitter_p=0.3, grey_p=0.6,
                          blur_p=0.1, flip_p=0.9)
    p = T.draw_view_params(cfg, 1, 0, range(N_STAT), 20)
    assert abs(float((p.photometric1.brightness != 1).float().mean()) - 0.3) < 0.05
    assert abs(float(p.photometric1.grey_on.float().mean()) - 0.6) < 0.05
    assert abs(float((p.photometric1.blur_sigma > 0).float().mean()) - 0.1) < 0.05
    assert abs(float(p.geometric.h_flip.float().mean()) - 0.9) < 0.05


def test_greyscale_really_applies():
    cfg = T.AugmentConfig(inv_list=("grey",), grey_p=1.0)
    params = T.draw_view_params(cfg, 1, 0, range(4), 8)
    assert params.photometric1.grey_on.all() and params.photometric2.grey_on.all()
    x = _images(batch=4, height=32, width=32)
    out = T.apply_photometric(x.clone(), params.photometric1)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 0], out[:, 2])
    assert not torch.allclose(x[:, 0], x[:, 1])
    # Through the ViewMaker too (undo the normalisation first).
    vm = T.ViewMaker(cfg, res1=32, seed=1)
    u8 = (x * 255).round().to(torch.uint8)
    for view in vm.views(u8, vm.params(0, range(4), CPU)):
        rgb = _unnormalize(view)
        assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 0], rgb[:, 2], atol=1e-5)


def test_blur_really_applies():
    cfg = T.AugmentConfig(inv_list=("blur",), blur_p=1.0)
    params = T.draw_view_params(cfg, 1, 0, range(6), 8)
    sigma = params.photometric1.blur_sigma
    assert torch.all(sigma >= 0.1) and torch.all(sigma <= 2.0)
    x = _images(batch=6, height=32, width=32)
    out = T.apply_photometric(x.clone(), params.photometric1)

    def tv(t):  # total variation per image
        return (t[..., 1:, :] - t[..., :-1, :]).abs().mean((1, 2, 3)) + (t[..., 1:] - t[..., :-1]).abs().mean((1, 2, 3))

    # A sigma near 0.1 is (correctly) almost the identity; every larger one must blur.
    big = sigma >= 0.5
    assert big.sum() >= 3
    assert torch.all((out - x).abs().amax((1, 2, 3))[big] > 0.05)
    assert torch.all(tv(out)[big] < 0.8 * tv(x)[big])
    assert torch.all(tv(out) <= tv(x) + 1e-6)
    # Bigger sigma, smoother result.
    order = sigma.argsort()
    assert tv(out)[order[0]] > tv(out)[order[-1]]


# ----------------------------------------------------------------------------------------
# Geometric ops and equivariance
# ----------------------------------------------------------------------------------------
def _geo(grid, top, left, size, h_flip=False, v_flip=False):
    n = len(top)
    return T.GeometricParams(grid, torch.tensor(top), torch.tensor(left), torch.tensor(size),
                             torch.tensor([h_flip] * n), torch.tensor([v_flip] * n))


def test_apply_geometric_crop_and_flip_exact():
    x = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    # grid 8, tensor 16: scale 2. Crop of 4 cells at (1, 2) -> pixels [2:10, 4:12], no resize.
    g = _geo(8, [1, 0], [2, 0], [4, 4])
    out = T.apply_geometric(x, g, out_size=8)
    assert torch.equal(out[0], x[0, :, 2:10, 4:12])
    assert torch.equal(out[1], x[1, :, 0:8, 0:8])
    out = T.apply_geometric(x, _geo(8, [1, 0], [2, 0], [4, 4], h_flip=True, v_flip=True), out_size=8)
    assert torch.equal(out[0], x[0, :, 2:10, 4:12].flip(-1).flip(-2))
    # Full-size crop to the same size is the identity.
    assert torch.equal(T.apply_geometric(x, _geo(8, [0, 0], [0, 0], [8, 8]), out_size=16), x)


def test_apply_geometric_per_image_flip():
    x = torch.rand(2, 3, 8, 8)
    g = T.GeometricParams(8, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                          torch.full((2,), 8), torch.tensor([True, False]), torch.tensor([False, True]))
    out = T.apply_geometric(x, g, out_size=8)
    assert torch.equal(out[0], x[0].flip(-1))
    assert torch.equal(out[1], x[1].flip(-2))


def test_apply_geometric_labels_matches_crop():
    labels = torch.arange(16 * 16).reshape(1, 16, 16)
    g = _geo(8, [2], [1], [4], h_flip=True)
    out = T.apply_geometric_labels(labels, g, out_size=8)
    assert out.dtype == labels.dtype
    assert torch.equal(out[0], labels[0, 4:12, 2:10].flip(-1))


RES1, RES2 = 128, 256


def _pointwise_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AvgPool2d(4), torch.nn.Conv2d(3, 8, 1))


def _equivariance_errors(cfg, params_fn, batch=8, cells=6, check_wrong=True):
    """Mean |f(G(x)) - G(f(x))| relative to the std of f(G(x)), with the right params and with
    params shifted by one grid cell (a misalignment the test must be able to see)."""
    vm = T.ViewMaker(cfg, RES1, seed=3)
    net = _pointwise_net()
    x = _smooth_uint8(batch, RES2, cells, seed=1)
    params = params_fn(vm, batch)
    g = params.geometric
    with torch.no_grad():
        view1, view2 = vm.views(x, params)
        z1 = net(view1)
        feats2 = net(view2)
        z2 = vm.geometric_on_features(feats2, params)
        # Same check spelled out with apply_geometric on the res2 image.
        img = x.float() / 255
        direct = net(T.normalize(T.apply_geometric(img, g, RES1, antialias=True)))
        torch.testing.assert_close(direct, z1)
        wrong = None
        if check_wrong:  # needs crops smaller than the grid, so that the shifted box fits
            assert (g.size < g.grid).all()
            shifted = dataclasses.replace(params, geometric=dataclasses.replace(
                g, left=torch.where(g.left > 0, g.left - 1, g.left + 1),
                top=torch.where(g.top > 0, g.top - 1, g.top + 1)))
            z2_wrong = vm.geometric_on_features(feats2, shifted)
    assert z1.shape == z2.shape == (batch, 8, RES1 // 4, RES1 // 4)
    std = float(z1.std())
    if check_wrong:
        wrong = float((z1 - z2_wrong).abs().mean()) / std
    return float((z1 - z2).abs().mean()) / std, wrong, params


def test_equivariance_with_drawn_crops_and_flips():
    cfg = T.AugmentConfig(eqv_list=("random_crop", "h_flip", "v_flip"))
    right, wrong, params = _equivariance_errors(cfg, lambda vm, b: vm.params(0, range(b), CPU))
    g = params.geometric
    assert (g.size < g.grid).all()
    assert g.h_flip.any() and g.v_flip.any() and not g.h_flip.all()
    assert right < 0.03, right  # 1 res2-pixel misalignment gives ~0.04
    assert wrong > 3 * right, (right, wrong)


@pytest.mark.parametrize("h_flip, v_flip", [(True, False), (False, True), (True, True)])
def test_equivariance_with_forced_flips(h_flip, v_flip):
    cfg = T.AugmentConfig(eqv_list=("random_crop", "h_flip", "v_flip"))
    grid = RES1 // 4

    def fn(vm, batch):
        p = vm.params(0, range(batch), CPU)
        geo = dataclasses.replace(p.geometric, h_flip=torch.full((batch,), h_flip),
                                  v_flip=torch.full((batch,), v_flip))
        return dataclasses.replace(p, geometric=geo)

    right, wrong, _ = _equivariance_errors(cfg, fn)
    assert right < 0.03 and wrong > 3 * right, (right, wrong)
    # Forgetting the flip on the feature side is caught.
    vm = T.ViewMaker(cfg, RES1, seed=3)
    net = _pointwise_net()
    x = _smooth_uint8(4, RES2, 6, seed=2)
    params = fn(vm, 4)
    noflip = dataclasses.replace(params, geometric=dataclasses.replace(
        params.geometric, h_flip=torch.zeros(4, dtype=torch.bool), v_flip=torch.zeros(4, dtype=torch.bool)))
    with torch.no_grad():
        v1, v2 = vm.views(x, params)
        z1, f2 = net(v1), net(v2)
        err = float((z1 - vm.geometric_on_features(f2, params)).abs().mean())
        err_noflip = float((z1 - vm.geometric_on_features(f2, noflip)).abs().mean())
    assert grid == params.geometric.grid
    assert err_noflip > 3 * err


def test_equivariance_is_exact_without_crop():
    """No crop: G is only flips, both sides resize the same way, so the match is exact."""
    cfg = T.AugmentConfig(eqv_list=("h_flip", "v_flip"))
    right, _, params = _equivariance_errors(cfg, lambda vm, b: vm.params(0, range(b), CPU), check_wrong=False)
    assert params.geometric.h_flip.any()
    assert right < 1e-5


# ----------------------------------------------------------------------------------------
# ViewMaker
# ----------------------------------------------------------------------------------------
def test_views_shapes_normalisation_and_determinism():
    cfg = T.AugmentConfig(inv_list=T.PHOTOMETRIC_OPS, eqv_list=("random_crop", "h_flip"))
    vm = T.ViewMaker(cfg, res1=32, seed=11)
    x = _smooth_uint8(4, 64, 5, seed=4)
    x_copy = x.clone()
    idx = [3, 17, 5, 8]
    v1, v2 = vm.views(x, vm.params(2, idx, CPU))
    assert torch.equal(x, x_copy)  # input untouched
    for v in (v1, v2):
        assert v.shape == (4, 3, 32, 32) and v.dtype == torch.float32
        rgb = _unnormalize(v)
        assert rgb.min() >= -1e-5 and rgb.max() <= 1 + 1e-5
    # Normalised: an all-grey-0.5 batch with nothing enabled maps to (0.5 - mean) / std.
    plain = T.ViewMaker(T.AugmentConfig(), res1=32, seed=0)
    half = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    p1, p2 = plain.views(half, plain.params(0, [0], CPU))
    torch.testing.assert_close(p1, ((128 / 255 - MEAN) / STD).expand(1, 3, 32, 32))
    torch.testing.assert_close(p2, p1)
    # Second pass of the same epoch (fresh params object): identical views.
    w1, w2 = vm.views(x.clone(), vm.params(2, idx, CPU))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    # Same images in another batch composition: same per-image views.
    u1, u2 = vm.views(x[[2, 0]].clone(), vm.params(2, [5, 3], CPU))
    torch.testing.assert_close(u1, v1[[2, 0]])
    torch.testing.assert_close(u2, v2[[2, 0]])
    # Another epoch: different views.
    e1, e2 = vm.views(x.clone(), vm.params(3, idx, CPU))
    for a, b in ((v1, e1), (v2, e2)):
        assert all(not torch.allclose(a[i], b[i]) for i in range(4))
    # The two views of one image differ (different P, G only on view 1).
    assert not torch.allclose(v1, v2)


def test_views_without_equivariance_share_geometry():
    vm = T.ViewMaker(T.AugmentConfig(inv_list=("brightness",), jitter_p=1.0), res1=32, seed=1)
    assert not vm.equivariant
    x = _smooth_uint8(2, 64, 4)
    params = vm.params(0, [0, 1], CPU)
    v1, v2 = vm.views(x, params)
    feats = torch.rand(2, 5, 8, 8)
    assert vm.geometric_on_features(feats, params) is feats
    # Only brightness differs between the views: pixel ratios follow the factors (no clamping at 0.5).
    ratio = _unnormalize(v1) / _unnormalize(v2).clamp_min(1e-6)
    expect = params.photometric1.brightness / params.photometric2.brightness
    dark = _unnormalize(v2) < 0.6
    for i in range(2):
        torch.testing.assert_close(ratio[i][dark[i]].median(), expect[i], atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------------------
# Transform lists from the command line (config/from_args.py)
# ----------------------------------------------------------------------------------------
def _args(*argv):
    return config.get_args_parser().parse_args(list(argv))


def test_grey_switch_yields_grey():
    inv, eqv = config.resolve_transform_lists(_args("--augment", "--grey"))
    assert inv == ["grey"] and eqv == []
    cfg = config.augment_config(_args("--augment", "--grey"))
    assert "grey" in cfg.inv_list
    # ... and it really takes effect in the draws (the original looked for 'gray').
    p = T.draw_view_params(cfg, 1, 0, range(500), 8)
    assert 0.15 < float(p.photometric1.grey_on.float().mean()) < 0.25


def test_original_training_switches():
    args = _args("--augment", "--jitter", "--blur", "--grey", "--equiv", "--random_crop", "--h_flip")
    inv, eqv = config.resolve_transform_lists(args)
    assert inv == ["brightness", "contrast", "saturation", "hue", "grey", "blur"]
    assert eqv == ["random_crop", "h_flip"]
    cfg = config.augment_config(args)
    assert cfg.inv_list == tuple(inv) and cfg.eqv_list == tuple(eqv)
    assert (cfg.jitter_strength, cfg.hue_range, cfg.jitter_p, cfg.grey_p, cfg.blur_p) == (0.3, 0.1, 0.8, 0.2, 0.5)
    assert tuple(cfg.blur_sigma) == (0.1, 2.0) and cfg.min_scale == 0.5


def test_switches_need_their_master_flag():
    assert config.resolve_transform_lists(_args("--jitter", "--grey", "--h_flip")) == ([], [])
    assert config.resolve_transform_lists(_args("--augment", "--equiv")) == ([], [])
    assert config.resolve_transform_lists(_args()) == ([], [])


def test_explicit_lists():
    inv, eqv = config.resolve_transform_lists(_args("--inv_list", "brightness", "--eqv_list", "h_flip"))
    assert inv == ["brightness"] and eqv == ["h_flip"]
    inv, eqv = config.resolve_transform_lists(_args("--inv_list", "jitter"))
    assert inv == ["brightness", "contrast", "saturation", "hue"] and eqv == []
    inv, eqv = config.resolve_transform_lists(_args("--inv_list", "blur,grey jitter",
                                                    "--eqv_list", "v_flip,random_crop"))
    assert inv == ["brightness", "contrast", "saturation", "hue", "grey", "blur"]
    assert eqv == ["random_crop", "v_flip"]
    # Added to the switches, without duplicates.
    inv, eqv = config.resolve_transform_lists(_args("--augment", "--grey", "--inv_list", "grey,hue",
                                                    "--equiv", "--h_flip", "--eqv_list", "h_flip"))
    assert inv == ["hue", "grey"] and eqv == ["h_flip"]
    assert config.resolve_transform_lists(_args("--inv_list", "none", "--eqv_list", "none")) == ([], [])
    cfg = config.augment_config(_args("--inv_list", "brightness", "--eqv_list", "h_flip", "--min_scale", "0.7",
                                      "--blur_sigma", "0.2", "1.5"))
    assert cfg.inv_list == ("brightness",) and cfg.eqv_list == ("h_flip",)
    assert cfg.min_scale == 0.7 and tuple(cfg.blur_sigma) == (0.2, 1.5)


@pytest.mark.parametrize("argv, bad", [
    (("--inv_list", "gray"), "gray"),
    (("--inv_list", "brightness,sharpness"), "sharpness"),
    (("--eqv_list", "rotate"), "rotate"),
    (("--eqv_list", "h_flip,blur"), "blur"),
    (("--inv_list", "h_flip"), "h_flip"),
])
def test_unknown_transform_names_raise(argv, bad):
    with pytest.raises(ValueError, match=bad):
        config.resolve_transform_lists(_args(*argv))
    with pytest.raises(ValueError, match=bad):
        config.augment_config(_args(*argv))


def test_augment_config_rejects_bad_values():
    with pytest.raises(ValueError, match="gray"):
        T.AugmentConfig(inv_list=("gray",))
    with pytest.raises(ValueError, match="min_scale"):
        T.AugmentConfig(min_scale=0.0)
    with pytest.raises(ValueError, match="blur_sigma"):
        T.AugmentConfig(blur_sigma=(2.0, 0.1))


def test_photometric_at_view_resolution_is_close_to_base_resolution():
    """The fast order (resize/G first, then P with the blur sigma scaled) differs from the paper's
    literal order (P on the res2 image first) only by interpolation/clamping: < 1% mean abs."""
    cfg = AugmentConfig(inv_list=("brightness", "contrast", "saturation", "hue", "grey", "blur"),
                        eqv_list=("random_crop", "h_flip"), blur_p=1.0)
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(6, 3, 16, 16, generator=generator), size=128,
                                             mode="bicubic", align_corners=False).clamp(0, 1)
    base = (smooth * 255).round().to(torch.uint8)
    fast = ViewMaker(cfg, 64, seed=1, photometric_res="view")
    literal = ViewMaker(cfg, 64, seed=1, photometric_res="base")
    params = fast.params(0, list(range(6)), torch.device("cpu"))
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for a, b in zip(fast.views(base, params), literal.views(base, params), strict=True):
        assert ((a - b) * std).abs().mean() < 0.01
    other = fast.views(base, fast.params(1, list(range(6)), torch.device("cpu")))
    assert ((other[0] - literal.views(base, params)[0]) * std).abs().mean() > 0.02  # the check can fail
