"""test_picie.py: the data and the classes a checkpoint is scored on (the run's recorded data root and
class selection unless given on the command line; a preset's do not count), and how that is said."""
import shutil

import torch

import test_picie
from helpers import assert_one_error_line, evaluate_checkpoint

CPU = ['--device', 'cpu', '--precision', 'fp32', '--num_workers', '0']


def _score(checkpoint, out, *extra):
    return evaluate_checkpoint(checkpoint, out, *CPU, *extra)


def test_the_recorded_data_root_is_used_and_said(tiny_run, tiny_demo, tmp_path, capsys):
    """No --data_root: the run's own data (not datasets/coco), named in the output and the record."""
    result = _score(tiny_run / 'checkpoint.pth', tmp_path / 'm.json')
    assert f'data root: {tiny_demo} (recorded in the checkpoint)' in capsys.readouterr().out
    assert result['evaluation']['data_root'] == str(tiny_demo)
    assert result['evaluation']['data_root_from'] == 'recorded in the checkpoint'


def test_another_data_root_given_on_purpose_is_named(tiny_run, tiny_demo, tmp_path, capsys):
    other = shutil.copytree(tiny_demo, tmp_path / 'other')
    result = _score(tiny_run / 'checkpoint.pth', tmp_path / 'm.json', '--data_root', str(other))
    assert f'data root: {other} (--data_root; the checkpoint was trained on {tiny_demo})' in capsys.readouterr().out
    assert {k: result['evaluation'][k] for k in ('data_root', 'data_root_from', 'trained_data_root')} == {
        'data_root': str(other), 'data_root_from': '--data_root', 'trained_data_root': str(tiny_demo)}


def test_a_recorded_data_root_that_is_gone_is_one_line(tiny_run, tmp_path, capsys):
    ckpt = torch.load(tiny_run / 'checkpoint.pth', weights_only=False)
    gone = tmp_path / 'moved_away'
    ckpt['args']['data_root'] = str(gone)
    torch.save(ckpt, tmp_path / 'checkpoint.pth')
    code = test_picie.cli(['--eval_path', str(tmp_path / 'checkpoint.pth'), *CPU])
    assert_one_error_line(code, capsys.readouterr().err, str(gone), '--data_root DIR')


def test_a_preset_does_not_change_the_checkpoints_classes(tiny_run, tiny_demo, tmp_path):
    """The tiny run is stuff-only (15 clusters): --preset paper (stuff and thing) scores it on its 15 stuff
    classes, as does --preset paper --stuff; --thing alone scores the 12 thing classes."""
    for extra in (['--preset', 'paper'], ['--preset', 'paper', '--stuff']):
        result = _score(tiny_run / 'checkpoint.pth', tmp_path / 'm.json', '--data_root', str(tiny_demo), *extra)
        assert result['evaluation']['n_classes'] == 15, extra
    result = _score(tiny_run / 'checkpoint.pth', tmp_path / 'm.json', '--data_root', str(tiny_demo), '--preset',
                    'paper', '--thing')
    assert result['evaluation']['n_classes'] == 12


def test_fewer_clusters_than_classes_is_said(tiny_run, tiny_demo, tmp_path, capsys):
    """A stuff-only checkpoint scored on all 27 classes on purpose: scored, and the 12 classes left without a
    cluster are said."""
    _score(tiny_run / 'checkpoint.pth', tmp_path / 'm.json', '--stuff', '--thing')
    err = capsys.readouterr().err
    assert 'has 15 clusters for the 27 classes evaluated: 12 classes get no cluster' in err
    assert 'pass --stuff to score it on the classes it was trained for' in err
