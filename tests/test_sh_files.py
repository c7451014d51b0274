"""The user-facing shell scripts, run as a user would (tiny budgets through pass-through flags)."""
import json
import os
import subprocess

from helpers import REPO_ROOT, TINY_FLAGS

SMALL = [*TINY_FLAGS, '--stuff', '--K_train', '15', '--K_test', '15', '--num_epoch', '1',
         '--batch_size_cluster', '8', '--batch_size_train', '4', '--batch_size_test', '8']


def _sh(script, env, *args, timeout=300):
    env = dict(os.environ, PYTHON=str(REPO_ROOT / '.venv' / 'bin' / 'python'), OMP_NUM_THREADS='1', **env)
    if not os.path.exists(env['PYTHON']):
        env['PYTHON'] = 'python'
    return subprocess.run(['bash', str(REPO_ROOT / 'sh_files' / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd='/')


def test_train_and_test_scripts(tiny_demo, tmp_path):
    env = {'DATA_ROOT': str(tiny_demo), 'SAVE_ROOT': str(tmp_path), 'RUN_NAME': 'sh', 'PRETRAIN': ''}
    done = _sh('train_picie.sh', env, *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((tmp_path / 'sh' / 'config.json').read_text())
    # The script's fixed hyperparameters reach the run (those not overridden above).
    assert config['num_batches'] == 1 and config['lr'] == 1e-4 and config['seed'] == 1
    assert config['augment_config']['inv_list'] == ['brightness', 'contrast', 'saturation', 'hue', 'grey', 'blur']
    out = tmp_path / 'test.json'
    done = _sh('test_picie.sh', {'EVAL_PATH': str(tmp_path / 'sh' / 'checkpoint.pth'), 'DATA_ROOT': str(tiny_demo),
                                 'OUT': str(out)}, '--res', '64', '--num_workers', '0', '--device', 'cpu', '--stuff')
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads(out.read_text())) >= {'acc', 'mIoU', 'per_class_iou', 'thing_mIoU', 'stuff_mIoU'}


def test_ddp_script_on_cpu(tiny_demo, tmp_path):
    env = {'DATA_ROOT': str(tiny_demo), 'SAVE_ROOT': str(tmp_path), 'RUN_NAME': 'ddp', 'PRETRAIN': '',
           'GPUS': '0,1', 'MASTER_PORT': '29731', 'TORCHRUN': str(REPO_ROOT / '.venv' / 'bin' / 'torchrun')}
    done = _sh('train_picie_ddp.sh', env, *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / 'ddp' / 'metrics.jsonl').read_text().splitlines()]
    assert len(records) == 1 and records[0]['centroid_rank_diff'] == 0.0
