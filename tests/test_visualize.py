"""tools/visualize.py: cluster maps of a checkpoint's classifier (conftest's tiny ablation run), the
run's recorded data root, and a bad checkpoint as one line. On a folder of images: test_folder.py."""
from helpers import assert_one_error_line
from tools import visualize


def test_visualize_draws_cluster_maps(tiny_ablation, tiny_demo, tmp_path, capsys):
    from PIL import Image
    checkpoint = tiny_ablation[0] / 'runs' / 'jitter+random_crop' / 'checkpoint.pth'
    out = tmp_path / 'maps'
    argv = ['--eval_path', str(checkpoint), '--data_root', str(tiny_demo), '--n_images', '2', '--out_dir', str(out),
            '--device', 'cpu', '--num_workers', '0']
    assert visualize.main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ['cluster_map_000.png', 'cluster_map_001.png', 'legend.png', 'overview.png']
    single, overview = Image.open(out / 'cluster_map_000.png'), Image.open(out / 'overview.png')
    assert single.width > 3 * single.height  # image | ground truth | clusters | correct/wrong
    assert overview.height > 1.5 * single.height  # both images, one row each
    assert 'acc' in capsys.readouterr().out
    # One-to-one only: there are not more clusters than classes for a many-to-one matching.
    assert visualize.main(argv + ['--matching', 'majority']) == 2
    assert 'needs more clusters than classes' in capsys.readouterr().err


def test_visualize_takes_the_recorded_data_root(tiny_run, tiny_demo, tmp_path, capsys):
    """No --data_root: the run's own data (not datasets/coco), and the output says so."""
    out = tmp_path / 'maps'
    assert visualize.main(['--eval_path', str(tiny_run / 'checkpoint.pth'), '--n_images', '1', '--out_dir', str(out),
                           '--device', 'cpu', '--num_workers', '0']) == 0
    assert f'data root: {tiny_demo} (recorded in the checkpoint)' in capsys.readouterr().out
    assert (out / 'cluster_map_000.png').is_file()


def test_visualize_bad_checkpoint_is_one_line(tmp_path, capsys):
    missing = tmp_path / 'nope.pth'
    code = visualize.main(['--eval_path', str(missing), '--data_root', str(tmp_path)])
    err = capsys.readouterr().err
    assert_one_error_line(code, err, str(missing))
    assert err.count('\n') == 1  # nothing else on stderr
