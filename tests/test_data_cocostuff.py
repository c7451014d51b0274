"""The COCO-Stuff reader on the real sample in ../shared/data/cocostuff_mini."""
import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from data.build import build_source, val_dataset
from data.cocostuff import build_cocostuff, coco_split_files
from data.cocostuff_classes import FINE_TO_COARSE
from data.datasets import EvalImages, TrainImages
from utils.dist import EpochSampler
from utils.loaders import PassLoader


def _manifest(root):
    with open(root / 'manifest.csv') as handle:
        return list(csv.DictReader(handle))


def test_curated_lists_and_fullcoco(coco_mini):
    rows = _manifest(coco_mini)
    train, _ = coco_split_files(coco_mini, 'train2017', fullcoco=False, with_labels=False)
    assert len(train) == 52 == sum(r['in_PiCIE_curated_Coco164kFull_Stuff_Coarse_7'] == 'curated_train' for r in rows)
    full, _ = coco_split_files(coco_mini, 'train2017', fullcoco=True, with_labels=False)
    assert len(full) == 113 == sum(r['split'] == 'train2017' for r in rows)
    source = build_cocostuff(coco_mini)
    assert len(source.val_images) == 50 and source.n_classes == 27
    assert set(p.stem for p in train) <= set(p.stem for p in full)


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
    dataset = EvalImages(train[:40], 64)
    sampler = EpochSampler(len(dataset), seed=3, epoch=1, shuffle=True)
    loader = PassLoader(dataset, 36, sampler, 0, torch.device('cpu'), chunk=8)
    batches = list(loader)
    order = sampler.indices()
    assert [b.indices.tolist() for b in batches] == [order[:36], order[36:]]
    for batch in batches:
        for row, index in enumerate(batch.indices.tolist()):
            assert torch.equal(batch.images[row], dataset[index][1])
