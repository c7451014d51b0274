"""sh_files/sweep_hparams.sh: one setting changed per run (dry runs), scored on a hold-out unless told
otherwise, the tiny preset, and a tiny over-clustering sweep with its metrics and maps."""
import pytest

import config
from helpers import TINY_FLAGS, run_records, train_commands
from helpers import run_script as _script
from tools import visualize


def test_sweep_dry_run_changes_one_setting_per_run():
    done = _script('sweep_hparams.sh', {'DRY_RUN': 1})
    assert done.returncode == 0, done.stderr
    runs = train_commands(done.stdout)
    base = vars(runs.pop('base'))
    changed = {}
    for name, args in runs.items():
        diff = {k: v for k, v in vars(args).items() if base[k] != v and k != 'run_name'}
        changed[name] = diff
    assert changed['K_train_54'] == {'K_train': 54} and changed['K_train_100'] == {'K_train': 100}
    assert runs['K_train_100'].K_test == 27  # over-clustering, scored with 27 classes
    assert changed['lr_1e-3'] == {'lr': 1e-3}
    assert changed['num_init_batches_40'] == {'num_init_batches': 40}
    assert changed['kmeans_n_iter_50'] == {'kmeans_n_iter': 50}
    assert changed['min_scale_0.25'] == {'min_scale': 0.25}
    assert changed['batch_size_train_256'] == {'batch_size_train': 256}
    assert changed['res1_448'] == {'res1': 448, 'res2': 896}
    assert 'K_train_27' not in runs and 'lr_1e-4' not in runs  # the base value is the base run
    done = _script('sweep_hparams.sh', {'DRY_RUN': 1, 'PARAMS': 'K_train learning_rate'})
    assert done.returncode == 2 and "'learning_rate'" in done.stderr


def test_sweep_scores_a_holdout_unless_told_to_use_val(tmp_path):
    """Tuning on val biases the reported val number: by default every run of the sweep reads a hold-out of
    the training images (made by tools/make_holdout.py), and the report folder follows SAVE_ROOT."""
    env = {'DRY_RUN': 1, 'PRESET': 'demo', 'PARAMS': 'lr', 'LRS': '1e-3', 'DATA_ROOT': tmp_path / 'demo'}
    done = _script('sweep_hparams.sh', {**env, 'SAVE_ROOT': 'results/mine'})
    assert done.returncode == 0, done.stderr
    assert f'tools.make_holdout --data_root {tmp_path}/demo --out {tmp_path}/demo_holdout --fraction 0.2' in done.stdout
    runs = train_commands(done.stdout)
    assert {args.data_root for args in runs.values()} == {f'{tmp_path}/demo_holdout'}
    assert '--out reports/mine ' in done.stdout
    holdout = tmp_path / 'ready'
    holdout.mkdir()
    (holdout / 'HOLDOUT.json').write_text('{}')
    done = _script('sweep_hparams.sh', {**env, 'DATA_ROOT': holdout})
    assert 'make_holdout' not in done.stdout
    assert {args.data_root for args in train_commands(done.stdout).values()} == {str(holdout)}
    assert '--out reports/sweep_hparams_demo_holdout ' in done.stdout
    done = _script('sweep_hparams.sh', {**env, 'SCORE_ON_VAL': 1})
    assert 'make_holdout' not in done.stdout and 'val split' in done.stdout
    assert {args.data_root for args in train_commands(done.stdout).values()} == {f'{tmp_path}/demo'}
    assert '--out reports/sweep_hparams_demo_val ' in done.stdout
    paper = _script('sweep_hparams.sh', {'DRY_RUN': 1, 'PARAMS': 'lr', 'LRS': '1e-3'})
    assert '--data_root datasets/coco --out datasets/coco_holdout --n_holdout 2000' in paper.stdout


def test_tiny_preset_uses_the_test_suites_tiny_flags():
    runs = train_commands(_script('sweep_hparams.sh', {'DRY_RUN': 1, 'TINY': 1, 'PARAMS': 'lr'}).stdout)
    tiny = vars(config.parse_args(config.get_args_parser(), TINY_FLAGS))
    base = vars(runs['base'])
    for key in ('res', 'res1', 'res2', 'batch_size_cluster', 'batch_size_train', 'batch_size_test',
                'num_init_batches', 'kmeans_n_iter', 'num_workers', 'device', 'precision'):
        assert base[key] == tiny[key], key


@pytest.fixture(scope='module')
def sweep(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp('sweep')
    done = _script('sweep_hparams.sh', {'TINY': 1, 'DATA_ROOT': tiny_demo, 'SAVE_ROOT': root / 'runs',
                                        'REPORT_DIR': root / 'report', 'PARAMS': 'K_train'})
    assert done.returncode == 0, done.stdout + done.stderr
    return root, done.stdout


def test_overclustering_epochs_report_majority_and_fresh_k_test(sweep):
    root, stdout = sweep
    assert '[base] done' in stdout and '[K_train_30] done' in stdout
    record = run_records(root / 'runs' / 'K_train_30')[-1]
    for view in ('view1', 'view2'):
        assert record[view]['matching'] == 'hungarian'
        assert len(record[view]['cluster_to_class']) == 30
        assert record[view]['majority']['matching'] == 'majority'
        assert record[view]['majority']['acc'] >= record[view]['acc'] - 1e-9  # many-to-one can only gain
    fresh = record['fresh_K_test']
    assert fresh['K'] == 15 and fresh['matching'] == 'hungarian' and 'fresh k-means' in fresh['protocol']
    assert len(fresh['per_class_iou']) == 15 and 0 <= fresh['mIoU'] <= 100
    assert 'eval_fresh' in record['phase_s']
    base = run_records(root / 'runs' / 'base')[-1]
    assert 'fresh_K_test' not in base and 'majority' not in base['view1']
    report = (root / 'report' / 'report.md').read_text()
    assert 'Settings that differ: `K_train`' in report and 'fresh K_test' in report


def test_visualize_majority_matching_of_an_overclustered_run(sweep, tiny_demo, tmp_path):
    checkpoint = sweep[0] / 'runs' / 'K_train_30' / 'checkpoint.pth'
    argv = ['--eval_path', str(checkpoint), '--data_root', str(tiny_demo), '--n_images', '1',
            '--out_dir', str(tmp_path), '--device', 'cpu', '--num_workers', '0', '--matching', 'majority']
    assert visualize.main(argv) == 0
    assert (tmp_path / 'cluster_map_000.png').is_file()
