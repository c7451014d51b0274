"""tools/seed_summary.py on hand-made run folders: grouping over seeds, sample std, paired differences,
the invariance columns and its one-line errors."""
import json

import pytest

from tools import seed_summary


def _run(root, name, seed, miou, acc=40.0, loss_terms='within_cross', bn=None):
    folder = root / f'{name}_seed{seed}'
    folder.mkdir(parents=True)
    config = {'seed': seed, 'run_name': folder.name, 'loss_terms': loss_terms, 'num_epoch': 2,
              'augment_config': {'inv_list': ['grey'], 'eqv_list': ['h_flip']}}
    (folder / 'config.json').write_text(json.dumps(config))
    records = [{'stage': 'init_bn', 'epoch': 0, 'fresh': {'acc': 20.0, 'mIoU': bn}}] if bn is not None else []
    records.append({'stage': 'train', 'epoch': 1, 'loss': 1.0})
    (folder / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    (folder / 'final_metrics.json').write_text(json.dumps({'acc': acc, 'mIoU': miou, 'mIoU_std': 0.1}))
    return folder


@pytest.fixture
def runs(tmp_path):
    folders = [_run(tmp_path, 'paper', s, m, bn=b) for s, m, b in ((1, 20.0, 10.0), (2, 24.0, 12.0), (3, 22.0, 14.0))]
    folders += [_run(tmp_path, 'within_only', s, m, loss_terms='within') for s, m in ((1, 21.0), (2, 27.0), (3, 26.0))]
    return folders


def test_rows_over_seeds_with_sample_std_and_paired_differences(runs, tmp_path, capsys):
    out = tmp_path / 'report' / 'seeds'
    assert seed_summary.main([*map(str, runs), '--reference', 'paper', '--out', str(out)]) == 0
    text = out.with_suffix('.md').read_text()
    # paper: 20, 24, 22 -> mean 22, sample std 2 (the population std would be 1.63)
    assert '| paper | 1, 2, 3 | 20.00, 24.00, 22.00 | 22.00 ± 2.00 |' in text
    assert '| 12.00 ± 2.00 |' in text  # the untrained network with BatchNorm set: 10, 12, 14
    # within_only - paper, seed by seed: 1, 3, 4
    assert '| 1.00, 3.00, 4.00 | 2.67 ± 1.53 |' in text
    rows = out.with_suffix('.csv').read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith('row,seeds,mIoU per seed')
    assert capsys.readouterr().out == text


def test_invariance_columns_are_grouped_by_row(runs, tmp_path):
    results = {run.name: {'grey': 10.0 * i, 'chance': 20.0} for i, run in enumerate(runs)}
    path = tmp_path / 'inv.json'
    path.write_text(json.dumps({'results': results, 'trained_with': {}}))
    out = tmp_path / 'seeds'
    assert seed_summary.main([*map(str, runs), '--invariance', str(path), '--out', str(out)]) == 0
    text = out.with_suffix('.md').read_text()
    assert '| probe | paper | within_only |' in text
    assert '| grey | 10.00 ± 10.00 | 40.00 ± 10.00 |' in text  # paper: 0, 10, 20; within_only: 30, 40, 50
    assert (tmp_path / 'seeds_invariance.csv').is_file()


def test_a_missing_seed_is_left_out_of_the_difference(runs, tmp_path, capsys):
    assert seed_summary.main([*map(str, runs[:2] + runs[3:]), '--reference', 'paper']) == 0
    assert '| 1.00, 3.00 | 2.00 ± 1.41 |' in capsys.readouterr().out  # seeds 1 and 3 only


@pytest.mark.parametrize('extra, fragment', [(['--reference', 'all'], '--reference all'),
                                             (['--invariance', 'nowhere.json'], '--invariance nowhere.json')])
def test_errors_are_one_line_naming_the_flag(runs, extra, fragment, capsys):
    assert seed_summary.main([*map(str, runs), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error:') and fragment in err[0]


def test_a_foreign_invariance_file_and_an_unwritable_out_are_one_line(runs, tmp_path, capsys):
    foreign = tmp_path / 'other.json'
    foreign.write_text('{"acc": 1}')
    assert seed_summary.main([*map(str, runs), '--invariance', str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'--invariance {foreign}' in err[0]

    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    assert seed_summary.main([*map(str, runs), '--out', str(blocker / 'seeds')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'error: --out {blocker / "seeds"}: cannot write')
