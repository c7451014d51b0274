"""Experiment tooling: the training and 2-transform scripts, the transform ablation (dry run and a tiny
end-to-end run), TensorBoard logging and the visualize.ipynb notebook. The component ablation:
test_ablate_components.py; the sweep: test_sweep_hparams.py; tools/compare_runs.py:
test_compare_runs.py; tools/visualize.py: test_visualize.py."""
import importlib.util
import json
import sys

import pytest

import config
import train_picie
from helpers import REPO_ROOT, TINY_FLAGS, error_lines, run_records, train_commands
from helpers import run_script as _script

HAS_TENSORBOARD = importlib.util.find_spec('tensorboard') is not None


# ----------------------------------------------------------------------------------------
# sh_files/train_picie_2aug.sh
# ----------------------------------------------------------------------------------------
@pytest.fixture
def fake_python(tmp_path):
    """A 'python' that records its arguments (one per line) instead of training."""
    script = tmp_path / 'fake_python'
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_OUT"\n')
    script.chmod(0o755)
    return script


def _recorded_args(name, fake_python, tmp_path, **env):
    """The parsed args of the train_picie.py command a training script runs."""
    entry, args = _recorded(name, fake_python, tmp_path, **env)
    assert entry == 'train_picie.py'
    return args


def test_2aug_script_is_train_picie_with_one_photometric_and_one_geometric(fake_python, tmp_path):
    paper = _recorded_args('train_picie.sh', fake_python, tmp_path)
    two = _recorded_args('train_picie_2aug.sh', fake_python, tmp_path)
    assert config.resolve_transform_lists(two) == (['brightness', 'contrast', 'saturation', 'hue'], ['random_crop'])
    assert config.resolve_transform_lists(paper) == (['brightness', 'contrast', 'saturation', 'hue', 'grey', 'blur'],
                                                    ['random_crop', 'h_flip'])
    transform_keys = {'augment', 'jitter', 'grey', 'blur', 'equiv', 'random_crop', 'h_flip', 'v_flip', 'inv_list',
                      'eqv_list', 'run_name'}
    differing = {k for k in vars(paper) if getattr(paper, k) != getattr(two, k)}
    assert differing <= transform_keys, differing  # every other setting as in train_picie.sh
    other = _recorded_args('train_picie_2aug.sh', fake_python, tmp_path, PHOTO='blur', GEO='h_flip')
    assert config.resolve_transform_lists(other) == (['blur'], ['h_flip'])
    assert other.run_name == 'picie_2aug_blur_h_flip'


def _recorded(name, fake_python, tmp_path, **env):
    """(entry script, parsed args) of the command a training script runs (on an existing DATA_ROOT)."""
    out = tmp_path / f'{name}.argv'
    done = _script(name, {'PYTHON': fake_python, 'ARGV_OUT': out, 'SAVE_ROOT': tmp_path / 'runs',
                          'DATA_ROOT': tmp_path, **env})
    assert done.returncode == 0, done.stderr
    words = out.read_text().splitlines()
    return words[0], config.parse_args(config.get_args_parser(), words[1:])


@pytest.mark.parametrize('script, env, entry, expected', [
    ('train_picie_h.sh', {}, 'train_picie.py', {'overcluster': True, 'run_name': 'picie_h'}),  # K_aux 100 = default
    ('train_picie_h.sh', {'K_AUX': '54'}, 'train_picie.py', {'overcluster': True, 'K_aux': 54, 'run_name': 'picie_h'}),
    ('train_mdc.sh', {}, 'train_mdc.py', {'run_name': 'mdc'}),
    ('train_mdc.sh', {'NONPARAMETRIC': '1'}, 'train_mdc.py', {'nonparametric': True, 'run_name': 'mdc_nonparametric'}),
    ('train_picie_cityscapes.sh', {}, 'train_picie.py',
     {'cityscapes': True, 'lr': 1e-3, 'run_name': 'picie_cityscapes'}),
    ('train_picie_coco171.sh', {}, 'train_picie.py',  # K 171: the class count replaces the preset's 27
     {'coco_classes': 171, 'K_train': 171, 'K_test': 171, 'run_name': 'picie_coco171'}),
    ('train_picie_dino.sh', {}, 'train_picie.py',  # --pretrain, K 27, batch sizes, --res 320: the preset's
     {'arch': 'dino_vits8', 'freeze_backbone': True, 'vit_head': 'nonlinear', 'in_dim': 70, 'res1': 224, 'res2': 448,
      'lr': 5e-4, 'run_name': 'picie_dino_vits8'}),
])
def test_variant_scripts_are_train_picie_with_only_their_changes(script, env, entry, expected, fake_python, tmp_path):
    """The paper's settings live in train_picie.sh; each variant changes only what it names."""
    _, paper = _recorded('train_picie.sh', fake_python, tmp_path)
    got_entry, variant = _recorded(script, fake_python, tmp_path, **env)
    assert got_entry == entry
    differing = {k: getattr(variant, k) for k in vars(paper) if getattr(paper, k) != getattr(variant, k)}
    assert differing == expected


