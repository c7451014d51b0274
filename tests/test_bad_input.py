"""Every bad input ends with one clear line naming the path or flag, a non-zero exit, and no loss."""
import hashlib
import pickle
import shutil

import pytest
import torch

import test_picie
from helpers import assert_one_error_line, copy_demo, write_checkpoint
from modules.networks import build_model


def _with_stderr(code, capsys):
    """(exit code, what the run printed on stderr)."""
    return code, capsys.readouterr().err.strip()


def test_missing_data_root(capsys, tmp_path, train):
    missing = tmp_path / 'nope'
    code, err = _with_stderr(train(missing, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, str(missing), '--data_root')


def test_misnamed_image_folder(capsys, tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    (root / 'images' / 'train2017').rename(root / 'images' / 'train')
    code, err = _with_stderr(train(root, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, str(root / 'images' / 'train2017'), 'image folder')


def test_missing_label_folder(capsys, tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    shutil.rmtree(root / 'annotations' / 'val2017')
    code, err = _with_stderr(train(root, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, str(root / 'annotations' / 'val2017'), 'label folder')


def test_missing_curated_list(capsys, tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    (root / 'curated' / 'train2017' / 'Coco164kFull_Stuff_Coarse_7.txt').unlink()
    code, err = _with_stderr(train(root, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, 'Coco164kFull_Stuff_Coarse_7.txt', 'tools.make_curated', '--fullcoco')


def test_listed_image_without_file(capsys, tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    first = (root / 'curated' / 'train2017' / 'Coco164kFull_Stuff_Coarse_7.txt').read_text().split()[0]
    (root / 'images' / 'train2017' / f'{first}.jpg').unlink()
    code, err = _with_stderr(train(root, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, f'{first}.jpg', 'does not exist')


def test_broken_class_map_pickle(capsys, tiny_demo, tmp_path, train):
    root = copy_demo(tiny_demo, tmp_path)
    (root / 'fine_to_coarse_dict.pickle').write_bytes(pickle.dumps({'something': 1}))
    code, err = _with_stderr(train(root, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, str(root / 'fine_to_coarse_dict.pickle'), 'fine_index_to_coarse_index')


def test_unknown_transform_name(capsys, tiny_demo, tmp_path, train):
    code, err = _with_stderr(train(tiny_demo, tmp_path, None, '--inv_list', 'gray'), capsys)
    assert_one_error_line(code, err, '--inv_list', "'gray'")


@pytest.mark.parametrize('content', ['text', 'dict'])
def test_checkpoint_that_is_not_picie(capsys, tiny_demo, tmp_path, content):
    path = tmp_path / 'model.pth'
    if content == 'text':
        path.write_text('not a checkpoint')
    else:
        torch.save({'weights': torch.zeros(3)}, path)
    code = test_picie.cli(['--eval_path', str(path), '--data_root', str(tiny_demo), '--num_workers', '0'])
    assert_one_error_line(code, capsys.readouterr().err, str(path), 'not')


def test_missing_checkpoint(capsys, tiny_demo, tmp_path):
    path = tmp_path / 'missing.pth'
    code = test_picie.cli(['--eval_path', str(path), '--data_root', str(tiny_demo), '--num_workers', '0'])
    assert_one_error_line(code, capsys.readouterr().err, str(path), 'not found')


def test_existing_run_is_never_overwritten(capsys, tiny_demo, tmp_path, train):
    args = [tiny_demo, tmp_path, 'run', '--stuff', '--K_train', '15', '--K_test', '15']
    code, _ = _with_stderr(train(*args), capsys)
    assert code == 0
    checkpoint = tmp_path / 'run' / 'checkpoint.pth'
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    code, err = _with_stderr(train(*args), capsys)
    assert_one_error_line(code, err, str(tmp_path / 'run'), '--restart', '--overwrite')
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    # --overwrite starts afresh but keeps the old files in previous_*/
    code, _ = _with_stderr(train(*args, '--overwrite'), capsys)
    assert code == 0
    kept = list((tmp_path / 'run').glob('previous_*/checkpoint.pth'))
    assert len(kept) == 1 and hashlib.sha256(kept[0].read_bytes()).hexdigest() == digest


def test_unwritable_save_root(capsys, tiny_demo, tmp_path, train):
    blocker = tmp_path / 'file'
    blocker.write_text('a file where a folder should be')
    code, err = _with_stderr(train(tiny_demo, blocker, None), capsys)
    assert_one_error_line(code, err, str(blocker), 'writable')


def test_bad_flag_value(capsys, tiny_demo, tmp_path, train):
    code, err = _with_stderr(train(tiny_demo, tmp_path, None, '--K_train', '1'), capsys)
    assert_one_error_line(code, err, '--K_train')


def test_checkpoint_weights_that_do_not_fit_its_network_are_named(capsys, tiny_demo, tmp_path):
    model = build_model('resnet18_tiny')  # the same FPN code as resnet18, 40x smaller files
    path = write_checkpoint(tmp_path / 'edited.pth', model, {'view1': torch.randn(15, model.feat_dim)})
    ckpt = torch.load(path, weights_only=False)
    weights = ckpt['model']
    del weights['backbone.layer4.1.conv2.weight']
    weights['backbone.extra.weight'] = torch.zeros(3)
    weights['decoder.lateral1.weight'] = torch.zeros(7, 7, 1, 1)
    torch.save(ckpt, path)
    code = test_picie.cli(['--eval_path', str(path), '--data_root', str(tiny_demo), '--num_workers', '0'])
    assert_one_error_line(code, capsys.readouterr().err, 'do not fit a resnet18_tiny FPN',
                     '1 key missing (backbone.layer4.1.conv2.weight)', '1 unexpected key (backbone.extra.weight)',
                     '1 tensor of another shape (decoder.lateral1.weight [7, 7, 1, 1] where the network has '
                     '[128, 16, 1, 1])')


def test_missing_demo_set_says_how_to_make_it(capsys, tmp_path, monkeypatch, train):
    """A fresh clone running the README's --preset example: the missing generated set and the command that makes it."""
    monkeypatch.chdir(tmp_path)  # no datasets/demo_tiny here, whatever the clone holds
    code, err = _with_stderr(train(None, tmp_path / 'runs', None), capsys)
    assert_one_error_line(code, err, '--data_root datasets/demo_tiny not found',
                          'python -m tools.make_demo --preset tiny')
    assert not (tmp_path / 'runs').exists()


def test_restart_on_a_truncated_checkpoint_names_the_ways_on(capsys, tiny_run_copy, tiny_demo, train):
    """--restart on a cut-short checkpoint.pth: one line with the last readable epoch checkpoint and --overwrite;
    nothing is changed, and --restart works once the kept epoch is copied over it."""
    from helpers import TINY_RUN_FLAGS
    run = tiny_run_copy
    good = run / 'checkpoint_epoch2.pth'
    shutil.copy(run / 'checkpoint.pth', good)
    (run / 'checkpoint.pth').write_bytes(good.read_bytes()[:1000])
    before = sorted((p.name, p.read_bytes()) for p in run.iterdir() if p.is_file())
    code, err = _with_stderr(train(tiny_demo, run.parent, run.name, *TINY_RUN_FLAGS, '--restart'), capsys)
    assert_one_error_line(code, err, f'{run / "checkpoint.pth"} is not a readable checkpoint', f'copy {good} over it',
                     '--overwrite instead of --restart')
    assert sorted((p.name, p.read_bytes()) for p in run.iterdir() if p.is_file()) == before
    shutil.copy(good, run / 'checkpoint.pth')
    assert train(tiny_demo, run.parent, run.name, *TINY_RUN_FLAGS, '--restart') == 0
