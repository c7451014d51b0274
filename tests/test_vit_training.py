"""A ViT backbone inside the toolkit: a frozen DINO ViT-S/8 (randomly initialised: no weights on a test
machine) trains one tiny epoch through train_picie.cli, its checkpoint is scored by test_picie, drawn by
tools/visualize, probed by tools/invariance and the notebook, and resumed; the flags that combine
badly with a ViT stop with one line. CPU, 64 px (an 8x8 patch grid)."""
import json
import shutil
import subprocess
import urllib.error

import pytest
import torch
from torch import nn

import config
import test_picie
import train_picie
from data.transforms import AugmentConfig, ViewMaker, make_views
from helpers import REPO_ROOT, TINY_FLAGS, error_lines, shallow_vits
from modules.networks import model_from_checkpoint
from modules.siamese import SiamesePair, features_of_views
from tools import invariance, visualize
from utils.checkpoint import load_checkpoint
from utils.runtime import Runtime

# 64 px views with /8 patches have 64 feature cells: the default k-means sample (128) is fitted to them.
VIT_FLAGS = [*TINY_FLAGS, '--arch', 'dino_vits8', '--freeze_backbone', '--in_dim', '32']
EVAL_FLAGS = ['--device', 'cpu', '--num_workers', '0']


@pytest.fixture(scope='module')
def vit_run(tiny_demo, tmp_path_factory):
    """(run folder, the network's state dict as built, before training): one tiny epoch of a frozen
    ViT-S/8 + linear head, with --eval_init (which scores the untrained network)."""
    save_root = tmp_path_factory.mktemp('vit_runs')
    built = {}
    real_build = train_picie.build_model

    def recording_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        built['initial'] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    # Two-block ViTs (helpers.shallow_vits): 15 MB checkpoints instead of 87 MB; the depth is in the
    # checkpoint, so every reader below (the notebook's kernel too) rebuilds the same network.
    with (shallow_vits(), pytest.MonkeyPatch.context() as patch,
          pytest.warns(UserWarning, match='random initialisation')):
        patch.setattr(train_picie, 'build_model', recording_build)
        code = train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(save_root), '--run_name', 'vit',
                                *VIT_FLAGS, '--eval_init'])
    assert code == 0
    return save_root / 'vit', built['initial']


def test_frozen_vit_trains_only_its_head(vit_run):
    run, initial = vit_run
    ckpt = load_checkpoint(str(run / 'checkpoint.pth'))
    assert ckpt['epoch'] == 1
    config_ = ckpt['model_config']
    assert (config_['arch'], config_['patch_size'], config_['frozen'], config_['head'], config_['out_dim']) == \
        ('dino_vits8', 8, True, 'linear', 32)
    backbone = [k for k in ckpt['model'] if k.startswith('backbone.')]
    head = [k for k in ckpt['model'] if k.startswith('head.')]
    assert config_['depth'] == 2 and len(backbone) > 20 and head == ['head.linear.weight', 'head.linear.bias']
    for key in backbone:
        assert torch.equal(ckpt['model'][key], initial[key]), key
    for key in head:
        assert not torch.equal(ckpt['model'][key], initial[key]), key
    # The optimiser holds the head's two tensors and nothing else.
    assert [len(group['params']) for group in ckpt['optimizer']['param_groups']] == [2]
    assert len(ckpt['optimizer']['state']) == 2
    # The classifiers live in the head's feature space.
    assert ckpt['classifiers']['view1']['weight'].shape[1] == 32
    # The default k-means sample (128 cells of an image) fitted to the 8x8 patch grid of a 64 px image.
    assert json.loads((run / 'config.json').read_text())['kmeans_pixels_per_image'] == 64


def test_vit_run_has_no_batchnorm_calibration(vit_run):
    run, _ = vit_run
    log = (run / 'train.log').read_text()
    assert 'features 32 channels at stride 8' in log and 'random initialisation' in log
    assert 'BatchNorm statistics' not in log
    stages = [json.loads(line)['stage'] for line in (run / 'metrics.jsonl').read_text().splitlines()]
    assert stages == ['init', 'train']  # scored as initialised, but no init_bn re-scoring
    final = json.loads((run / 'final_metrics.json').read_text())
    assert 'untrained' in final and 'untrained_bn_calibrated' not in final
    assert json.loads((run / 'config.json').read_text())['vit_head'] == 'linear'  # the default, recorded


