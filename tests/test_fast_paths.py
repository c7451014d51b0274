"""Every fast path gives what the straightforward path gives, on small inputs.

- labels from the clustering pass's cached features == labels from recomputed features;
- training on cached views == training on recomputed views (same losses, same weights);
- both classifiers scored in one evaluation pass == each scored in its own pass;
- the k-means working set stays within its bound at a scaled-down setting.
"""
import copy

import numpy as np
import pytest
import torch

from config import get_args_parser, parse_args, settings_from_args
from data.datasets import EvalImages, TrainImages
from data.transforms import AugmentConfig, ViewMaker
from modules.evaluation import evaluate
from modules.kmeans import KMeansSettings, MiniBatchKMeans, OnlineKMeansFeed
from modules.networks import build_model
from modules.objectives import PiCIEObjective
from modules.pseudo_labels import PseudoLabelSettings, allocate_labels, cluster_and_label
from modules.siamese import SiamesePair
from train_picie import Training, train_one_epoch
from utils.dist import EpochSampler
from utils.loaders import make_loader
from utils.runtime import Runtime

CPU = torch.device('cpu')
N_CLUSTERS = 6  # K of the clustering fixtures' heads
CFG = AugmentConfig(inv_list=('brightness', 'contrast', 'saturation', 'hue', 'grey', 'blur'),
                    eqv_list=('random_crop', 'h_flip'))


@pytest.fixture(scope='module')
def setup(tiny_demo):
    torch.manual_seed(0)
    images = sorted((tiny_demo / 'images' / 'train2017').glob('*.jpg'))
    dataset = TrainImages(images, 128)
    sampler = EpochSampler(len(dataset), seed=1, shuffle=True)
    loader = make_loader(dataset, 4, sampler, 0, CPU)
    model = build_model('resnet18', feat_dim=32).eval()
    settings = KMeansSettings(n_iter=5, num_init_batches=1, num_batches=1, pixels_per_image=64)
    return dataset, loader, model, settings


def _cluster(setup, cache_bytes):
    dataset, loader, model, settings = setup
    heads = PiCIEObjective(N_CLUSTERS).heads
    labels = allocate_labels(len(dataset), 16, heads)
    clusters = cluster_and_label(model, loader, ViewMaker(CFG, 64, seed=1), 0, heads, labels,
                                 PseudoLabelSettings(settings, seed=1, l2_normalize=True,
                                                     feature_cache_bytes=cache_bytes),
                                 Runtime(CPU, progress=False))
    return clusters


def test_labels_from_cached_features_equal_recomputed(setup):
    cached = _cluster(setup, 2 ** 30)
    recomputed = _cluster(setup, 0)
    assert cached.reused_features and not recomputed.reused_features
    for view in range(2):
        torch.testing.assert_close(cached.centroids[view], recomputed.centroids[view])
        assert np.array_equal(cached.labels[view], recomputed.labels[view])
        torch.testing.assert_close(cached.counts[view], recomputed.counts[view])


def test_training_on_cached_views_equals_recomputed_views(setup):
    dataset, loader, model, settings = setup
    results = []
    for cache_bytes in (2 ** 30, 0):
        clusters = _cluster(setup, cache_bytes)
        net = copy.deepcopy(model)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        train_sampler = EpochSampler(len(dataset), seed=1, shuffle=True, reshuffle=True)
        train_loader = make_loader(dataset, 4, train_sampler, 0, CPU)
        # The flags' defaults: cosine features (--metric_train), stop at a non-finite loss.
        train = settings_from_args(parse_args(get_args_parser(), [])).train
        training = Training(SiamesePair(net), PiCIEObjective(N_CLUSTERS), optimizer, train_loader,
                            ViewMaker(CFG, 64, seed=1), Runtime(CPU, progress=False), train, class_weights='size')
        stats = train_one_epoch(training, 0, clusters)
        results.append((stats, net.state_dict()))
    (stats_a, state_a), (stats_b, state_b) = results
    assert stats_a['n_steps'] == stats_b['n_steps'] == 3
    assert stats_a['loss'] == pytest.approx(stats_b['loss'], rel=1e-6)
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key])


def test_one_evaluation_pass_for_several_classifiers(tiny_demo, setup):
    _, _, model, _ = setup
    from data.cocostuff import build_cocostuff
    source = build_cocostuff(tiny_demo, stuff=True, thing=False)
    dataset = EvalImages(source.val_images, 64, source.val_labels, source.label_lut)
    loader = make_loader(dataset, 4, EpochSampler(len(dataset), 1, shuffle=False), 0, CPU)
    generator = torch.Generator().manual_seed(0)
    classifiers = [(torch.randn(15, 32, generator=generator), None), (torch.randn(20, 32, generator=generator),
                                                                       torch.randn(20, generator=generator))]
    runtime = Runtime(CPU, progress=False)
    together = evaluate(model, loader, classifiers, 15, runtime, True)
    for hist, classifier in zip(together, classifiers, strict=True):
        alone, = evaluate(model, loader, [classifier], 15, runtime, True)
        assert torch.equal(hist, alone)
        assert int(hist.sum()) == int(sum((dataset[i][2] >= 0).sum() for i in range(len(dataset))))


def test_kmeans_working_set_bound_at_scaled_down_setting():
    """Paper setting scaled down (batch 16, 4 init batches, 20x20 grid, dim 32, 16 pixels/image):
    the k-means-owned memory is the initial sample (plus its concatenated copy), or one online
    batch, never the whole init batches' pixels as in the original."""
    batch, init_batches, grid, dim, per_image = 16, 4, 20, 32, 16
    settings = KMeansSettings(n_iter=3, num_init_batches=init_batches, pixels_per_image=per_image)
    feed = OnlineKMeansFeed(MiniBatchKMeans(5, 3, seed=0, backend='torch'), settings, seed=0, dim=dim)
    generator = torch.Generator().manual_seed(0)
    for step in range(init_batches + 3):
        feats = torch.nn.functional.normalize(torch.randn(batch, dim, grid, grid, generator=generator), dim=1)
        feed.add(feats, torch.arange(step * batch, (step + 1) * batch))
    feed.finish()
    init_sample = init_batches * batch * per_image * dim * 4
    online_batch = batch * grid * grid * dim * 4
    all_pixels = init_batches * batch * grid * grid * dim * 4
    assert feed.peak_bytes <= max(2 * init_sample, online_batch)
    assert feed.peak_bytes <= all_pixels / init_batches  # the original held all_pixels for its initial k-means
