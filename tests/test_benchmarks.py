"""The benchmark scripts run end to end and report what the README's tables quote."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_epoch, bench_views
from helpers import REPO_ROOT, TINY_FLAGS, TINY_RUN_FLAGS


def test_kmeans_working_set_at_the_papers_settings():
    """The figures docs/measurements.md quotes: 320 MB sample and 800 MB update batch per view, a
    1600 MB peak (the two views' update batches; measured 1600 on the H100), 16,000 MB for the
    original's every-pixel initial sample."""
    sampled = bench_epoch.kmeans_working_set_mb(batch=256, init_batches=20, grid=80, dim=128, pixels_per_image=128,
                                                all_pixels=False)
    assert sampled == {"init_sample_mb": 320.0, "online_batch_mb": 800.0, "both_views_peak_mb": 1600.0}
    every = bench_epoch.kmeans_working_set_mb(batch=256, init_batches=20, grid=80, dim=128, pixels_per_image=128,
                                              all_pixels=True)
    assert every["init_sample_mb"] == 16000.0  # the original's 16.8 GB (decimal) of initial features


@pytest.mark.parametrize('extra, pixels', [([], 64), (['--kmeans_init_all_pixels'], 256)])
def test_kmeans_working_set_formula_is_what_a_run_measures(tiny_demo, tmp_path, extra, pixels):
    """The formula against a run's own kmeans_peak_mb, on sizes where either term is the larger:
    a 64-pixel sample (the update batch dominates) and every pixel (sample + copy dominate)."""
    result = bench_epoch.main(['--data_root', str(tiny_demo), '--stuff', *TINY_FLAGS, '--num_epoch', '1',
                               '--batch_size_cluster', '4', '--kmeans_pixels_per_image', '64', '--K_train', '4',
                               '--K_test', '4', '--save_root', str(tmp_path), *extra])
    measured = result['epochs'][0]['kmeans_peak_mb']
    grid = 64 // 4
    assert measured == pytest.approx(bench_epoch.kmeans_working_set_mb(4, 1, grid, 128, pixels, bool(extra))
                                     ['both_views_peak_mb'])


def test_bench_epoch_reports_every_phase_and_writes_json(tiny_demo, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    result = bench_epoch.main(['--data_root', str(tiny_demo), '--stuff', *TINY_FLAGS, '--num_epoch', '2',
                               '--repeats', '1', '--K_train', '5', '--K_test', '5', '--bench_json', str(out),
                               '--project_images', '1000'])
    saved = json.loads(out.read_text())
    assert saved['n_train_images'] == 12 and len(saved['epochs']) == 2
    for epoch in saved['epochs']:
        for phase in ('kmeans_s', 'train_s', 'eval_s', 'kmeans_img_per_s', 'train_img_per_s'):
            assert epoch[phase] > 0, phase
        # Labels from cached features take well under the millisecond the phase times are rounded to.
        assert epoch['label_s'] >= 0 and epoch['labels_from_cached_features']
        memory = epoch['phase_memory_mb']  # per phase: peak resident memory, its rise, CPU time
        assert set(memory) == {'kmeans', 'label', 'train', 'eval'}
        assert all(m['peak_mb'] > 100 and 0 <= m['rise_mb'] <= m['peak_mb'] and m['cpu_s'] > 0
                   for m in memory.values())
    assert saved['peak_rss_mb']['self'] > 100
    assert 0 <= saved['final']['mIoU'] <= 100 and 0 <= saved['untrained']['mIoU'] <= 100
    assert saved['projection']['images'] == 1000 and saved['projection']['epoch_s'] > 0
    assert result['final'] == saved['final']
    printed = capsys.readouterr().out
    assert 'k-means working set at paper settings' in printed and 'projected epoch of 1000 images' in printed


def test_bench_views_times_every_transform_set(capsys):
    threads = torch.get_num_threads()
    bench_views.main(['--res2', '32', '--res1', '16', '--batch', '2', '--repeats', '2', '--threads', '1'])
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [row[:40].strip() for row in rows] == list(bench_views.SETS)
    assert all(float(row.split()[-1]) > 0 for row in rows)
    assert torch.get_num_threads() == threads  # --threads must not leak into the calling process


def test_fingerprint_is_equal_for_the_same_run_and_differs_for_another(tiny_run, tiny_demo, tmp_path, train):
    """benchmarks/fingerprint.py, on which the refactor's 'behaviour unchanged' evidence rests: another
    seed fingerprints differently; --keys hashes only the named final metrics, so a key a newer version
    adds is no difference. (Two deterministic runs of the same flags fingerprint alike:
    test_reliability.py::test_two_fresh_deterministic_runs_are_identical.)"""
    import shutil

    from benchmarks.fingerprint import fingerprint
    first = fingerprint(tiny_run)
    assert train(tiny_demo, tmp_path, 'c', *TINY_RUN_FLAGS, '--seed', '2') == 0
    other = fingerprint(tmp_path / 'c')
    assert other['model'] != first['model'] and other['history'] != first['history']

    copy = Path(shutil.copytree(tiny_run, tmp_path / 'b'))
    assert fingerprint(copy) == first  # times and the folder's place are not part of it
    final_path = copy / 'final_metrics.json'
    final = json.loads(final_path.read_text())
    final['a_key_of_a_newer_version'] = 1
    final_path.write_text(json.dumps(final))
    assert fingerprint(copy)['final'] != first['final']
    assert fingerprint(copy, keys=['acc', 'mIoU'])['final'] == fingerprint(tiny_run, keys=['acc', 'mIoU'])['final']


def test_behaviour_check_names_a_missing_data_root(tmp_path):
    import subprocess

    from helpers import REPO_ROOT
    done = subprocess.run(['bash', 'benchmarks/behaviour_check.sh', str(tmp_path / 'out')], cwd=REPO_ROOT,
                          env={'PATH': '/usr/bin:/bin', 'COCO_ROOT': str(tmp_path / 'missing')},
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: COCO_ROOT={tmp_path / 'missing'} is not a folder; "
        "set COCO_ROOT to a COCO-Stuff root (docs/datasets.md)"]
    assert not (tmp_path / 'out').exists()


def test_suite_cost_counts_what_a_run_writes_and_enforces_its_bounds(tmp_path, capsys):
    """benchmarks/suite_cost.py (make test's wrapper): the bytes a test run writes are counted, and a run over
    --max_written_mb fails with one line even though its tests passed."""
    from benchmarks import suite_cost
    (tmp_path / 'test_writer.py').write_text(
        'import os\n\ndef test_writes(tmp_path):\n'
        '    with open(tmp_path / "blob", "wb") as out:\n'
        '        out.write(os.urandom(3 * 2 ** 20))\n        out.flush()\n        os.fsync(out.fileno())\n')
    argv = ['--cwd', str(tmp_path), '--json', str(tmp_path / 'cost.json'), '--', '-q', '-p', 'no:cacheprovider',
            '-o', 'tmp_path_retention_policy=none', 'test_writer.py']
    assert suite_cost.main(argv) == 0
    cost = json.loads((tmp_path / 'cost.json').read_text())
    assert cost['exit_code'] == 0 and cost['written_mb'] >= 2.9 and cost['cpu_s'] > 0
    assert suite_cost.main(['--max_written_mb', '1', *argv]) == 1
    assert 'over the bound of 1 MB (--max_written_mb)' in capsys.readouterr().out


def test_call_flops_counts_the_forward_and_the_backward_of_a_convolution():
    """A 3x3 convolution, 3 -> 8 channels on a 16 x 16 image: 2 * 3 * 8 * 9 * 256 FLOPs forward; with
    gradients the backward adds the weight gradient (the input needs none): twice that in all. A
    batch of 4 is four images."""
    from benchmarks.bench_efficiency import call_flops
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    forward = 2 * 3 * 8 * 9 * 16 * 16
    assert call_flops(conv, ((4, 3, 16, 16), False, None), torch.device('cpu')) == 4 * forward
    assert call_flops(conv, ((1, 3, 16, 16), True, None), torch.device('cpu')) == 2 * forward
    assert conv.weight.grad is None  # counting leaves no gradients behind


def test_bench_efficiency_files_every_network_call_under_its_phase(tiny_demo, tmp_path, capsys):
    from benchmarks import bench_efficiency
    result = bench_efficiency.main(['--gemm_size', '512', '--data_root', str(tiny_demo), '--stuff', *TINY_FLAGS,
                                    '--num_epoch', '1', '--repeats', '1', '--K_train', '5', '--K_test', '5',
                                    '--feature_cache_gb', '0', '--save_root', str(tmp_path)])
    eff = result['efficiency']
    rates = [eff[key]['float32'] for key in ('gemm_gflop_per_s', 'conv_gflop_per_s', 'conv3x3_gflop_per_s')]
    assert min(rates) > 0.1
    phases = {(row['epoch'], row['phase']): row for row in eff['phases']}
    # The floor is every counted FLOP at the fastest measured rate, below what the phases took.
    assert eff['total_gflop'] == pytest.approx(sum(row['gflop'] for row in phases.values()))
    assert eff['arithmetic_floor_s'] == pytest.approx(eff['total_gflop'] / max(rates))
    assert 0 < eff['arithmetic_floor_s'] < eff['phases_s'] == pytest.approx(sum(row['s'] for row in phases.values()))
    assert {(0, 'untrained evaluations'), (1, 'kmeans'), (1, 'label'), (1, 'train'), (1, 'eval'),
            (2, 'final evaluation')} <= set(phases)
    # The clustering pass forwards both views of the 12 images, labelling both again, training
    # forwards and backpropagates both; all of them at the tiny preset's 64 px.
    kmeans, label, train = phases[(1, 'kmeans')], phases[(1, 'label')], phases[(1, 'train')]
    assert kmeans['images'] == label['images'] == train['images'] == 2 * 12
    assert kmeans['gflop'] == pytest.approx(label['gflop'])
    assert 2 * kmeans['gflop'] < train['gflop'] < 4 * kmeans['gflop']  # backward ~ twice the forward
    for row in phases.values():
        assert row['gflop'] > 0 and row['s'] > 0 and 0 < row['fraction_of_gemm']['float32'] < 2, row
        assert 0 < row['fraction_of_peak']['float32'] <= row['fraction_of_gemm']['float32'], row
    printed = capsys.readouterr().out
    assert '512^2 matrix multiply' in printed and '1x1 convolution' in printed and 'untrained evaluations' in printed
    assert '3x3 convolution' in printed and 'network arithmetic of the run' in printed


_FAKE_ORIGINAL = '''import sys
print("args", " ".join(sys.argv[1:]))
print("Average overall pixel accuracy [NEW] : 15.442 +/- 0.443.")
print("Average mIoU [NEW] : 3.767 +/- 0.184. ")
'''


def test_bench_vs_original_times_both_and_prints_the_ratio(tiny_demo, tmp_path):
    """The script runs the original (here a stand-in that prints the original's last two lines) and
    this toolkit with the same flags, and reports each time, score and original / toolkit."""
    import subprocess

    from helpers import REPO_ROOT
    original = tmp_path / 'original'
    original.mkdir()
    (original / 'train_picie.py').write_text(_FAKE_ORIGINAL)
    (tmp_path / 'data').mkdir()
    quick = ('--res 64 --res1 64 --res2 96 --batch_size_cluster 4 --batch_size_train 4 --batch_size_test 4 '
             '--K_train 5 --K_test 5 --num_epoch 1 --repeats 1 --no-eval_init --num_workers 0 --stuff '
             '--arch resnet18_tiny')
    env = {'PATH': '/usr/bin:/bin', 'ORIGINAL': str(original), 'ORIGINAL_DATA': str(tmp_path / 'data'),
           'OUT': str(tmp_path / 'out'), 'DATA': str(tiny_demo), 'PRECISIONS': 'fp32', 'EXTRA': quick,
           'PYTHON': __import__('sys').executable}
    done = subprocess.run(['benchmarks/bench_vs_original.sh', '3'], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / 'out' / 'summary.txt').read_text().splitlines()
    # The machine line names the vector units that decide the speed, as /proc/cpuinfo lists them.
    flags = next((line.split(':', 1)[1].split() for line in open('/proc/cpuinfo') if line.startswith('flags')), [])
    units = [unit for unit in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if unit in flags] or ['none', 'listed']
    assert summary[0].startswith('machine: ') and summary[0].endswith('; vector units: ' + ' '.join(units))
    assert summary[2].startswith('original: ') and summary[2].endswith(' s, acc 15.442, mIoU 3.767')
    assert summary[3].startswith('toolkit --precision fp32 (trained in fp32): ')
    assert 'original / toolkit = ' in summary[3]
    seen = (tmp_path / 'out' / 'original.log').read_text()
    assert '--fullcoco --res 320' in seen and '--seed 3' in seen and '--res 64' in seen  # the flags both get


def test_bench_compile_reports_both_kinds_of_step(monkeypatch, capsys):
    """The plumbing and the report, with torch.compile replaced by the identity (compiling takes a
    minute on 2 cores): the 'compiled' side then times the eager network again."""
    from benchmarks import bench_compile
    compiled = []
    monkeypatch.setattr(bench_compile.torch, 'compile', lambda model, mode: compiled.append(mode) or model)
    results = bench_compile.main(['--res', '128', '--batch', '4', '--steps', '2'])
    assert compiled == ['default']
    for side in ('eager', 'compiled'):
        for kind in ('train', 'forward'):
            first, median = results[side][kind]
            assert first > 0 and median > 0
    printed = capsys.readouterr().out
    assert 'resnet18, 4 x 128 px per view, cpu' in printed
    assert printed.count('compile ') == 2 and 'eager' in printed


@pytest.mark.parametrize('case', ['no_script', 'no_data', 'original_fails'])
def test_bench_vs_original_bad_input_is_one_line(tmp_path, case):
    import subprocess
    import sys

    from helpers import REPO_ROOT
    original, data = tmp_path / 'original', tmp_path / 'data'
    original.mkdir()
    data.mkdir()
    if case != 'no_script':
        (original / 'train_picie.py').write_text('import sys\nsys.exit(1)\n')
    env = {'PATH': '/usr/bin:/bin', 'ORIGINAL': str(original), 'OUT': str(tmp_path / 'out'), 'DATA': str(data),
           'ORIGINAL_DATA': str(data if case != 'no_data' else tmp_path / 'missing'), 'PYTHON': sys.executable}
    done = subprocess.run(['benchmarks/bench_vs_original.sh'], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), done.stderr
    expected = {'no_script': 'holds no train_picie.py', 'no_data': 'ORIGINAL_DATA=',
                'original_fails': "the original's run failed; its output is in"}[case]
    assert expected in lines[0]


@pytest.mark.parametrize('module, argv', [('benchmarks.bench_epoch', ['--data_root', 'no/such/folder']),
                                          ('benchmarks.bench_compile', ['--device', 'cuda']),
                                          ('benchmarks.bench_conv_kernels', ['--device', 'cuda'])])
def test_benchmark_scripts_report_bad_input_as_one_line(module, argv):
    import subprocess
    import sys

    from helpers import REPO_ROOT
    if argv == ['--device', 'cuda'] and torch.cuda.is_available():
        pytest.skip('a GPU is visible: --device cuda is valid here')
    done = subprocess.run([sys.executable, '-m', module, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), done.stderr


def test_bench_conv_kernels_covers_every_convolution_of_the_network(capsys):
    """The kernels timed are the network's convolutions, all of them: their FLOPs add up to what
    torch's FLOP counter counts for a forward pass and for a training step (input gradients for every
    layer but the first, whose input is the image)."""
    from benchmarks import bench_conv_kernels
    from modules.networks import build_model
    result = bench_conv_kernels.main(['--arch', 'resnet18_tiny', '--res', '64', '--batch', '2', '--repeats', '1'])
    rows = result['convolutions']
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in build_model('resnet18_tiny').modules())
    assert sum(row['count'] for row in rows) == n_convs == 25  # stem, blocks, 4 downsamples, 4 FPN laterals
    assert [row['input_gradient'] for row in rows].count(False) == 1 and not rows[0]['input_gradient']
    for kind in ('forward', 'train'):
        assert result['conv_gflop'][kind] == pytest.approx(result['counted_gflop'][kind], rel=1e-9)
    for part in ('train_step', 'eval_forward'):
        assert 0 < result[part]['convolutions_s'] and 0 < result[part]['measured_s']
    assert 'training step of one view' in capsys.readouterr().out


@pytest.mark.skipif(platform.machine() not in ('x86_64', 'AMD64')
                    or torch.backends.cpu.get_cpu_capability() == 'DEFAULT', reason='not an x86 CPU with AVX2')
def test_as_avx2_cpu_holds_every_library_to_avx2(tmp_path):
    """benchmarks/as_avx2_cpu.sh: torch, faiss, OpenBLAS and numpy pick their AVX2 kernels in the command it runs."""
    probe = ('import faiss, numpy, os, torch\n'
             'print(torch.backends.cpu.get_cpu_capability(), faiss.SIMDConfig.get_level_name(),'
             ' os.environ["OPENBLAS_CORETYPE"], not numpy._core._multiarray_umath.__cpu_features__.get("X86_V4"))')
    result = subprocess.run([str(REPO_ROOT / 'benchmarks' / 'as_avx2_cpu.sh'), sys.executable, '-c', probe],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['AVX2', 'AVX2', 'Haswell', 'True'], result.stdout
