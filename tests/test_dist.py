"""utils/dist.py: distributed training with torchrun on the CPU (gloo), 2 processes."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import test_picie
from helpers import REPO_ROOT, TINY_FLAGS, free_port, run_records

FLAGS = [*TINY_FLAGS, '--inv_list', 'none', '--eqv_list', 'none']
AUGMENT = ['--inv_list', 'jitter,grey', '--eqv_list', 'random_crop,h_flip']


def _run(nproc, data_root, save_root, run_name, *extra, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if nproc > 1:
        # A port free right now, named explicitly: two test sessions on one machine never collide.
        launcher = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--rdzv-backend', 'c10d',
                    '--rdzv-endpoint', f'127.0.0.1:{free_port()}', '--nproc_per_node', str(nproc)]
    else:
        launcher = [sys.executable]
    cmd = [*launcher, str(REPO_ROOT / 'train_picie.py'), '--data_root', str(data_root), '--save_root', str(save_root),
           '--run_name', run_name, *FLAGS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout)


@pytest.fixture(scope='module')
def ddp_run(tiny_demo, tmp_path_factory):
    save_root = tmp_path_factory.mktemp('ddp')
    done = _run(2, tiny_demo, save_root, 'two', '--num_epoch', '2', '--eval_init', *AUGMENT)
    assert done.returncode == 0, done.stderr[-3000:]
    return save_root / 'two'


def test_two_ranks_train_with_identical_centroids(ddp_run):
    records = run_records(ddp_run)
    train = [r for r in records if r['stage'] == 'train']
    assert [r['epoch'] for r in train] == [1, 2]  # written once, by rank 0
    for record in train:
        assert record['centroid_rank_diff'] == 0.0  # checked across ranks after each k-means phase
        assert record['n_steps'] == 3  # 12 images, global batch 4 = 2 per rank
    assert [r['stage'] for r in records].count('init') == 1
    assert sorted(p.name for p in ddp_run.iterdir() if p.suffix == '.pth') == ['checkpoint.pth']
    assert 'acc' in json.loads((ddp_run / 'final_metrics.json').read_text())


def test_ddp_checkpoint_evaluates_and_resumes_on_one_process(ddp_run, tiny_demo, tmp_path):
    out = tmp_path / 'm.json'
    assert test_picie.cli(['--eval_path', str(ddp_run / 'checkpoint.pth'), '--data_root', str(tiny_demo),
                           '--res', '64', '--device', 'cpu', '--num_workers', '0', '--out', str(out)]) == 0
    assert 0 <= json.loads(out.read_text())['mIoU'] <= 100
    resumed = tmp_path / 'resumed'
    shutil.copytree(ddp_run, resumed)
    done = _run(1, tiny_demo, tmp_path, 'resumed', '--num_epoch', '3', '--restart', *AUGMENT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r['epoch'] for r in run_records(resumed) if r['stage'] == 'train'] == [1, 2, 3]


def test_two_processes_give_one_process_centroids(tiny_demo, tmp_path):
    """All pixels in the initial k-means, no augmentation, no BN calibration: the global batches
    and the initial sample are the same sets, so the centroids match one process's."""
    same = ['--num_epoch', '1', '--kmeans_init_all_pixels', '--calibrate_bn', '0', '--num_batches', '1']
    one = _run(1, tiny_demo, tmp_path, 'one', *same)
    two = _run(2, tiny_demo, tmp_path, 'two', *same)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    ckpt_one = torch.load(tmp_path / 'one' / 'checkpoint.pth', weights_only=True)
    ckpt_two = torch.load(tmp_path / 'two' / 'checkpoint.pth', weights_only=True)
    for view in ('view1', 'view2'):
        torch.testing.assert_close(ckpt_one['classifiers'][view]['weight'], ckpt_two['classifiers'][view]['weight'],
                                   atol=1e-5, rtol=1e-4)


def test_failing_rank_takes_the_job_down_with_its_message(tiny_demo, tmp_path):
    """An unreadable val image that only rank 1 evaluates: rank 1 fails, rank 0 must not hang."""
    root = tmp_path / 'data'
    shutil.copytree(tiny_demo, root)
    ids = (root / 'curated' / 'val2017' / 'Coco164kFull_Stuff_Coarse_7.txt').read_text().split()
    bad = root / 'images' / 'val2017' / f'{ids[1]}.jpg'  # index 1: evaluated by rank 1 of 2
    bad.write_bytes(b'not a jpeg')
    done = _run(2, root, tmp_path, 'fail', '--num_epoch', '1', timeout=180)
    assert done.returncode != 0
    assert str(bad) in done.stderr + done.stdout
