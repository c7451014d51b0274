"""Cityscapes-27: the label mapping on real labelIds, split handling, both views' photometric
transforms, and a training run on a real frame (tests/fixtures/cityscapes: one val frame)."""
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import train_picie
from config import augment_config, get_args_parser, settings_from_args
from data.cityscapes import CLASS_NAMES, cityscapes_source, label_lut, label_path
from data.datasets import EvalImages, TrainImages
from data.transforms import ViewMaker
from data.validation import DataError
from helpers import FIXTURES, TINY_FLAGS, error_lines

N_TRAIN = 3  # copies of the real frame in the train split of the fixture root


@pytest.fixture(scope='module')
def cityscapes_mini(tmp_path_factory):
    """A Cityscapes root in the official layout from the real val pair of tests/fixtures: split val
    holds the frame, split train N_TRAIN copies of it (aachen_00000<i>_000019), labels beside."""
    import shutil
    root = tmp_path_factory.mktemp('cityscapes')
    fixture = FIXTURES / 'cityscapes'
    shutil.copytree(fixture / 'leftImg8bit', root / 'leftImg8bit')
    shutil.copytree(fixture / 'gtFine', root / 'gtFine')
    frame = 'frankfurt_000000_000294'
    for i in range(N_TRAIN):
        for folder, suffix in (('leftImg8bit', 'leftImg8bit'), ('gtFine', 'gtFine_labelIds')):
            target = root / folder / 'train' / 'aachen'
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(fixture / folder / 'val' / 'frankfurt' / f'{frame}_{suffix}.png',
                        target / f'aachen_00000{i}_000019_{suffix}.png')
    return root


def test_class_names_are_label_ids_7_to_33():
    assert len(CLASS_NAMES) == 27
    # Cityscapes labelIds: 7 road, 11 building, 23 sky, 24 person, 26 car, 33 bicycle.
    for label_id, name in ((7, 'road'), (11, 'building'), (23, 'sky'), (24, 'person'), (26, 'car'),
                           (33, 'bicycle')):
        assert CLASS_NAMES[label_id - 7] == name


def test_label_mapping_on_real_label_ids(cityscapes_mini):
    """Pixels per class of a real labelIds map through the lookup table, against a direct mapping."""
    path = cityscapes_mini / 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png'
    raw = np.asarray(Image.open(path))
    assert raw.max() <= 33
    mapped = label_lut()[raw]
    counts = np.bincount(mapped[mapped >= 0], minlength=27)
    expected = np.array([(raw == label_id).sum() for label_id in range(7, 34)])
    np.testing.assert_array_equal(counts, expected)
    assert (mapped == -1).sum() == (raw < 7).sum()  # labelIds 0..6 are ignored
    assert counts[CLASS_NAMES.index('road')] > 0 and counts[CLASS_NAMES.index('car')] > 0


def test_evaluation_labels_follow_the_image_crop(cityscapes_mini):
    """The val frame is 256x128: at res 128 the label is the central 128 columns, mapped."""
    source = cityscapes_source(cityscapes_mini, ['train'], ['val'])
    _, image, label = EvalImages(source.val_images, 128, source.val_labels, source.label_lut)[0]
    raw = np.asarray(Image.open(source.val_labels[0]))
    assert raw.shape == (128, 256) and image.shape == (3, 128, 128)
    np.testing.assert_array_equal(label.numpy(), label_lut()[raw[:, 64:192]])


def test_default_splits_follow_the_original():
    args = get_args_parser().parse_args(['--cityscapes'])
    assert args.cityscapes_train_splits == ['train_extra', 'test']
    assert args.cityscapes_eval_splits == ['val', 'train']
    assert settings_from_args(args).data.dataset == 'cityscapes'


def test_absent_split_is_skipped_with_a_warning(cityscapes_mini, caplog):
    with caplog.at_level(logging.WARNING):
        source = cityscapes_source(cityscapes_mini, ['train', 'train_extra'], ['val', 'test'])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'train_extra'" in w and 'splits found: train, val' in w for w in warnings), warnings
    assert any("'test'" in w for w in warnings), warnings
    assert len(source.train_images) == N_TRAIN and source.cluster_images == source.train_images
    assert len(source.val_images) == 1 and source.val_labels[0].name.endswith('_gtFine_labelIds.png')
    assert source.class_names == list(CLASS_NAMES)
    assert label_path(cityscapes_mini, 'train', source.train_images[0]).is_file()


