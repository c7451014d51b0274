"""--dataset folder: training on every image of a folder tree (real COCO images copied from
../shared/data/cocostuff_mini), evaluation only with a label folder, and tools/visualize.py."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import test_picie
import train_picie
from data.cocostuff_classes import FINE_TO_COARSE
from data.folder import find_images, folder_source
from helpers import TINY_FLAGS, error_lines, write_checkpoint
from modules.networks import build_model
from tools import visualize

FLAGS = [*TINY_FLAGS, '--dataset', 'folder', '--K_train', '8', '--K_test', '8', '--num_epoch', '1']


@pytest.fixture(scope='module')
def image_tree(coco_mini, tmp_path_factory):
    """7 real images in nested folders, as .jpg, .JPG and .png, and label PNGs (27 coarse classes,
    255 unlabelled) for 6 of them under a label folder placed inside the image folder."""
    root = tmp_path_factory.mktemp('folder') / 'photos'
    ids = sorted(p.stem for p in (coco_mini / 'images' / 'train2017').glob('*.jpg'))[:7]
    places = ['a/{}.jpg', 'a/{}.jpg', 'b/c/{}.JPG', 'b/c/{}.png', 'b/{}.jpg', '{}.jpg', 'd/e/f/{}.jpg']
    lut = np.full(256, 255, dtype=np.uint8)
    lut[:len(FINE_TO_COARSE)] = FINE_TO_COARSE
    for image_id, place in zip(ids, places, strict=True):
        target = root / place.format(image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = coco_mini / 'images' / 'train2017' / f'{image_id}.jpg'
        if target.suffix == '.png':
            Image.open(source).convert('RGB').save(target)
        else:
            shutil.copy(source, target)
        if image_id != ids[-1]:  # the last image has no label map
            fine = np.asarray(Image.open(coco_mini / 'annotations' / 'train2017' / f'{image_id}.png'))
            label = root / 'labels' / place.format(image_id).rsplit('.', 1)[0]
            label.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(lut[fine]).save(label.with_suffix('.png'))
    (root / 'notes.txt').write_text('not an image')
    return root


def test_finds_every_image_recursively(image_tree):
    images = find_images(image_tree, exclude=image_tree / 'labels')
    assert len(images) == 7 and images == sorted(images)
    assert {p.suffix for p in images} == {'.jpg', '.JPG', '.png'}
    assert len(find_images(image_tree)) == 13  # without the exclusion the label PNGs would be images


def test_unlabelled_folder_trains_and_visualizes(image_tree, tmp_path):
    argv = ['--data_root', str(image_tree), '--save_root', str(tmp_path), '--run_name', 'f', *FLAGS]
    assert train_picie.cli(argv) == 0
    run = tmp_path / 'f'
    record = json.loads((run / 'metrics.jsonl').read_text().splitlines()[-1])
    assert 'view1' not in record and record['n_steps'] == 4  # 13 files found, 13 images (labels included)
    final = json.loads((run / 'final_metrics.json').read_text())
    assert final['n_train_images'] == 13 and 'acc' not in final  # no labels: evaluation skipped
    out = tmp_path / 'maps'
    assert visualize.main(['--eval_path', str(run / 'checkpoint.pth'), '--dataset', 'folder', '--data_root',
                           str(image_tree), '--res', '64', '--device', 'cpu', '--n_images', '2',
                           '--out_dir', str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['cluster_map_000.png', 'cluster_map_001.png', 'legend.png',
                                                      'overview.png']


def test_labelled_folder_is_evaluated(image_tree, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        source = folder_source(image_tree, image_tree / 'labels', 27)
    assert len(source.train_images) == 7 and len(source.val_images) == 6
    assert any('1 of 7 images' in r.getMessage() for r in caplog.records)
    assert [p.stem for p in source.val_images] == [p.stem for p in source.val_labels]
    argv = ['--data_root', str(image_tree), '--label_root', str(image_tree / 'labels'), '--n_classes', '27',
            '--save_root', str(tmp_path), '--run_name', 'fl', *FLAGS]
    assert train_picie.cli(argv) == 0
    final = json.loads((tmp_path / 'fl' / 'final_metrics.json').read_text())
    assert final['n_train_images'] == 7 and final['n_val_images'] == 6
    assert set(final['per_class_iou']) == {f'class_{i}' for i in range(27)} and 0 < final['acc'] <= 100
    ckpt = torch.load(tmp_path / 'fl' / 'checkpoint.pth', weights_only=True)
    assert ckpt['eval_config']['dataset'] == 'folder'
    out = tmp_path / 'maps'
    assert visualize.main(['--eval_path', str(tmp_path / 'fl' / 'checkpoint.pth'), '--dataset', 'folder',
                           '--data_root', str(image_tree), '--label_root', str(image_tree / 'labels'),
                           '--n_classes', '27', '--res', '64', '--device', 'cpu', '--n_images', '1',
                           '--out_dir', str(out)]) == 0
    assert (out / 'cluster_map_000.png').is_file()


@pytest.mark.parametrize('extra, fragment', [
    (['--n_classes', '27'], '--label_root and --n_classes go together'),
    (['--label_root', 'LABELS'], '--label_root and --n_classes go together'),
    (['--label_root', 'MISSING', '--n_classes', '3'], '--label_root'),
])
def test_bad_folder_flags(image_tree, tmp_path, capsys, extra, fragment):
    extra = [str(image_tree / 'labels') if e == 'LABELS' else str(tmp_path / 'none') if e == 'MISSING' else e
             for e in extra]
    code = train_picie.cli(['--data_root', str(image_tree), '--save_root', str(tmp_path), *FLAGS, *extra])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines


def test_empty_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    code = train_picie.cli(['--data_root', str(tmp_path / 'empty'), '--save_root', str(tmp_path), *FLAGS])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and str(tmp_path / 'empty') in lines[0] and '--data_root' in lines[0]


def test_test_picie_without_labels_says_so(image_tree, tmp_path, capsys):
    model = build_model('resnet18_tiny')  # plumbing: the tiny net (small files)
    write_checkpoint(tmp_path / 'c.pth', model, {'view1': torch.randn(8, model.feat_dim)})
    code = test_picie.cli(['--dataset', 'folder', '--data_root', str(image_tree), '--eval_path',
                           str(tmp_path / 'c.pth'), '--device', 'cpu'])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and 'no labelled evaluation images' in lines[0]
