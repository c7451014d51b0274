"""utils/run.py, run folders you can trust: --restart continues the recorded run, a failed start leaves nothing
behind, inputs with nothing to learn stop with one line, strict JSON, and a CLI that guides."""
import json
import logging
import math
import shutil

import pytest
from PIL import Image

import train_picie
from helpers import error_lines, file_hashes, run_records
from utils.run import RunLog, write_json


@pytest.fixture(scope='module')
def finished(tiny_demo, tmp_path_factory, train):
    """A finished run with settings unlike the defaults: K 5, res 64, 1 epoch, no h-flip, lr 3e-4."""
    save_root = tmp_path_factory.mktemp('runs')
    assert train(tiny_demo, save_root, 'tiny', '--K_train', '5',
                  '--K_test', '5', '--eqv_list', 'random_crop', '--lr', '3e-4') == 0
    return save_root / 'tiny'


def test_restart_of_a_finished_run_changes_nothing(finished, tiny_demo):
    before = file_hashes(finished)
    # Only the run's identity: every setting comes from its record, nothing is left to do.
    assert train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(finished.parent), '--run_name',
                            'tiny', '--restart']) == 0
    assert file_hashes(finished) == before


def test_restart_continues_the_recorded_run(finished, tiny_demo, tmp_path, caplog):
    run = tmp_path / 'tiny'
    shutil.copytree(finished, run)
    with caplog.at_level(logging.WARNING):
        assert train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'tiny',
                                '--restart', '--num_epoch', '2', '--num_workers', '0']) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing differs from the record
    records = run_records(run)
    assert [r['epoch'] for r in records] == [1, 2]
    assert len(records[-1]['view1']['cluster_to_class']) == 5  # K 5 from the record, not the default 27
    config = json.loads((run / 'config.json').read_text())
    assert config == json.loads((finished / 'config.json').read_text())  # the record is never rewritten
    assert config['lr'] == 3e-4 and config['augment_config']['eqv_list'] == ['random_crop']


def test_restart_with_a_setting_that_changes_results_stops_or_is_accepted(finished, tiny_demo, tmp_path, capsys):
    run = tmp_path / 'tiny'
    shutil.copytree(finished, run)
    before = file_hashes(run)
    argv = ['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'tiny', '--restart',
            '--num_epoch', '2', '--lr', '1e-3', '--K_train', '6']
    assert train_picie.cli(argv) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and '--lr 0.001 (the run: 0.0003)' in errors[0] and '--K_train 6' in errors[0]
    assert '--accept_changes' in errors[0] and file_hashes(run) == before
    assert train_picie.cli([*argv, '--accept_changes']) == 0
    warnings = capsys.readouterr().err
    assert 'warning: --accept_changes: --lr is 0.001' in warnings


def test_restart_with_a_bad_data_root_leaves_the_folder_byte_for_byte(finished, tmp_path, capsys):
    before = file_hashes(finished)
    assert train_picie.cli(['--data_root', str(tmp_path / 'nowhere'), '--save_root', str(finished.parent),
                            '--run_name', 'tiny', '--restart', '--num_epoch', '3']) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1
    assert file_hashes(finished) == before


def test_fresh_start_with_a_missing_data_root_creates_no_folder(tmp_path, capsys, train):
    assert train(tmp_path / 'nowhere', tmp_path / 'results', 'r') == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and 'nowhere' in errors[0]
    assert not (tmp_path / 'results').exists()


def test_folder_of_unreadable_files_stops_before_any_file(tmp_path, capsys, train):
    images = tmp_path / 'images'
    images.mkdir()
    for i in range(6):
        (images / f'{i}.jpg').write_text('not an image')
    assert train(images, tmp_path / 'results', None, '--dataset', 'folder') == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and 'none of the 6 training images can be read' in errors[0]
    assert not (tmp_path / 'results').exists()


def test_more_clusters_than_feature_vectors_stops_before_any_file(tiny_demo, tmp_path, capsys, train):
    # 12 images at res 64: 12 x 16 x 16 = 3072 feature vectors for the final k-means.
    assert train(tiny_demo, tmp_path / 'results', None, '--K_test', '5000') == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and '--K_test 5000' in errors[0] and '3072' in errors[0]
    assert not (tmp_path / 'results').exists()


def test_labels_without_an_evaluated_class_stop_before_any_file(tiny_demo, tmp_path, capsys, train):
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    for label in (root / 'annotations' / 'val2017').glob('*.png'):
        Image.new('L', Image.open(label).size, 255).save(label)  # every pixel unlabelled
    assert train(root, tmp_path / 'results', None) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and 'nothing to score' in errors[0]
    assert not (tmp_path / 'results').exists()