def test_vit_checkpoint_is_rebuilt_from_its_model_config(vit_run):
    model = model_from_checkpoint(load_checkpoint(str(vit_run[0] / 'checkpoint.pth')))
    assert (model.stride, model.feat_dim, model.weights_source) == (8, 32, 'the checkpoint')
    assert not any(p.requires_grad for p in model.backbone.parameters())
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 40)).shape == (1, 32, 6, 5)


@pytest.mark.parametrize('res', ['64', '60'])  # 60: not a multiple of the patch; resized to 56 for the network
def test_vit_checkpoint_evaluates(vit_run, tiny_demo, tmp_path, res):
    out = tmp_path / 'metrics.json'
    argv = ['--eval_path', str(vit_run[0] / 'checkpoint.pth'), '--data_root', str(tiny_demo), '--res', res,
            *EVAL_FLAGS, '--out', str(out)]
    assert test_picie.cli(argv) == 0
    metrics = json.loads(out.read_text())
    assert 0 <= metrics['mIoU'] <= 100 and metrics['n_pixels'] > 0
    assert set(metrics['per_classifier']) == {'view1', 'view2'}


def test_vit_checkpoint_predicts_full_resolution_maps(vit_run, tmp_path):
    """predict.py on a ViT checkpoint: images of other sizes (not multiples of the patch) get one
    class-index map each at their own full size."""
    from PIL import Image

    import predict
    photos = tmp_path / 'photos'
    photos.mkdir()
    sizes = {'wide.png': (90, 50), 'tall.jpg': (41, 77)}
    for name, size in sizes.items():
        Image.new('RGB', size, (120, 30, 200)).save(photos / name)
    out = tmp_path / 'maps'
    assert predict.cli(['--eval_path', str(vit_run[0] / 'checkpoint.pth'), '--input', str(photos), '--output',
                        str(out), '--device', 'cpu', '--num_workers', '0', '--no_overlay']) == 0
    for name, size in sizes.items():
        with Image.open(out / f'{name.rsplit(".", 1)[0]}.png') as label_map:
            assert label_map.size == size


def test_vit_checkpoint_draws_and_probes(vit_run, tiny_demo, tmp_path, capsys):
    checkpoint = str(vit_run[0] / 'checkpoint.pth')
    out = tmp_path / 'maps'
    assert visualize.main(['--eval_path', checkpoint, '--data_root', str(tiny_demo), '--n_images', '2',
                           '--out_dir', str(out), *EVAL_FLAGS]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['cluster_map_000.png', 'cluster_map_001.png', 'legend.png',
                                                     'overview.png']
    capsys.readouterr()
    # The probes' geometric transforms are drawn on the ViT's 8x8 grid: the paper-views probe runs
    # the training views through the network, which checks the grid against the features.
    assert invariance.main([checkpoint, '--n_images', '2', *EVAL_FLAGS]) == 0
    table = capsys.readouterr().out
    assert '| paper views |' in table and '| random_crop |' in table
    assert invariance.main([checkpoint, '--n_images', '2', '--res1', '60', *EVAL_FLAGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--res1 60 is not a multiple of 8' in err[0]


def test_vit_run_resumes_with_its_head_only_optimiser(vit_run, tiny_demo, tmp_path):
    run, initial = vit_run
    shutil.copytree(run, tmp_path / 'vit')
    with shallow_vits():  # the network the flags build is the run's
        assert train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'vit',
                                *VIT_FLAGS, '--restart', '--num_epoch', '2']) == 0
    ckpt = load_checkpoint(str(tmp_path / 'vit' / 'checkpoint.pth'))
    assert ckpt['epoch'] == 2
    assert all(torch.equal(v, initial[k]) for k, v in ckpt['model'].items() if k.startswith('backbone.'))
    assert 'resuming' in (tmp_path / 'vit' / 'train.log').read_text()


def test_notebook_draws_a_vit_checkpoint(vit_run, tiny_demo, monkeypatch):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    monkeypatch.setenv('PICIE_CHECKPOINT', str(vit_run[0] / 'checkpoint.pth'))
    monkeypatch.setenv('PICIE_DATA_ROOT', str(tiny_demo))
    notebook = nbformat.read(REPO_ROOT / 'visualize.ipynb', as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(REPO_ROOT)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs]
    assert not [output for output in outputs if output.get('output_type') == 'error']
    assert sum('image/png' in output.get('data', {}) for output in outputs) >= 3


# ----------------------------------------------------------------------------------------
# Flags: what a ViT needs, one line each when it is not given
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('flags, fragment', [
    (['--arch', 'resnet18', '--freeze_backbone'], '--freeze_backbone applies to the ViT archs'),
    (['--arch', 'resnet18', '--vit_head', 'nonlinear'], '--vit_head applies to the ViT archs'),
    (['--arch', 'dino_vits8', '--freeze_backbone', '--vit_head', 'none', '--kmeans_pixels_per_image', '32'],
     '--freeze_backbone with --vit_head none leaves nothing to train'),
    (['--arch', 'dino_vits8', '--vit_head', 'none', '--in_dim', '64', '--kmeans_pixels_per_image', '32'],
     '--in_dim 64 needs a head'),
    (['--arch', 'dino_vits8', '--res1', '60'], '--res1 60 must be a multiple of 8, the patch size of --arch'),
    (['--arch', 'dinov2_vits14', '--res1', '64'], '--res1 64 must be a multiple of 14'),
    (['--arch', 'dino_vits8', '--kmeans_pixels_per_image', '128'],
     '--kmeans_pixels_per_image 128 exceeds the 8x8 = 64 feature cells'),
    (['--arch', 'dino_vits8', '--calibrate_bn', '5', '--kmeans_pixels_per_image', '32'],
     '--arch dino_vits8 has no BatchNorm layers'),
    (['--arch', 'dinov3_vits16', '--pretrain', '--kmeans_pixels_per_image', '16'], 'DINOv3 licence'),
])
def test_bad_vit_flags_are_one_line(flags, fragment, tiny_demo, tmp_path, capsys):
    code = train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'bad',
                            *TINY_FLAGS, *flags])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert fragment in err[0]


