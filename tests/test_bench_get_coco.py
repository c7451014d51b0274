"""benchmarks/bench_get_coco.py runs end to end and reports what docs/datasets.md quotes."""
import pytest

from benchmarks import bench_get_coco

pytestmark = pytest.mark.usefixtures('local_network_only')


def test_reports_fresh_and_second_run_and_leaves_nothing(tmp_path, capsys):
    work = tmp_path / 'work'
    result = bench_get_coco.main(['--n_train', '3', '--n_val', '2', '--image_kb', '2', '--work', str(work)])
    assert result['files'] == 10 and result['archive_bytes'] > 10 * 1000
    assert result['fresh_s'] > 0 and result['second_s'] > 0
    assert 'already unpacked' in capsys.readouterr().out  # the second run skipped the complete archives
    assert not work.exists()
