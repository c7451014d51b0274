"""benchmarks/bench_scale.py, the rehearsal at COCO-Stuff's size, at a size the suite can afford."""
import json

from benchmarks import bench_scale
from helpers import assert_one_error_line


def test_bench_scale_measures_every_step_and_removes_its_tree(tmp_path, capsys):
    """One small size end to end: every step of the run and of its --restart is measured, the report
    and its JSON are written, and the temporary tree is gone afterwards."""
    out = tmp_path / 'report'
    work = tmp_path / 'work'
    work.mkdir()
    assert bench_scale.main(['--sizes', '24', '--total_train', '40', '--total_val', '12', '--train_steps', '1',
                             '--work_dir', str(work), '--out', str(out)]) == 0
    text = capsys.readouterr().out
    for step in bench_scale.STEPS:
        assert any(line.startswith(step + ' ') for line in text.splitlines()), step
    result = json.loads(out.with_suffix('.json').read_text())['results']['24']
    assert set(result['steps']) == set(bench_scale.STEPS)
    assert result['steps']['train']['n_steps'] == 1 and result['n_val'] == 7
    assert result['steps']['checkpoint']['written_mb'] > 0 and result['files_mb']['checkpoint.pth'] > 0
    assert list(work.iterdir()) == []  # the tree and the runs are removed


def test_tree_has_the_file_counts_and_curated_lists_of_the_given_lengths(tmp_path):
    curated = bench_scale.write_tree(tmp_path / 'tree', total_train=30, total_val=10)
    assert len(list((tmp_path / 'tree/images/train2017').iterdir())) == 30
    assert len(list((tmp_path / 'tree/annotations/val2017').iterdir())) == 10
    assert len(curated['train2017']) == 30 and len(set(curated['train2017'])) == 30
    root = bench_scale.root_of_size(tmp_path / 'tree', curated, 5, 2, tmp_path / 'root')
    listed = (root / 'curated/train2017' / bench_scale.CURATED_NAME).read_text().split()
    assert listed == curated['train2017'][:5] and all((root / f'images/train2017/{i}.jpg').is_file() for i in listed)


def test_growth_exponent():
    assert bench_scale.exponent(1.0, 10.0, 1000, 10000) == 1.0
    assert abs(bench_scale.exponent(1.0, 100.0, 1000, 10000) - 2.0) < 1e-9
    assert bench_scale.exponent(0.01, 1.0, 1000, 10000) is None  # too short to say


def test_bad_size_is_one_line(capsys):
    code = bench_scale.main(['--sizes', '50', '--total_train', '40'])
    assert_one_error_line(code, capsys.readouterr().err, '--sizes 50')
