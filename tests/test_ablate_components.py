"""sh_files/ablate_components.sh: each row changes one component of PiCIE against the paper row of its
seed (dry runs), rows and seeds are picked and checked, and a tiny run over two seeds reports them."""
import json

import pytest

import config
from helpers import run_records, train_commands
from helpers import run_script as _script


def test_component_ablation_dry_run_changes_one_component_per_row_for_every_seed():
    done = _script('ablate_components.sh', {'DRY_RUN': 1, 'PRESET': 'demo'})
    assert done.returncode == 0, done.stderr
    runs = train_commands(done.stdout)
    rows = ['paper', 'no_photometric', 'no_geometric', 'within_only', 'weights_size', 'weights_inverse', 'one_plus_one']
    assert list(runs) == [f'{row}_seed{seed}' for seed in (1, 2, 3) for row in rows]  # seed by seed
    photo_all = ['brightness', 'contrast', 'saturation', 'hue', 'grey', 'blur']
    geo_all = ['random_crop', 'h_flip']
    # What each row changes against the paper row of its seed, and nothing else (the demo's own
    # class weights are none, so weights_none is the paper row and is not trained twice).
    expected = {'paper': {}, 'no_photometric': {'photometric': []}, 'no_geometric': {'geometric': []},
                'within_only': {'loss_terms': 'within'}, 'weights_size': {'class_weights': 'size'},
                'weights_inverse': {'class_weights': 'inverse'},
                'one_plus_one': {'photometric': ['brightness', 'contrast', 'saturation', 'hue'],
                                 'geometric': ['random_crop']}}

    def resolved(args):
        photo, geo = config.resolve_transform_lists(args)
        skip = {'run_name', 'inv_list', 'eqv_list'}
        return {'photometric': photo, 'geometric': geo, **{k: v for k, v in vars(args).items() if k not in skip}}

    for seed in (1, 2, 3):
        paper = resolved(runs[f'paper_seed{seed}'])
        assert (paper['photometric'], paper['geometric'], paper['seed']) == (photo_all, geo_all, seed)
        assert (paper['loss_terms'], paper['class_weights'], paper['num_epoch'], paper['K_train']) == \
            ('within_cross', 'none', 8, 6)  # the demo preset's
        for row in rows:
            args = resolved(runs[f'{row}_seed{seed}'])
            assert {k: v for k, v in args.items() if paper[k] != v} == expected[row], row
    assert all(args.save_root == 'results/ablate_components_demo' for args in runs.values())
    assert 'tools.invariance' in done.stdout and 'tools.compare_runs' in done.stdout and 'make_demo' in done.stdout
    # The paper preset's own weights are the original's cluster sizes: there the 'none' row is trained.
    paper_preset = train_commands(_script('ablate_components.sh', {'DRY_RUN': 1, 'SEEDS': '2'}).stdout)
    assert 'weights_none_seed2' in paper_preset and 'weights_size_seed2' not in paper_preset
    assert paper_preset['paper_seed2'].class_weights == 'size' and paper_preset['paper_seed2'].pretrain
    assert paper_preset['weights_none_seed2'].class_weights == 'none'


@pytest.mark.parametrize('env, fragment', [
    ({'ROWS': 'paper no_cross'}, "'no_cross'"),
    ({'ROWS': 'weights_none', 'PRESET': 'demo'}, 'weights_none is the demo preset'),
    ({'SEEDS': '1 two'}, 'SEEDS=1 two'),
])
def test_component_ablation_rejects_unknown_rows_and_seeds(env, fragment):
    done = _script('ablate_components.sh', {'DRY_RUN': 1, **env})
    assert done.returncode == 2 and done.stderr.count('error:') == 1 and fragment in done.stderr, done.stderr


def test_component_ablation_picks_rows_and_seeds():
    done = _script('ablate_components.sh', {'DRY_RUN': 1, 'PRESET': 'demo', 'SEEDS': '4', 'ROWS': 'within_only paper',
                                            'PHOTO_1': 'grey', 'GEO_1': 'h_flip'})
    assert done.returncode == 0, done.stderr
    assert list(train_commands(done.stdout)) == ['paper_seed4', 'within_only_seed4']  # the script's order
    done = _script('ablate_components.sh', {'DRY_RUN': 1, 'PRESET': 'demo', 'SEEDS': '1', 'ROWS': 'one_plus_one',
                                            'PHOTO_1': 'grey', 'GEO_1': 'h_flip'})
    args = train_commands(done.stdout)['one_plus_one_seed1']
    assert config.resolve_transform_lists(args) == (['grey'], ['h_flip'])


def test_tiny_component_ablation_runs_end_to_end_over_seeds(tiny_demo, tmp_path):
    # One row over two seeds: the rows' flags are checked without training by the dry-run tests above.
    env = {'TINY': 1, 'DATA_ROOT': tiny_demo, 'SAVE_ROOT': tmp_path / 'runs', 'REPORT_DIR': tmp_path / 'report',
           'SEEDS': '1 2', 'ROWS': 'within_only'}
    done = _script('ablate_components.sh', env)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ('within_only_seed1', 'within_only_seed2'):
        assert f'[{name}] done' in done.stdout
        assert (tmp_path / 'runs' / name / 'final_metrics.json').is_file()
    saved = json.loads((tmp_path / 'runs' / 'within_only_seed2' / 'config.json').read_text())
    assert (saved['seed'], saved['loss_terms']) == (2, 'within')
    # Only the within-view term trains; both parts are still logged.
    record = run_records(tmp_path / 'runs' / 'within_only_seed1')[-1]
    assert record['loss'] == pytest.approx(record['loss_within'], rel=1e-5) and 'loss_cross' in record
    # The seeds of a row are one group of the report, and every checkpoint has its invariance column.
    report = (tmp_path / 'report' / 'report.md').read_text()
    assert '## Across training seeds' in report and '| 1, 2 |' in report
    invariance = json.loads((tmp_path / 'report' / 'invariance.json').read_text())
    assert sorted(invariance['results']) == ['within_only_seed1', 'within_only_seed2']
    assert all('paper views' in scores and 'chance' in scores for scores in invariance['results'].values())