def test_cityscapes_script_defaults_to_its_own_data_root():
    done = _script('train_picie_cityscapes.sh', {'DRY_RUN': 1})
    assert done.returncode == 0, done.stderr
    assert train_commands(done.stdout)['picie_cityscapes'].data_root == 'datasets/cityscapes/'


@pytest.mark.parametrize('script, variable', [('train_picie.sh', 'DATA_ROOT'), ('test_picie.sh', 'EVAL_PATH')])
def test_scripts_name_the_variable_of_a_missing_input(script, variable, tmp_path):
    done = _script(script, {variable: tmp_path / 'nowhere'})
    assert done.returncode == 2 and done.stderr.count('error:') == 1 and f'{variable}=' in done.stderr


def test_test_script_honours_dry_run(tmp_path):
    done = _script('test_picie.sh', {'DRY_RUN': 1, 'EVAL_PATH': tmp_path / 'missing.pth'})
    assert done.returncode == 0 and 'test_picie.py' in done.stdout and 'missing.pth' in done.stdout


def test_train_script_dry_run_prints_the_command_and_passes_flags_through(tmp_path):
    done = _script('train_picie.sh', {'DRY_RUN': 1, 'SAVE_ROOT': tmp_path / 'runs', 'SEED': 3}, '--restart')
    assert done.returncode == 0, done.stderr
    args = train_commands(done.stdout)['picie']
    assert (args.seed, args.restart, args.pretrain, args.K_train, args.batch_size_cluster) == (3, True, True, 27, 256)
    assert not (tmp_path / 'runs').exists()  # nothing written by a dry run


@pytest.mark.parametrize('env, fragment', [({'PHOTO': 'gray'}, 'PHOTO=gray'), ({'GEO': 'rotate'}, 'GEO=rotate'),
                                           ({'PHOTO': 'jitter,blur'}, 'PHOTO=jitter,blur')])
def test_2aug_script_rejects_anything_but_one_transform_each(env, fragment, tmp_path):
    done = _script('train_picie_2aug.sh', {'DRY_RUN': 1, **env})
    assert done.returncode == 2
    assert done.stderr.count('error:') == 1 and fragment in done.stderr


# ----------------------------------------------------------------------------------------
# Dry runs: the commands the ablation and the sweep would run
# ----------------------------------------------------------------------------------------
def test_ablation_dry_run_covers_every_combination_with_one_budget():
    done = _script('ablate_transforms.sh', {'DRY_RUN': 1, 'PRESET': 'demo'})
    assert done.returncode == 0, done.stderr
    runs = train_commands(done.stdout)
    jitter = ['brightness', 'contrast', 'saturation', 'hue']
    photo_all, geo_all = jitter + ['grey', 'blur'], ['random_crop', 'h_flip']
    expected = {'none': ([], []), 'photometric': (photo_all, []), 'geometric': ([], geo_all),
                'all': (photo_all, geo_all)}
    for photo, names in (('jitter', jitter), ('grey', ['grey']), ('blur', ['blur'])):
        for geo in ('random_crop', 'h_flip'):
            expected[f'{photo}+{geo}'] = (names, [geo])
    assert {name: config.resolve_transform_lists(args) for name, args in runs.items()} == expected
    # Identical seeds, budgets and everything else; one results folder.
    ignore = {'run_name', 'inv_list', 'eqv_list'}
    settings = [{k: v for k, v in vars(args).items() if k not in ignore} for args in runs.values()]
    assert all(s == settings[0] for s in settings)
    assert settings[0]['save_root'] == 'results/ablate_transforms_demo' and settings[0]['num_epoch'] == 8
    assert (settings[0]['K_train'], settings[0]['K_test'], settings[0]['class_weights']) == (6, 6, 'none')  # the demo's
    assert 'tools.compare_runs' in done.stdout and 'make_demo' in done.stdout
    # The paper preset: train_picie.sh's settings.
    paper = train_commands(_script('ablate_transforms.sh', {'DRY_RUN': 1}).stdout)['all']
    assert (paper.pretrain, paper.res1, paper.K_train, paper.num_epoch, paper.batch_size_cluster) == (
        True, 320, 27, 10, 256)


def test_ablation_rejects_unknown_combination():
    done = _script('ablate_transforms.sh', {'DRY_RUN': 1, 'COMBOS': 'none jitter+rotate'})
    assert done.returncode == 2 and "'jitter+rotate'" in done.stderr