def test_json_is_strict_and_says_what_was_not_finite(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_json(tmp_path / 'final_metrics.json', {'mIoU': math.nan, 'per_class': [1.0, math.inf]})
        run_log = RunLog(tmp_path)
        run_log.add({'loss': -math.inf})
        run_log.commit()

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f'non-strict JSON constant {name}'))

    assert strict((tmp_path / 'final_metrics.json').read_text()) == {'mIoU': None, 'per_class': [1.0, None]}
    assert strict((tmp_path / 'metrics.jsonl').read_text()) == {'loss': None}
    logged = ' '.join(r.getMessage() for r in caplog.records)
    assert 'final_metrics.json.mIoU' in logged and 'per_class[1]' in logged and 'metrics.jsonl.loss' in logged


def test_picie_without_transforms_warns_on_its_own_line_and_in_train_log(tiny_demo, tmp_path, capsys, train):
    assert train(tiny_demo, tmp_path, 'plain', '--inv_list', 'none',
                  '--eqv_list', 'none', '--num_epoch', '0') == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'without a photometric' in line]
    assert len(warnings) == 1 and warnings[0].startswith('warning: PiCIE without')
    assert 'WARNING PiCIE without a photometric' in (tmp_path / 'plain' / 'train.log').read_text()


@pytest.mark.parametrize('argv, fragment', [
    (['--lr', '-0.01'], '--lr -0.01 must lie in (0, 10]'),
    (['--grey_p', '1.5'], '--grey_p 1.5 must lie in [0, 1]'),
    (['--min_scale', '0'], '--min_scale 0.0 must lie in (0, 1]'),
    (['--max_bad_fraction', '2'], '--max_bad_fraction 2.0'),
])
def test_flag_values_are_checked_up_front_naming_the_flag(argv, fragment, tiny_demo, tmp_path, capsys, train):
    assert train(tiny_demo, tmp_path / 'results', None, *argv) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and fragment in errors[0], errors
    assert not (tmp_path / 'results').exists()


def test_misspelled_flag_suggests_the_closest_one(capsys):
    with pytest.raises(SystemExit) as stop:
        train_picie.cli(['--num_epochs', '3'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and 'did you mean --num_epoch?' in err and len(err.strip().splitlines()) == 1


def test_errors_of_a_started_run_reach_train_log(tiny_demo, tmp_path, monkeypatch, train):
    """A failure after the run folder exists is in train.log too, on its own line."""
    from data.validation import DataError

    def broken(*args, **kwargs):
        raise DataError('a data error in the first epoch')

    monkeypatch.setattr(train_picie, 'cluster_and_label', broken)
    assert train(tiny_demo, tmp_path, 'r') == 2
    assert 'ERROR a data error in the first epoch' in (tmp_path / 'r' / 'train.log').read_text()


def test_the_files_listed_at_the_end_exist_and_follow_the_umask(tiny_demo, tmp_path, capsys, train):
    """--num_epoch 0 (no --eval_init) records no metrics.jsonl, so the last line does not list it; checkpoint.pth
    gets the permissions of the run's other files (the umask's), not a temporary file's 0600."""
    assert train(tiny_demo, tmp_path, 'zero', '--num_epoch', '0') == 0
    run = tmp_path / 'zero'
    last = [line for line in capsys.readouterr().out.splitlines() if line.startswith('results in')][-1]
    assert last == f'results in {run} (final_metrics.json, checkpoint.pth)' and not (run / 'metrics.jsonl').exists()
    mode = (run / 'final_metrics.json').stat().st_mode & 0o777
    assert (run / 'checkpoint.pth').stat().st_mode & 0o777 == mode != 0o600


@pytest.mark.parametrize('damage', ['edited', 'deleted'])
def test_restart_restores_a_broken_or_deleted_config_json(damage, tiny_run_copy, tiny_demo, capsys, train):
    """config.json broken by hand (or deleted) is rewritten from the checkpoint's record on --restart, said on one
    line, and a hand-edited copy is kept beside it; tools/compare_runs.py reads the run again."""
    import torch

    from helpers import TINY_RUN_FLAGS
    from tools.compare_runs import load_run
    run = tiny_run_copy
    if damage == 'edited':
        (run / 'config.json').write_text('{"lr": 0.001,')
    else:
        (run / 'config.json').unlink()
    assert train(tiny_demo, run.parent, run.name, *TINY_RUN_FLAGS, '--restart') == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'config.json' in line]
    assert len(warnings) == 1 and "rewritten from the run's record in checkpoint.pth" in warnings[0], warnings
    recorded = torch.load(run / 'checkpoint.pth', weights_only=False)['args']
    config = json.loads((run / 'config.json').read_text())
    assert config == json.loads(json.dumps(recorded))
    kept = list(run.glob('config.json.broken-*'))
    assert [p.read_text() for p in kept] == (['{"lr": 0.001,'] if damage == 'edited' else [])
    assert load_run(run).config['run_name'] == recorded['run_name']