def test_no_frames_is_one_line_error(cityscapes_mini, tmp_path, capsys):
    """Default training splits (train_extra, test) are absent from the sample: the run stops."""
    code = train_picie.cli(['--cityscapes', '--data_root', str(cityscapes_mini), '--save_root', str(tmp_path),
                            *TINY_FLAGS])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1
    assert '--cityscapes_train_splits train_extra test' in lines[0] and 'found: train, val' in lines[0]
    with pytest.raises(DataError, match='leftImg8bit'):
        cityscapes_source(tmp_path)


def test_both_views_get_photometric_transforms(cityscapes_mini):
    """The original dropped view 1's photometric transform on Cityscapes; here, with --cityscapes,
    both views draw photometric parameters and both change the pixels of a real frame."""
    args = get_args_parser().parse_args(
        ['--cityscapes', '--res1', '64', '--res2', '128', '--augment', '--jitter', '--grey', '--blur',
         '--equiv', '--random_crop', '--h_flip'])
    view_maker = ViewMaker(augment_config(args), args.res1, args.seed)
    frames = cityscapes_source(cityscapes_mini, ['train'], ['train']).train_images
    base = torch.stack([TrainImages(frames, 128)[i][1] for i in range(len(frames))])
    params = view_maker.params(0, list(range(len(frames))), torch.device('cpu'))
    for photometric in (params.photometric1, params.photometric2):
        assert (photometric.brightness != 1).any() and (photometric.blur_sigma > 0).any()
    # The same draws with the photometric ops switched off: only the geometric part remains.
    plain_args = get_args_parser().parse_args(
        ['--cityscapes', '--res1', '64', '--res2', '128', '--equiv', '--random_crop', '--h_flip'])
    plain = ViewMaker(augment_config(plain_args), plain_args.res1, plain_args.seed)
    plain_params = plain.params(0, list(range(len(frames))), torch.device('cpu'))
    torch.testing.assert_close(plain_params.geometric.size, params.geometric.size)  # same crops and flips
    view1, view2 = view_maker.views(base, params)
    plain1, plain2 = plain.views(base, plain_params)
    for changed, unchanged in ((view1, plain1), (view2, plain2)):
        per_image = (changed - unchanged).abs().flatten(1).amax(1)
        assert (per_image > 0.05).float().mean() > 0.5


def test_val_only_root_is_enough_to_score(cityscapes_mini):
    """Scoring reads only the evaluation splits: the training splits may be absent."""
    source = cityscapes_source(FIXTURES / 'cityscapes', eval_splits=['val'], need_train=False)
    assert source.train_images == [] and len(source.val_images) == 1 and source.eval_split == 'val'
    with pytest.raises(DataError, match='--cityscapes_train_splits'):
        cityscapes_source(FIXTURES / 'cityscapes', eval_splits=['val'])


def test_train_and_evaluate_on_real_frames(cityscapes_mini, tmp_path):
    argv = ['--cityscapes', '--data_root', str(cityscapes_mini), '--save_root', str(tmp_path), '--run_name', 'cs',
            '--cityscapes_train_splits', 'train', '--cityscapes_eval_splits', 'train', '--K_train', '27',
            '--K_test', '27', '--num_epoch', '1', '--lr', '1e-3', *TINY_FLAGS]
    assert train_picie.cli(argv) == 0
    record = json.loads((tmp_path / 'cs' / 'metrics.jsonl').read_text().splitlines()[-1])
    assert set(record['view1']['per_class_iou']) == set(CLASS_NAMES)
    final = json.loads((tmp_path / 'cs' / 'final_metrics.json').read_text())
    assert final['n_train_images'] == N_TRAIN and final['n_val_images'] == N_TRAIN
    assert 0 < final['acc'] <= 100 and 'thing_mIoU' not in final  # thing/stuff are COCO groups
    config = json.loads((tmp_path / 'cs' / 'config.json').read_text())
    assert config['dataset'] == 'cityscapes' and config['augment_config']['inv_list']