def test_vit_pretrain_offline_names_the_url(tiny_demo, tmp_path, monkeypatch, capsys):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError('no network')

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # no cached weights file
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    code = train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'offline',
                            *VIT_FLAGS, '--pretrain'])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert 'dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth' in err[0] and '--pretrain_path' in err[0]


def test_dino_script_settings_are_valid(tmp_path):
    """sh_files/train_picie_dino.sh passes the flag checks: 224 px views give a 28x28 patch grid."""
    done = subprocess.run(['bash', str(REPO_ROOT / 'sh_files' / 'train_picie_dino.sh')], capture_output=True,
                          text=True, env={'PATH': '/usr/bin:/bin', 'DRY_RUN': '1', 'PYTHON': 'python'},
                          cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[1] == 'train_picie.py'
    settings = config.settings_from_args(config.parse_args(config.get_args_parser(), words[2:]))
    model = settings.model
    assert (model.arch, model.freeze_backbone, model.vit_head, model.feat_dim, model.pretrain) == \
        ('dino_vits8', True, 'nonlinear', 70, True)
    assert model.calibrate_bn_batches == 0 and settings.train.res1 // config.feature_stride(model.arch) == 28
    assert (settings.objective.n_clusters, settings.eval.n_clusters, settings.eval.res) == (27, 27, 320)


# ----------------------------------------------------------------------------------------
# The views' grid follows the network's stride
# ----------------------------------------------------------------------------------------
class _Stride8(nn.Module):
    """[B, 3, H, W] -> [B, 4, H/8, W/8]: stands in for a ViT with 8-px patches."""

    stride = 8

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(images, 8).repeat(1, 2, 1, 1)[:, :4]


def test_view_grid_must_match_the_network_stride():
    runtime = Runtime(torch.device('cpu'), progress=False)
    net = _Stride8()
    base = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    cfg = AugmentConfig(eqv_list=('random_crop', 'h_flip'))
    right = ViewMaker(cfg, 64, seed=0, feature_stride=net.stride)
    params = right.params(0, [0, 1], runtime.device)
    z1, z2 = features_of_views(SiamesePair(net), right, *make_views(right, base, params, runtime), params, runtime,
                               l2_normalize=True)
    assert z1.shape == z2.shape == (2, 4, 8, 8) and right.grid == 8
    wrong = ViewMaker(cfg, 64, seed=0)  # the ResNet-FPN's default stride 4: a 16x16 grid
    params = wrong.params(0, [0, 1], runtime.device)
    with pytest.raises(RuntimeError, match='feature_stride=model.stride'):
        features_of_views(SiamesePair(net), wrong, *make_views(wrong, base, params, runtime), params, runtime,
                          l2_normalize=True)
