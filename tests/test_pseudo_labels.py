"""The clustering pass (steps 1-2 of an epoch): what it must leave alone and how it seeds k-means."""
import itertools

import pytest
import torch

from data.datasets import TrainImages
from data.transforms import AugmentConfig, ViewMaker
from modules import pseudo_labels
from modules.kmeans import KMeansSettings, MiniBatchKMeans
from modules.networks import build_model
from modules.objectives import PiCIEObjective
from modules.pseudo_labels import PseudoLabelSettings, allocate_labels, cluster_and_label
from utils.dist import EpochSampler
from utils.loaders import make_loader
from utils.runtime import Runtime

CPU = torch.device('cpu')
N_CLUSTERS = 4
SETTINGS = KMeansSettings(n_iter=3, num_init_batches=1, num_batches=1, pixels_per_image=32)
VIEWS = AugmentConfig(inv_list=('brightness', 'grey'), eqv_list=('random_crop', 'h_flip'))


@pytest.fixture(scope='module')
def loader(tiny_demo):
    images = sorted((tiny_demo / 'images' / 'train2017').glob('*.jpg'))[:6]
    dataset = TrainImages(images, 64)
    return make_loader(dataset, 3, EpochSampler(len(dataset), seed=1, shuffle=True), 0, CPU)


def _cluster(model, loader, epoch, seed):
    heads = PiCIEObjective(N_CLUSTERS).heads
    labels = allocate_labels(len(loader.sampler.indices()), 8, heads)
    return cluster_and_label(model, loader, ViewMaker(VIEWS, 32, seed=seed), epoch, heads, labels,
                             PseudoLabelSettings(SETTINGS, seed, l2_normalize=True, feature_cache_bytes=0),
                             Runtime(CPU, progress=False))


def test_clustering_pass_leaves_batchnorm_statistics_untouched(loader):
    """The original ran the k-means pass in training mode, so BatchNorm statistics drifted with
    every batch; here the pass runs the network in eval mode, even if it arrives in train mode."""
    torch.manual_seed(0)
    model = build_model('resnet18', feat_dim=16)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _cluster(model, loader, epoch=0, seed=1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_kmeans_seeds_differ_by_view_epoch_and_seed(loader, monkeypatch):
    """Every k-means of a run gets its own seed (the original seeded all of them with 0): the seeds
    of the two views, of two epochs and of two --seed values are all different, for both the
    k-means initialisation and the choice of sampled pixels."""
    seen = []

    class Recording(MiniBatchKMeans):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(('kmeans', self.seed))

    original_feed = pseudo_labels.OnlineKMeansFeed

    def recording_feed(kmeans, settings, seed, dim):
        seen.append(('sample', seed))
        return original_feed(kmeans, settings, seed, dim)

    monkeypatch.setattr(pseudo_labels, 'MiniBatchKMeans', Recording)
    monkeypatch.setattr(pseudo_labels, 'OnlineKMeansFeed', recording_feed)
    model = build_model('resnet18', feat_dim=16).eval()
    for epoch, seed in itertools.product((0, 1), (1, 2)):
        _cluster(model, loader, epoch, seed)
    for kind in ('kmeans', 'sample'):
        seeds = [s for k, s in seen if k == kind]
        assert len(seeds) == 8 and len(set(seeds)) == 8, (kind, seeds)  # 2 views x 2 epochs x 2 seeds


def test_initial_kmeans_sees_a_sample_and_updates_see_whole_batches(loader, monkeypatch):
    """The k-means memory bound comes from what k-means is given: the initial k-means gets
    pixels_per_image points per image of the init batches (not every pixel, as the original), each
    online update one batch's every pixel."""
    sizes = {'init': [], 'update': []}
    fit_init, partial_fit = MiniBatchKMeans.fit_init, MiniBatchKMeans.partial_fit

    def record_init(self, points, n_represented=None):
        sizes['init'].append(points.shape[0])
        return fit_init(self, points, n_represented)

    def record_update(self, points, reduce=None):
        sizes['update'].append(points.shape[0])
        return partial_fit(self, points, reduce)

    monkeypatch.setattr(MiniBatchKMeans, 'fit_init', record_init)
    monkeypatch.setattr(MiniBatchKMeans, 'partial_fit', record_update)
    _cluster(build_model('resnet18', feat_dim=16).eval(), loader, epoch=0, seed=1)
    grid_cells = 8 * 8
    assert sizes['init'] == [3 * SETTINGS.pixels_per_image] * 2  # one init batch of 3 images, per view
    assert sizes['update'] == [3 * grid_cells] * 2


def test_the_feature_cache_is_released_once_training_used_it(tiny_demo, tmp_path, monkeypatch):
    """The epoch's cache (up to --feature_cache_gb) is emptied after training: the scores, the next
    epoch's clustering pass and the final protocol do not run beside it."""
    import train_picie
    from config import get_args_parser, parse_args, settings_from_args
    seen = []
    score = train_picie.score_epoch

    def spy(model, objective, clusters, *args, **kwargs):
        seen.append((clusters.reused_features, clusters.cache.bytes))
        return score(model, objective, clusters, *args, **kwargs)

    monkeypatch.setattr(train_picie, 'score_epoch', spy)
    args = parse_args(get_args_parser(), ['--preset', 'tiny', '--data_root', str(tiny_demo), '--stuff',
                                          '--save_root', str(tmp_path), '--run_name', 'cache'])
    train_picie.main(settings_from_args(args))
    assert seen and all(reused for reused, _ in seen)  # the cache was used...
    assert all(size == 0 for _, size in seen)  # ...and released before the scores
