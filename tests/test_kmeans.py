"""Tests for modules/kmeans.py: initial k-means, online mini-batch updates, assignment backends."""

import itertools

import numpy as np
import pytest
import torch

from modules import kmeans as K

BACKENDS = ["faiss", "torch"]
CPU = torch.device("cpu")


# Tiny tensors: intra-op threads mostly add synchronisation cost on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(n_blobs=5, dim=16, n_points=2000, spread=5.0, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_blobs, dim, generator=g) * spread
    truth = torch.randperm(n_points, generator=g) % n_blobs
    points = centres[truth] + noise * torch.randn(n_points, dim, generator=g)
    return points, centres, truth


def _labels_agree_up_to_permutation(found, truth, k):
    """Every true cluster maps to exactly one found cluster and vice versa."""
    pairs = set(zip(found.tolist(), truth.tolist(), strict=True))
    return len(pairs) == k and len({a for a, _ in pairs}) == k and len({b for _, b in pairs}) == k


# ----------------------------------------------------------------------------------------
# Initial k-means
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_well_separated_blobs(backend):
    """Lloyd's k-means from random initial points can stop in a local minimum (two seeds in one
    blob, one centroid between two blobs), as faiss's own k-means does; the lowest-loss run of a
    few seeds must find the true blobs almost exactly."""
    points, centres, truth = _blobs()
    runs = []
    for seed in range(20):  # each seed finds all five blobs with probability ~1/4
        km = K.MiniBatchKMeans(5, n_iter=20, seed=seed, backend=backend)
        loss = km.fit_init(points)
        runs.append((loss, seed, km))
    loss, seed, km = min(runs, key=lambda r: r[0])
    assert km.centroids.shape == (5, 16) and km.centroids.dtype == torch.float32
    dist = torch.cdist(km.centroids, centres)
    # Each found centroid sits on a different true centre (noise 0.1 in 16-D, 400 points a blob).
    assert dist.min(1).values.max() < 0.05, dist.min(1).values
    assert sorted(dist.argmin(1).tolist()) == list(range(5))
    labels, dists = km.assign(points)
    assert _labels_agree_up_to_permutation(labels, truth, 5)
    # Loss: mean squared distance to the centroid, about dim * noise^2.
    assert loss == pytest.approx(float(dists.double().mean()), rel=1e-5)
    assert loss == pytest.approx(16 * 0.01, rel=0.15)
    # Counts start as the points assigned to each centroid.
    assert sorted(km.counts.tolist()) == sorted(torch.bincount(truth).double().tolist())
    # A local minimum, when one occurs, has a clearly higher loss.
    assert all(r[0] >= loss - 1e-6 for r in runs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_init_is_seeded(backend):
    points, _, _ = _blobs(n_points=600)
    a = K.MiniBatchKMeans(5, n_iter=10, seed=3, backend=backend)
    b = K.MiniBatchKMeans(5, n_iter=10, seed=3, backend=backend)
    a.fit_init(points)
    b.fit_init(points)
    assert torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.counts, b.counts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_init_n_represented_scales_counts(backend):
    points, _, _ = _blobs(n_points=500)
    plain = K.MiniBatchKMeans(5, n_iter=10, seed=0, backend=backend)
    plain.fit_init(points)
    scaled = K.MiniBatchKMeans(5, n_iter=10, seed=0, backend=backend)
    scaled.fit_init(points, n_represented=12_000)
    assert torch.equal(plain.centroids, scaled.centroids)
    assert plain.counts.sum() == pytest.approx(500)
    assert scaled.counts.sum() == pytest.approx(12_000)
    torch.testing.assert_close(scaled.counts, plain.counts * 24)
    assert scaled.counts.dtype == torch.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_fewer_points_than_clusters(backend):
    points = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    km = K.MiniBatchKMeans(5, n_iter=10, seed=0, backend=backend)
    loss = km.fit_init(points)
    assert km.centroids.shape == (5, 3)
    assert torch.isfinite(km.centroids).all() and np.isfinite(loss)
    assert torch.isfinite(km.counts).all()
    assert km.counts.sum() == pytest.approx(3)  # counts stand for the 3 real points
    # Every real point is still (nearly) a centroid.
    assert torch.cdist(points, km.centroids).min(1).values.max() < 0.05
    # The online update keeps working.
    km.partial_fit(points)
    assert torch.isfinite(km.centroids).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distinct", ["random", "one_hot_and_zero"])
def test_more_clusters_than_distinct_points(backend, distinct):
    if distinct == "random":
        base = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    else:  # includes the zero vector, which a multiplicative perturbation cannot move
        base = torch.tensor([[0.0, 0, 0, 0], [1.0, 0, 0, 0], [0.0, 1, 0, 0]])
    points = base.repeat(50, 1)
    km = K.MiniBatchKMeans(6, n_iter=20, seed=0, backend=backend)
    loss = km.fit_init(points)
    assert km.centroids.shape == (6, 4)
    assert torch.isfinite(km.centroids).all() and np.isfinite(loss)
    assert km.counts.sum() == pytest.approx(150)
    # The three distinct points are all represented exactly (up to the split perturbation).
    assert torch.cdist(base, km.centroids).min(1).values.max() < 1e-2
    km.partial_fit(points)
    assert torch.isfinite(km.centroids).all()
    assert km.counts.sum() == pytest.approx(300)


# ----------------------------------------------------------------------------------------
# Online update
# ----------------------------------------------------------------------------------------
def _nearest(points, centroids):
    return torch.cdist(points.double(), centroids.double()).argmin(1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_represented", [None, 4000])
def test_partial_fit_follows_the_paper_rule(backend, n_represented):
    points, _, _ = _blobs(n_blobs=4, dim=8, n_points=400, seed=2)
    km = K.MiniBatchKMeans(4, n_iter=20, seed=0, backend=backend)
    km.fit_init(points, n_represented=n_represented)
    c0 = km.centroids.double().clone()
    count0 = km.counts.clone()
    assert count0.sum() == pytest.approx(n_represented or 400)

    # A new batch, shifted so that the centroids visibly move; one cluster gets no points.
    g = torch.Generator().manual_seed(5)
    far = _nearest(points, c0) != 0
    batch = points[far][:150] + 0.3 + 0.05 * torch.randn(150, 8, generator=g)
    labels = _nearest(batch, c0)
    assert (torch.bincount(labels, minlength=4) == 0).sum() >= 1

    expected = c0.clone()
    expected_counts = count0.clone()
    for k in range(4):
        members = batch[labels == k].double()
        n_k = members.shape[0]
        expected_counts[k] += n_k
        if n_k:
            rate = n_k / expected_counts[k]  # count_k includes the initial counts and this batch
            expected[k] = (1 - rate) * c0[k] + rate * members.mean(0)

    km.partial_fit(batch)
    torch.testing.assert_close(km.counts, expected_counts)
    torch.testing.assert_close(km.centroids.double(), expected, atol=1e-5, rtol=0)
    assert km.centroids.dtype == torch.float32
    # The empty cluster did not move.
    for k in range(4):
        if not (labels == k).any():
            assert torch.equal(km.centroids[k], c0[k].float())

    # A second batch uses the accumulated counts.
    c1, count1 = km.centroids.double().clone(), km.counts.clone()
    batch2 = batch[:40] - 0.2
    labels2 = _nearest(batch2, c1)
    km.partial_fit(batch2)
    for k in range(4):
        members = batch2[labels2 == k].double()
        if members.shape[0]:
            rate = members.shape[0] / (count1[k] + members.shape[0])
            torch.testing.assert_close(km.centroids[k].double(), (1 - rate) * c1[k] + rate * members.mean(0),
                                       atol=1e-5, rtol=0)
    assert km.counts.sum() == pytest.approx((n_represented or 400) + 190)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_with_hand_made_points(backend):
    """Two 1-D clusters, everything computed by hand."""
    km = K.MiniBatchKMeans(2, n_iter=10, seed=0, backend=backend)
    init = torch.tensor([[0.0], [1.0], [2.0], [10.0], [12.0]])
    km.fit_init(init)
    order = km.centroids[:, 0].argsort()
    lo, hi = int(order[0]), int(order[1])
    torch.testing.assert_close(km.centroids[[lo, hi], 0], torch.tensor([1.0, 11.0]))
    assert km.counts[lo] == 3 and km.counts[hi] == 2
    km.partial_fit(torch.tensor([[3.0], [5.0], [9.0]]))
    # lo: count 3 + 2 = 5, rate 2/5, batch mean 4: 0.6 * 1 + 0.4 * 4 = 2.2
    # hi: count 2 + 1 = 3, rate 1/3, batch mean 9: 2/3 * 11 + 1/3 * 9 = 31/3
    torch.testing.assert_close(km.centroids[[lo, hi], 0], torch.tensor([2.2, 31 / 3]))
    assert km.counts[lo] == 5 and km.counts[hi] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_reduce_hook(backend):
    """`reduce` sums statistics over processes; two identical ranks double every count."""
    km = K.MiniBatchKMeans(2, n_iter=10, seed=0, backend=backend)
    km.fit_init(torch.tensor([[0.0], [1.0], [2.0], [10.0], [12.0]]))
    order = km.centroids[:, 0].argsort()
    lo, hi = int(order[0]), int(order[1])
    km.partial_fit(torch.tensor([[3.0], [5.0], [9.0]]), reduce=lambda stats: 2 * stats)
    # lo: count 3 + 4 = 7, rate 4/7, mean 4: 3/7 * 1 + 4/7 * 4 = 19/7
    # hi: count 2 + 2 = 4, rate 1/2, mean 9: 10
    torch.testing.assert_close(km.centroids[[lo, hi], 0], torch.tensor([19 / 7, 10.0]))
    assert km.counts[lo] == 7 and km.counts[hi] == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_running_loss(backend):
    km = K.MiniBatchKMeans(2, n_iter=10, seed=0, backend=backend)
    init = torch.tensor([[0.0], [1.0], [2.0], [10.0], [12.0]])
    km.fit_init(init)  # squared distances 1, 0, 1, 1, 1
    assert km.loss == pytest.approx(4 / 5)
    km.partial_fit(torch.tensor([[1.0], [11.0], [14.0]]))  # distances to 1 and 11: 0, 0, 9
    assert km.loss == pytest.approx(13 / 8)


# ----------------------------------------------------------------------------------------
# Assignment and backends
# ----------------------------------------------------------------------------------------
def test_backends_assign_identically():
    g = torch.Generator().manual_seed(0)
    centroids = torch.randn(27, 32, generator=g)
    points = torch.randn(5000, 32, generator=g)
    points = torch.nn.functional.normalize(points, dim=1)
    out = {}
    for backend in BACKENDS:
        km = K.MiniBatchKMeans(27, backend=backend)
        km._set_centroids(centroids.clone())
        out[backend] = km.assign(points)
    assert torch.equal(out["faiss"][0], out["torch"][0])
    assert out["faiss"][0].dtype == out["torch"][0].dtype == torch.int64
    torch.testing.assert_close(out["faiss"][1], out["torch"][1], atol=1e-4, rtol=1e-4)
    ref = torch.cdist(points.double(), centroids.double())
    assert torch.equal(out["torch"][0], ref.argmin(1))
    torch.testing.assert_close(out["torch"][1].double(), ref.min(1).values ** 2, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_assign_refreshes_after_update(backend):
    """The faiss index is built lazily: it must follow centroid updates."""
    km = K.MiniBatchKMeans(2, n_iter=5, seed=0, backend=backend)
    km.fit_init(torch.tensor([[0.0], [1.0], [10.0], [11.0]]))
    probe = torch.tensor([[4.0]])
    lo = int(km.centroids[:, 0].argmin())
    assert int(km.assign(probe)[0]) == lo
    km._set_centroids(torch.tensor([[100.0], [3.0]]))
    assert int(km.assign(probe)[0]) == 1


def test_assign_before_fit_raises():
    with pytest.raises(RuntimeError):
        K.MiniBatchKMeans(3, backend="torch").assign(torch.zeros(2, 4))


def test_squared_distances():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(50, 7, generator=g), torch.randn(6, 7, generator=g)
    d = K.squared_distances(a, b)
    assert d.shape == (50, 6) and (d >= 0).all()
    torch.testing.assert_close(d, torch.cdist(a, b) ** 2, atol=1e-4, rtol=1e-4)
    assert torch.all(K.squared_distances(b, b).diagonal() < 1e-5)


def test_resolve_backend():
    assert K.resolve_backend("auto", CPU) == "faiss"
    assert K.resolve_backend("auto", torch.device("cuda")) == "torch"
    assert K.resolve_backend("torch", CPU) == "torch"
    assert K.resolve_backend("faiss", CPU) == "faiss"
    for bad in ("sklearn", "FAISS", "", "gpu"):
        with pytest.raises(ValueError, match="kmeans_backend"):
            K.resolve_backend(bad, CPU)
    with pytest.raises(ValueError):
        K.MiniBatchKMeans(3, backend="cuml")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_points_are_reported(backend):
    """Both backends stop with the same FloatingPointError (exit code 3 in the scripts), not
    faiss's own traceback: in the initial k-means, and in the online feed for a NaN in a pixel the
    initial sample does not hold."""
    points, _, _ = _blobs(n_points=100)
    points[3, 2] = float("nan")
    km = K.MiniBatchKMeans(5, n_iter=5, seed=0, backend=backend)
    with pytest.raises(K.NonFiniteFeaturesError, match="non-finite features"):
        km.fit_init(points)
    feats = torch.randn(2, 4, 6, 6)
    feats[1, 0, 5, 5] = float("inf")
    settings = K.KMeansSettings(n_iter=2, num_init_batches=1, num_batches=1, pixels_per_image=2)
    feed = K.OnlineKMeansFeed(K.MiniBatchKMeans(3, 2, seed=0, backend=backend), settings, seed=0, dim=4)
    with pytest.raises(FloatingPointError, match="1 of 288 values"):
        feed.add(feats)


def test_torch_kmeans_max_points_per_centroid():
    points, centres, _ = _blobs(n_blobs=3, dim=4, n_points=3000)
    best = min((K.torch_kmeans(points, 3, 20, seed, max_points_per_centroid=50)[0] for seed in range(5)),
               key=lambda c: float(torch.cdist(points, c).min(1).values.pow(2).mean()))
    assert torch.cdist(best, centres).min(1).values.max() < 0.1


@pytest.mark.parametrize("n_clusters, n_points", list(itertools.product([3, 8], [8, 40])))
def test_torch_kmeans_reseeds_empty_clusters(n_clusters, n_points):
    """Duplicated initial points leave clusters empty; they are split from big ones, not left NaN."""
    points = torch.tensor([[1.0, 2.0], [3.0, -1.0]]).repeat(n_points // 2, 1)
    centroids, reseeded = K.torch_kmeans(points, n_clusters, 10, seed=0)
    assert torch.isfinite(centroids).all()
    assert centroids.shape == (n_clusters, 2)
    assert reseeded >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_cluster_partial_fit(backend):
    km = K.MiniBatchKMeans(1, n_iter=5, seed=0, backend=backend)
    km.fit_init(torch.tensor([[0.0], [2.0]]))
    km.partial_fit(torch.tensor([[4.0], [6.0]]))
    # count 2 + 2, rate 1/2, batch mean 5: 0.5 * 1 + 0.5 * 5 = 3
    torch.testing.assert_close(km.centroids, torch.tensor([[3.0]]))
    assert km.loss == pytest.approx((1 + 1 + 9 + 25) / 4)