def test_2aug_script_runs_on_the_demo_preset(tmp_path):
    done = _script('train_picie_2aug.sh', {'DRY_RUN': 1, 'PRESET': 'demo', 'PHOTO': 'hue'})
    assert done.returncode == 0, done.stderr
    args = train_commands(done.stdout)['picie_2aug_demo_hue_random_crop']
    assert args.preset == 'demo' and args.lr == 3e-4 and args.data_root == 'datasets/demo'
    assert config.resolve_transform_lists(args) == (['hue'], ['random_crop'])


# ----------------------------------------------------------------------------------------
# Tiny end-to-end runs of both scripts (shared by the tests below)
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ablation(tiny_ablation):
    """The session's tiny transform ablation (conftest's tiny_ablation: runs 'none' and 'jitter+random_crop')."""
    return tiny_ablation


def test_tiny_ablation_runs_end_to_end(ablation, tiny_demo):
    root, stdout = ablation
    assert '[none] done' in stdout and '[jitter+random_crop] done' in stdout
    expected = {'none': ([], []),
                'jitter+random_crop': (['brightness', 'contrast', 'saturation', 'hue'], ['random_crop'])}
    for name, (inv, eqv) in expected.items():
        run = root / 'runs' / name
        saved = json.loads((run / 'config.json').read_text())['augment_config']
        assert (saved['inv_list'], saved['eqv_list']) == (inv, eqv)
        assert (saved['jitter_strength'], saved['min_scale']) == (0.3, 0.5)  # the paper's strengths
        log = (run / 'train.log').read_text()
        assert f"transforms: photometric {inv or 'none'}, geometric {eqv or 'none'}" in log
        assert (run / 'final_metrics.json').is_file()
    # Without transforms both views are one image: the cross-view loss equals the within-view loss.
    record = run_records(root / 'runs' / 'none')[-1]
    assert record['loss_cross'] == pytest.approx(record['loss_within'], rel=1e-5)
    report = (root / 'report' / 'report.md').read_text()
    assert '| none |' in report and '| jitter+random_crop |' in report
    for png in ('miou_per_epoch.png', 'acc_per_epoch.png', 'loss_per_epoch.png', 'per_class_iou.png'):
        assert (root / 'report' / png).stat().st_size > 1000
    # Started again, finished runs are kept rather than trained again.
    again = _script('ablate_transforms.sh', {'TINY': 1, 'DATA_ROOT': tiny_demo, 'SAVE_ROOT': root / 'runs',
                                             'REPORT_DIR': root / 'report', 'COMBOS': 'none'})
    assert again.returncode == 0 and 'finished before: kept' in again.stdout


# ----------------------------------------------------------------------------------------
# TensorBoard (optional dependency)
# ----------------------------------------------------------------------------------------
def test_tensorboard_missing_is_one_clear_line(tiny_demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)  # import fails as if not installed
    code = train_picie.cli(['--data_root', str(tiny_demo), '--save_root', str(tmp_path), '--run_name', 'tb',
                            '--stuff', '--num_epoch', '1', *TINY_FLAGS, '--tensorboard'])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert '--tensorboard' in err[0] and 'pip install tensorboard' in err[0]
    assert not (tmp_path / 'tb').exists()  # stopped before the run folder was made


@pytest.mark.skipif(not HAS_TENSORBOARD, reason='the optional tensorboard package is not installed')
def test_tensorboard_logs_scalars_and_cluster_maps(ablation):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(ablation[0] / 'runs' / 'jitter+random_crop' / 'tensorboard'))
    events.Reload()
    scalars = set(events.Tags()['scalars'])
    assert {'loss/total', 'loss/within_view', 'loss/cross_view', 'kmeans_loss/view1', 'view1/mIoU', 'view2/acc',
            'final/mIoU'} <= scalars
    assert [e.step for e in events.Scalars('view1/mIoU')] == [1]
    assert events.Tags()['images'] == ['cluster_maps/view1']


# ----------------------------------------------------------------------------------------
# visualize.ipynb
# ----------------------------------------------------------------------------------------
def test_notebook_runs_headless_and_draws(tiny_demo, tmp_path, monkeypatch):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    # Default path of the notebook: no checkpoint given, so it trains a tiny run itself.
    monkeypatch.delenv('PICIE_CHECKPOINT', raising=False)
    monkeypatch.setenv('PICIE_DATA_ROOT', str(tiny_demo))
    monkeypatch.setenv('PICIE_WORK_DIR', str(tmp_path / 'work'))
    notebook = nbformat.read(REPO_ROOT / 'visualize.ipynb', as_version=4)
    assert not any(cell.get('outputs') for cell in notebook.cells if cell.cell_type == 'code')  # stored clean
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': str(REPO_ROOT)}})
    client.execute()
    images = [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs
              if 'image/png' in output.get('data', {})]
    assert len(images) >= 3  # cluster maps + the two views for two draws
    assert (tmp_path / 'work' / 'run' / 'checkpoint.pth').is_file()
    errors = [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs
              if output.get('output_type') == 'error']
    assert not errors
