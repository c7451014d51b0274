"""tools/compare_runs.py on hand-made run folders: unfinished runs, different lengths, runs that
differ only in seed, folders that are not runs, and sh_files/compare_runs.sh."""
import json

import pytest

from helpers import run_script
from tools import compare_runs


def _fake_run(folder, epochs, planned, finished, lr=1e-4, classes=('sky', 'water'), seed=1, miou=15.0):
    folder.mkdir(parents=True)
    cfg = {'lr': lr, 'num_epoch': planned, 'seed': seed, 'K_train': 27, 'run_name': folder.name, 'git_commit': 'abc',
           'augment_config': {'inv_list': ['grey'], 'eqv_list': ['h_flip']}}
    (folder / 'config.json').write_text(json.dumps(cfg))
    lines = []
    for epoch in range(1, epochs + 1):
        view = {'acc': 30.0 + epoch, 'mIoU': 10.0 + epoch, 'per_class_iou': {c: 5.0 * epoch for c in classes}}
        lines.append(json.dumps({'epoch': epoch, 'stage': 'train', 'loss': 3.0 - 0.1 * epoch, 'view1': view,
                                 'view2': view, 'phase_s': {'kmeans': 1.0, 'train': 2.0}}))
    (folder / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
    if finished:
        final = {'epochs': planned, 'acc': 40.0, 'acc_std': 0.5, 'mIoU': miou, 'mIoU_std': 0.25, 'repeats': 3,
                 'thing_mIoU': None, 'stuff_mIoU': 15.0, 'per_class_iou': {c: 12.0 for c in classes},
                 'final_eval_s': 4.0}
        (folder / 'final_metrics.json').write_text(json.dumps(final))
    return folder


def test_compare_runs_handles_unfinished_runs_and_different_lengths(tmp_path, capsys):
    done = _fake_run(tmp_path / 'done', epochs=3, planned=3, finished=True)
    killed = _fake_run(tmp_path / 'killed', epochs=1, planned=5, finished=False, lr=3e-4)
    with open(killed / 'metrics.jsonl', 'a') as handle:
        handle.write('{"epoch": 2, "stage": "tr')  # killed while writing
    out = tmp_path / 'report'
    assert compare_runs.main([str(done), str(killed), '--out', str(out)]) == 0
    report = (out / 'report.md').read_text()
    assert 'Settings that differ: `num_epoch`, `lr`.' in report
    assert '| done | 3 | 0.0001 | 3/3 | 40.00 ± 0.50 (3×) | 15.00 ± 0.25 (3×) | — | 15.00 |' in report
    assert '| killed | 5 | 0.0003 | 1/5 | not finished (no final_metrics.json) |' in report
    assert '| 13s |' in report  # 3 epochs x 3 s of phases + 4 s of final evaluation
    assert '| sky | **12.00** | 5.00 |' in report and 'killed *' in report  # last epoch's IoU, marked
    assert 'line 2 is not valid JSON' in report
    for png in ('miou_per_epoch.png', 'acc_per_epoch.png', 'per_class_iou.png'):
        assert (out / png).is_file()
    rows = (out / 'summary.csv').read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith('run,num_epoch,lr,epochs')


def test_compare_runs_groups_runs_that_differ_only_in_seed(tmp_path):
    runs = [_fake_run(tmp_path / f'seed{seed}' / 'all', 2, 2, True, seed=seed, miou=miou)
            for seed, miou in ((1, 14.0), (2, 10.0), (3, 12.0))]
    runs.append(_fake_run(tmp_path / 'seed1' / 'fast', 2, 2, True, lr=1e-3, miou=20.0))
    out = tmp_path / 'report'
    assert compare_runs.main([*map(str, runs), '--out', str(out)]) == 0
    report = (out / 'report.md').read_text()
    assert '## Across training seeds' in report
    assert '| all | 1, 2, 3 | 14.00, 10.00, 12.00 | 12.00 ± 1.63 |' in report  # population std
    assert '| fast | 1 | 20.00 | 20.00 ± 0.00 |' in report
    assert '| seed1/all |' in report  # same folder names under different parents are told apart


def test_compare_runs_says_hold_out_wherever_it_scores_on_one(tmp_path):
    """Runs on a hold-out root (its HOLDOUT.json) are scored on held-out training images: no line of the
    report may read as a val score."""
    root = tmp_path / 'demo_holdout'
    root.mkdir()
    (root / 'HOLDOUT.json').write_text('{}')
    runs = [_fake_run(tmp_path / name, 1, 1, True, lr=lr) for name, lr in (('base', 1e-4), ('lr', 1e-3))]
    for run in runs:
        config = json.loads((run / 'config.json').read_text())
        (run / 'config.json').write_text(json.dumps(dict(config, data_root=str(root))))
    out = tmp_path / 'report'
    assert compare_runs.main([*map(str, runs), '--out', str(out)]) == 0
    report = (out / 'report.md').read_text()
    assert 'scored on val' not in report and f'scored on the hold-out: val2017 of {root}' in report
    header = next(line for line in report.splitlines() if line.startswith('| run |'))
    assert 'final hold-out mIoU' in header and 'final hold-out acc' in header and ' final mIoU' not in header
    plain = compare_runs.main([str(_fake_run(tmp_path / 'val_run', 1, 1, True)), '--out', str(tmp_path / 'val')])
    assert plain == 0 and 'scored on val' in (tmp_path / 'val' / 'report.md').read_text()


@pytest.mark.parametrize('make, fragment', [
    (lambda p: p.mkdir(), 'no config.json'),
    (lambda p: None, 'is not a folder'),
])
def test_compare_runs_names_a_folder_that_is_not_a_run(tmp_path, capsys, make, fragment):
    good = _fake_run(tmp_path / 'good', epochs=1, planned=1, finished=True)
    bad = tmp_path / 'not_a_run'
    make(bad)
    assert compare_runs.main([str(good), str(bad), '--out', str(tmp_path / 'report')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error:') and str(bad) in err[0] and fragment in err[0]
    assert not (tmp_path / 'report').exists()


def test_compare_runs_wrapper_script(tmp_path):
    run = _fake_run(tmp_path / 'a', epochs=2, planned=2, finished=True)
    done = run_script('compare_runs.sh', {}, str(run), '--out', str(tmp_path / 'r'))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'r' / 'report.md').is_file()
