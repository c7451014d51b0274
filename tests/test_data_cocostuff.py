"""The COCO-Stuff reader on real COCO images and labels (conftest's coco_mini, built from tests/fixtures)."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from data.build import build_source, val_dataset
from data.cocostuff import build_cocostuff, coco_split_files
from data.cocostuff_classes import FINE_TO_COARSE
from data.datasets import EvalImages, TrainImages
from data.validation import DataError
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
