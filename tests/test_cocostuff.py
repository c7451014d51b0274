"""data/cocostuff.py, the COCO-Stuff reader, on real COCO images and labels (conftest's coco_mini,
built from tests/fixtures)."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from data.build import val_dataset
from data.cocostuff import build_cocostuff, coco_split_files
from data.cocostuff_classes import (
    FINE171_NAMES,
    FINE171_VALUES,
    FINE_TO_COARSE,
    STUFF171_CLASSES,
    THING171_CLASSES,
    UNUSED_FINE,
    fine171_lut,
)
from data.datasets import EvalImages, TrainImages
from data.validation import DataError
from modules.metrics import confusion_histogram, segmentation_metrics
from utils.dist import EpochSampler
from utils.loaders import PassLoader


def test_curated_lists_and_fullcoco(coco_mini):
    """The curated list picks its 5 train images in list order; --fullcoco reads all 8 in the folder."""
    listed = (coco_mini / 'curated/train2017/Coco164kFull_Stuff_Coarse_7.txt').read_text().split()
    train, _ = coco_split_files(coco_mini, 'train2017', fullcoco=False, with_labels=False)
    assert [p.stem for p in train] == listed and len(train) == 5
    full, _ = coco_split_files(coco_mini, 'train2017', fullcoco=True, with_labels=False)
    assert len(full) == 8 == len(list((coco_mini / 'images/train2017').glob('*.jpg')))
    source = build_cocostuff(coco_mini)
    assert len(source.val_images) == 8 and source.n_classes == 27 and source.eval_split == 'val2017'
    assert set(p.stem for p in train) <= set(p.stem for p in full)


def test_val_only_root_scores_without_train_images(coco_val_root):
    """Scoring a stored classifier reads only the val split; training needs the train split."""
    source = build_cocostuff(coco_val_root, need_train=False)
    assert len(source.val_images) == 8 and source.train_images == []
    with pytest.raises(DataError, match='images/train2017'):
        build_cocostuff(coco_val_root)


@pytest.mark.parametrize('stuff,thing,n', [(True, True, 27), (True, False, 15), (False, True, 12)])
def test_label_mapping_gives_coarse_classes(coco_mini, stuff, thing, n):
    source = build_cocostuff(coco_mini, stuff=stuff, thing=thing)
    dataset = val_dataset(source, 320)
    table = pickle.load(open(coco_mini / 'fine_to_coarse_dict.pickle', 'rb'))['fine_index_to_coarse_index']
    assert [table[i] for i in range(182)] == list(FINE_TO_COARSE)
    for i in range(3):
        _, image, label = dataset[i]
        assert image.shape == (3, 320, 320) and image.dtype == torch.uint8
        assert label.shape == (320, 320)
        # Expected: the raw PNG resized (nearest) and center-cropped, then mapped by the official table.
        raw = Image.open(source.val_labels[i])
        w, h = raw.size
        scale = 320 / min(w, h)
        resized = raw.resize((max(320, int(w * scale)), max(320, int(h * scale))), Image.NEAREST)
        left, top = round((resized.size[0] - 320) / 2), round((resized.size[1] - 320) / 2)
        crop = np.asarray(resized.crop((left, top, left + 320, top + 320)))
        coarse = np.array([table.get(int(v), -1) if v < 182 else -1 for v in range(256)])[crop]
        if stuff and not thing:
            expected = np.where(coarse >= 12, coarse - 12, -1)
        elif thing and not stuff:
            expected = np.where((coarse >= 0) & (coarse < 12), coarse, -1)
        else:
            expected = coarse
        assert (label.numpy() == expected).mean() > 0.999  # resize rounding may differ on a few edge pixels
        assert label.max() < n


def test_train_images_are_base_crops(coco_mini):
    train, _ = coco_split_files(coco_mini, 'train2017', with_labels=False)
    dataset = TrainImages(train, 640)
    index, image = dataset[0]
    assert index == 0 and image.shape == (3, 640, 640) and image.dtype == torch.uint8


def test_chunked_loader_gives_the_same_batches_as_plain_batching(coco_mini):
    """The chunked loader (PassLoader) is a fast path: same indices, same pixels, same order."""
    train, _ = coco_split_files(coco_mini, 'train2017', fullcoco=True, with_labels=False)
    dataset = EvalImages(train, 64)
    sampler = EpochSampler(len(dataset), seed=3, epoch=1, shuffle=True)
    loader = PassLoader(dataset, 6, sampler, 0, torch.device('cpu'), chunk=4)
    batches = list(loader)
    order = sampler.indices()
    assert [b.indices.tolist() for b in batches] == [order[:6], order[6:]]
    for batch in batches:
        for row, index in enumerate(batch.indices.tolist()):
            assert torch.equal(batch.images[row], dataset[index][1])


# -- COCO-Stuff-171 on the real fixtures ----------------------------------------------------------------
def _raw_labels(root):
    """The 8 val label maps as stored (uint8 stuffthingmaps values), in curated-list order."""
    _, labels = coco_split_files(root, 'val2017', with_labels=True)
    return [np.asarray(Image.open(path)) for path in labels]


def test_fixture_label_maps_hold_41_fine_values(coco_val_root):
    """41 distinct fine values between 0 and 176, and 255 (unlabelled): 42 distinct values in all."""
    values = sorted(set().union(*(np.unique(raw).tolist() for raw in _raw_labels(coco_val_root))))
    fine = [v for v in values if v != 255]
    assert len(fine) == 41 and (fine[0], fine[-1]) == (0, 176) and values[-1] == 255 and len(values) == 42
    assert not set(values) & set(UNUSED_FINE)  # the removed ids never occur


def test_171_source_reads_the_same_images_with_fine_classes(coco_mini):
    coarse, fine = build_cocostuff(coco_mini), build_cocostuff(coco_mini, coco_classes=171)
    assert fine.val_images == coarse.val_images and fine.train_images == coarse.train_images  # same curated lists
    assert fine.n_classes == 171 and fine.class_names == list(FINE171_NAMES) and fine.label_set == 'COCO-Stuff-171'
    assert coarse.label_set == 'COCO-Stuff-27' and coarse.thing_classes == tuple(range(12))
    assert fine.thing_classes == tuple(range(80)) and fine.stuff_classes == tuple(range(80, 171))
    stuff = build_cocostuff(coco_mini, stuff=True, thing=False, coco_classes=171)
    assert stuff.n_classes == 91 and stuff.thing_classes == stuff.stuff_classes == ()
    # The evaluation dataset yields the fine classes: each labelled pixel is the class of its PNG value.
    _, _, label = val_dataset(fine, 64)[0]
    raw = _raw_labels(coco_mini)[0]
    assert set(label.unique().tolist()) - {-1} <= {FINE171_VALUES.index(v) for v in np.unique(raw) if v < 182}


def _hand_histogram(raws, predict):
    """hist[class, cluster] over the 171 classes, counted pixel by pixel in plain Python dictionaries:
    the class of a value is its rank among the kept values 0..181 (the removed ids left out)."""
    kept = [v for v in range(182) if v not in (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)]
    class_of = {v: c for c, v in enumerate(kept)}
    counts = {}
    for raw in raws:
        values, n = np.unique(raw, return_counts=True)
        for value, count in zip(values.tolist(), n.tolist(), strict=True):
            if value in class_of:
                key = (class_of[value], predict(class_of[value]))
                counts[key] = counts.get(key, 0) + count
    hist = np.zeros((171, 171), dtype=np.int64)
    for (cls, cluster), count in counts.items():
        hist[cls, cluster] = count
    return hist


def test_171_histogram_and_hungarian_on_the_fixtures(coco_val_root):
    """On the 8 real label maps at full size: clusters = classes shifted by one, except that every pixel
    of 'sky-other' is predicted as the cluster of 'fog' (both stuff, fog the larger). Hungarian matching
    must undo the shift, and the scores follow by hand from the pixel counts."""
    raws = _raw_labels(coco_val_root)
    sky, fog = FINE171_NAMES.index('sky-other'), FINE171_NAMES.index('fog')

    def predict(cls):
        return (fog + 1) % 171 if cls == sky else (cls + 1) % 171

    expected = _hand_histogram(raws, predict)
    lut = torch.from_numpy(fine171_lut().astype(np.int64))
    hist = sum(confusion_histogram(lut[torch.from_numpy(raw.astype(np.int64))],
                                   torch.from_numpy(np.vectorize(predict)(np.maximum(fine171_lut()[raw], 0))), 171)
               for raw in raws)
    assert np.array_equal(hist.numpy(), expected)
    present = np.flatnonzero(expected.sum(1))
    n_sky, n_fog = expected.sum(1)[sky], expected.sum(1)[fog]
    assert len(present) == 41 and 0 < n_sky < n_fog  # a class per fine value; sky the smaller
    metrics = segmentation_metrics(hist, FINE171_NAMES, THING171_CLASSES, STUFF171_CLASSES)
    assert all(metrics['cluster_to_class'][(c + 1) % 171] == c for c in present if c != sky)
    total = expected.sum()
    assert metrics['acc'] == pytest.approx(100 * (total - n_sky) / total)
    iou = {c: 1.0 for c in present}
    iou[sky], iou[fog] = 0.0, n_fog / (n_fog + n_sky)
    assert metrics['mIoU'] == pytest.approx(100 * np.mean(list(iou.values())))
    things = [c for c in present if c < 80]
    stuffs = [c for c in present if c >= 80]
    assert things and stuffs
    assert metrics['thing_mIoU'] == pytest.approx(100.0)
    assert metrics['stuff_mIoU'] == pytest.approx(100 * np.mean([iou[c] for c in stuffs]))
    assert metrics['per_class_iou']['sky-other'] == 0.0 and metrics['per_class_iou']['wood'] is None


def test_fullcoco_lists_the_folder_once(coco_mini, monkeypatch):
    """--fullcoco reads the image folder in one listing (a glob per image read COCO's 118,287-file
    folder once per image), and an id with two files (x.jpg and x.png) is one image."""
    folder = coco_mini / 'images/train2017'
    first = sorted(folder.glob('*.jpg'))[0]
    twin = first.with_suffix('.png')
    twin.write_bytes(first.read_bytes())
    try:
        monkeypatch.setattr(type(folder), 'glob', lambda *a, **k: (_ for _ in ()).throw(AssertionError('glob')))
        full, _ = coco_split_files(coco_mini, 'train2017', fullcoco=True, with_labels=False)
    finally:
        twin.unlink()
    assert len(full) == 8 and len({p.stem for p in full}) == 8 and first in full
