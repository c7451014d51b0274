"""The user-facing shell scripts, run as a user would (tiny budgets through pass-through flags)."""
import json
import os
import subprocess

import pytest

from helpers import REPO_ROOT, TINY_FLAGS, run_script, train_commands

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
    # No DATA_ROOT: the script scores on the data root the checkpoint's run recorded, and says so.
    done = _sh('test_picie.sh', {'EVAL_PATH': str(tmp_path / 'sh' / 'checkpoint.pth'), 'OUT': str(out)},
               '--res', '64', '--num_workers', '0', '--device', 'cpu', '--stuff')
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert f'data root: {tiny_demo}' in said and 'recorded in the checkpoint' in said, said[-2000:]
    assert set(json.loads(out.read_text())) >= {'acc', 'mIoU', 'per_class_iou', 'thing_mIoU', 'stuff_mIoU'}


def test_ddp_script_on_cpu(tiny_demo, tmp_path):
    env = {'DATA_ROOT': str(tiny_demo), 'SAVE_ROOT': str(tmp_path), 'RUN_NAME': 'ddp', 'PRETRAIN': '',
           'GPUS': '0,1', 'MASTER_PORT': '29731', 'TORCHRUN': str(REPO_ROOT / '.venv' / 'bin' / 'torchrun')}
    done = _sh('train_picie_ddp.sh', env, *SMALL)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / 'ddp' / 'metrics.jsonl').read_text().splitlines()]
    assert len(records) == 1 and records[0]['centroid_rank_diff'] == 0.0


# sh_files/script_env.sh: the variables of the scripts, honoured or named in a warning
@pytest.mark.parametrize('script', ['train_picie.sh', 'train_picie_2aug.sh', 'train_picie_h.sh', 'demo.sh'])
def test_every_flag_variable_reaches_the_command_line(script):
    env = {'DRY_RUN': 1, 'PRESET': 'demo', 'EPOCHS': 1, 'SEED': 2, 'LR': '1e-3', 'K_TRAIN': 12, 'BS_TRAIN': 4,
           'RES1': 64, 'RES2': 128, 'REPEATS': 1, 'MIN_SCALE': 0.7}
    if script == 'demo.sh':
        del env['PRESET']  # demo.sh is the demo preset
    done = run_script(script, env)
    assert done.returncode == 0 and 'warning' not in done.stderr, done.stderr
    (args,) = train_commands(done.stdout).values()
    assert (args.num_epoch, args.seed, args.lr, args.K_train, args.batch_size_train, args.res1, args.res2,
            args.repeats, args.min_scale) == (1, 2, 1e-3, 12, 4, 64, 128, 1, 0.7)


@pytest.mark.parametrize('script, env, named', [
    ('train_picie.sh', {'EPOCH': 1}, 'EPOCH=1 is not a variable of sh_files/train_picie.sh; did you mean EPOCHS?'),
    ('train_picie.sh', {'PHOTO': 'blur'}, 'PHOTO=blur is not read by sh_files/train_picie.sh'),
    ('demo.sh', {'PRESET': 'tiny'}, 'PRESET=tiny is not read by sh_files/demo.sh'),
    ('ablate_transforms.sh', {'RUN_NAME': 'x', 'PRESET': 'demo'},
     'RUN_NAME=x is not read by sh_files/ablate_transforms.sh'),
    ('train_picie_2aug.sh', {'K_AUX': 5}, 'K_AUX=5 is not read by sh_files/train_picie_2aug.sh'),
])
def test_a_variable_the_script_does_not_read_is_named_once(script, env, named):
    done = run_script(script, {'DRY_RUN': 1, **env})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count('warning:') == 1 and named in done.stderr, done.stderr
