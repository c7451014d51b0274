"""Two-epoch runs of train_picie.py and test_picie.py on the demo set and on the real sample."""
import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import test_picie
import train_picie
from data.cocostuff_classes import FINE171_NAMES
from helpers import REPO_ROOT, TINY_FLAGS, evaluate_checkpoint, original_state_key, run_records
from modules.networks import build_model


def test_demo_run_writes_metrics_and_checkpoint(tiny_run):
    """The shared session run (conftest's tiny_run: 2 epochs, --eval_init, --repeats 2, K 15)."""
    demo_run = tiny_run
    records = run_records(demo_run)
    assert [r['epoch'] for r in records] == [0, 0, 1, 2]
    assert [r['stage'] for r in records[:2]] == ['init', 'init_bn']  # as initialised, then BN re-estimated
    for record in records[2:]:
        assert math.isfinite(record['loss']) and record['n_steps'] == 3  # 12 images / batch 4
        assert 0 <= record['view1']['mIoU'] <= 100 and 0 <= record['view2']['acc'] <= 100
        assert len(record['kmeans_loss']) == 2
    final = json.loads((demo_run / 'final_metrics.json').read_text())
    assert final['repeats'] == 2 and len(final['runs']) == 2
    assert set(final['per_class_iou']) == set(records[2]['view1']['per_class_iou'])
    assert 'untrained' in final and 'untrained_bn_calibrated' in final
    config = json.loads((demo_run / 'config.json').read_text())
    assert config['git_commit'] and config['augment_config']['inv_list'][:4] == [
        'brightness', 'contrast', 'saturation', 'hue']
    ckpt = torch.load(demo_run / 'checkpoint.pth', weights_only=True)
    assert ckpt['epoch'] == 2 and ckpt['model_config'] == {'arch': 'resnet18_tiny', 'feat_dim': 128}
    assert ckpt['classifiers']['view1']['weight'].shape == (15, 128)


def test_checkpoint_evaluates_with_test_picie(tiny_run, tiny_demo, tmp_path):
    demo_run = tiny_run
    out = tmp_path / 'm.json'
    argv = ['--eval_path', str(demo_run / 'checkpoint.pth'), '--data_root', str(tiny_demo), '--res', '64',
            '--device', 'cpu', '--precision', 'fp32', '--num_workers', '0', '--out', str(out)]
    assert test_picie.cli(argv) == 0
    result = json.loads(out.read_text())
    for key in ('acc', 'mIoU', 'per_class_iou', 'thing_mIoU', 'stuff_mIoU'):
        assert key in result
    assert len(result['per_class_iou']) == 15  # stuff-only, taken from the checkpoint
    # The stored view-1 classifier scores what the last epoch logged for it.
    last = run_records(demo_run)[-1]['view1']
    assert result['acc'] == pytest.approx(last['acc'], abs=1e-6)
    assert result['mIoU'] == pytest.approx(last['mIoU'], abs=1e-6)


def test_restart_continues_from_checkpoint(tiny_run_copy, tiny_demo, train):
    demo_run = tiny_run_copy
    assert train(tiny_demo, demo_run.parent, demo_run.name, '--num_epoch', '3', '--restart') == 0
    epochs = [r['epoch'] for r in run_records(demo_run)]
    assert epochs == [0, 0, 1, 2, 3]
    assert torch.load(demo_run / 'checkpoint.pth', weights_only=True)['epoch'] == 3


def test_real_sample_two_epochs(coco_mini, tmp_path, train):
    assert train(coco_mini, tmp_path, 'coco', '--num_epoch', '2', '--K_train', '27', '--K_test', '27',
                 '--batch_size_cluster', '16', '--stuff', '--thing') == 0
    run = tmp_path / 'coco'
    records = run_records(run)
    assert [r['epoch'] for r in records] == [1, 2]
    assert all(math.isfinite(r['loss']) for r in records)
    final = json.loads((run / 'final_metrics.json').read_text())
    assert len(final['per_class_iou']) == 27 and final['thing_mIoU'] is not None


def test_cli_entry_point_runs_as_a_script(tiny_demo, tmp_path):
    """The user-facing command, in a fresh process (no in-process state)."""
    cmd = [sys.executable, str(REPO_ROOT / 'train_picie.py'), '--data_root', str(tiny_demo), '--save_root',
           str(tmp_path), '--run_name', 'script', '--stuff', '--K_train', '15', '--K_test', '15',
           '--num_epoch', '1', *TINY_FLAGS]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / 'script' / 'final_metrics.json').is_file()


def _original_checkpoint(path, arch='resnet18', n_clusters=27, seed=0):
    """A checkpoint in the original project's layout, random weights (module. prefixes,
    decoder.layer1 = lateral of the stride-32 map, classifier1_state_dict, pickled args)."""
    torch.manual_seed(seed)
    model = build_model(arch)
    state = {original_state_key(key): value for key, value in model.state_dict().items()}
    weight = torch.nn.functional.normalize(torch.randn(n_clusters, model.feat_dim), dim=1)
    classifier = {'module.weight': weight[:, :, None, None], 'module.bias': torch.zeros(n_clusters)}
    args = argparse.Namespace(arch=arch, in_dim=128, K_test=n_clusters, res=320, stuff=True, thing=True)
    torch.save({'epoch': 10, 'args': args, 'state_dict': state, 'classifier1_state_dict': classifier,
                'classifier2_state_dict': classifier, 'optimizer': {}}, path)
    return model, weight


def _original_protocol(model, weight, coco_root, res):
    """The original evaluation written out independently: per-image PIL resize + center crop,
    ToTensor + ImageNet normalisation, L2-normalised features, 1x1 conv, bilinear upsampling,
    argmax, bincount histogram, Hungarian on (max - hist), metrics with nanmean."""
    import pickle

    import torchvision.transforms.functional as TF
    from PIL import Image
    from scipy.optimize import linear_sum_assignment
    table = pickle.load(open(coco_root / 'fine_to_coarse_dict.pickle', 'rb'))['fine_index_to_coarse_index']
    ids = (coco_root / 'curated/val2017/Coco164kFull_Stuff_Coarse_7.txt').read_text().split()
    hist = np.zeros((27, 27))
    model.eval()
    for image_id in ids:
        image = Image.open(coco_root / f'images/val2017/{image_id}.jpg').convert('RGB')
        label = Image.open(coco_root / f'annotations/val2017/{image_id}.png')
        image = TF.center_crop(TF.resize(image, res, TF.InterpolationMode.BILINEAR), res)
        label = TF.center_crop(TF.resize(label, res, TF.InterpolationMode.NEAREST), res)
        x = TF.normalize(TF.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
        with torch.no_grad():
            feats = torch.nn.functional.normalize(model(x), dim=1, p=2)
            probs = torch.nn.functional.conv2d(feats, weight[:, :, None, None])
            probs = torch.nn.functional.interpolate(probs, res, mode='bilinear', align_corners=False)
        pred = probs.topk(1, dim=1)[1].view(-1).numpy()
        raw = np.array(label).reshape(-1)
        gt = np.array([table.get(int(v), -1) if v != 255 else -1 for v in raw])
        keep = (gt >= 0) & (gt < 27)
        hist += np.bincount(27 * gt[keep] + pred[keep], minlength=27 ** 2).reshape(27, 27)
    rows, cols = linear_sum_assignment(hist.max() - hist)
    acc = hist[rows, cols].sum() / hist.sum() * 100
    new_hist = np.zeros((27, 27))
    for r, c in zip(rows, cols, strict=True):
        new_hist[c] = hist[r]
    tp = np.diag(new_hist)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = tp / (tp + new_hist.sum(0) - tp + new_hist.sum(1) - tp)
    return acc, np.nanmean(iou) * 100


def test_original_checkpoint_matches_original_protocol(coco_mini, tmp_path):
    path = tmp_path / 'picie.pkl'
    model, weight = _original_checkpoint(path)
    out = tmp_path / 'm.json'
    argv = ['--eval_path', str(path), '--data_root', str(coco_mini), '--res', '128', '--device', 'cpu',
            '--precision', 'fp32', '--num_workers', '0', '--batch_size_test', '16', '--out', str(out)]
    assert test_picie.cli(argv) == 0
    result = json.loads(out.read_text())
    assert result['checkpoint_format'] == 'picie-original'
    acc, miou = _original_protocol(model, weight, coco_mini, 128)
    assert result['acc'] == pytest.approx(acc, abs=0.05)
    assert result['mIoU'] == pytest.approx(miou, abs=0.05)


def test_train_script_eval_only_alias(coco_mini, tmp_path, original_checkpoints):
    """The original's test_picie.sh runs `train_picie.py --eval_only --eval_path ...`."""
    path = original_checkpoints(0)
    out = tmp_path / 'm.json'
    argv = ['--data_root', str(coco_mini), '--eval_only', '--eval_path', str(path), '--stuff', '--thing',
            '--res', '64', '--device', 'cpu', '--num_workers', '0', '--out', str(out)]
    assert train_picie.cli(argv) == 0
    assert json.loads(out.read_text())['n_images'] == 8


def test_bf16_training_run_on_the_cpu(tiny_demo, tmp_path, monkeypatch, train):
    """The default training precision on CPUs with bf16 units (--precision auto picks bf16 there):
    forced here with --precision bf16, whatever this CPU has. The forward passes of training run
    under bf16 autocast (and nothing else does: evaluation stays float32), and the loss stays finite."""
    seen = []
    original = torch.autocast.__init__

    def record(self, device_type, dtype=None, *args, **kwargs):
        seen.append(dtype)
        return original(self, device_type, dtype, *args, **kwargs)

    monkeypatch.setattr(torch.autocast, '__init__', record)
    assert train(tiny_demo, tmp_path, 'bf16', '--precision', 'bf16', '--num_epoch', '2') == 0
    run = tmp_path / 'bf16'
    assert seen and set(seen) == {torch.bfloat16}
    records = [r for r in run_records(run) if r['stage'] == 'train']
    assert all(math.isfinite(r['loss']) and r['n_steps'] == 3 for r in records)
    assert json.loads((run / 'final_metrics.json').read_text())['evaluation']['precision'] == 'fp32'
    assert json.loads((run / 'config.json').read_text())['autocast'] == 'bf16'  # what --restart keeps


# -- COCO-Stuff-171: train, score and segment on the real sample -------------------------------------------
@pytest.fixture(scope='module')
def coco171_run(coco_mini, tmp_path_factory, train):
    """One tiny epoch on the real sample scored on the 171 fine classes (K defaults to 171)."""
    save_root = tmp_path_factory.mktemp('runs')
    assert train(coco_mini, save_root, 'coco171', '--coco_classes', '171', '--stuff', '--thing') == 0
    return save_root / 'coco171'


def test_171_run_records_its_label_set(coco171_run):
    config = json.loads((coco171_run / 'config.json').read_text())
    assert config['coco_classes'] == 171 and config['K_train'] == config['K_test'] == 171
    ckpt = torch.load(coco171_run / 'checkpoint.pth', weights_only=True)
    assert ckpt['eval_config']['coco_classes'] == 171 and len(ckpt['eval_config']['class_names']) == 171
    assert ckpt['classifiers']['view1']['weight'].shape[0] == 171
    assert ckpt['classifiers']['view1']['class_names'][145] == 'sky-other'
    final = json.loads((coco171_run / 'final_metrics.json').read_text())
    assert final['evaluation']['label_set'] == 'COCO-Stuff-171' and final['evaluation']['n_classes'] == 171
    assert final['K'] == 171 and len(final['per_class_iou']) == 171
    assert final['thing_mIoU'] is not None and final['stuff_mIoU'] is not None
    record = run_records(coco171_run)[-1]['view1']
    assert record['thing_mIoU'] is not None and len(record['per_class_iou']) == 171


def test_171_checkpoint_scores_with_test_picie(coco171_run, coco_mini, tmp_path):
    """The stored classifier (with --flip), --recluster (K_test 171) and the linear probe, on 171 classes;
    the stored classifier scores what the epoch logged."""
    checkpoint, out = coco171_run / 'checkpoint.pth', tmp_path / 'm.json'
    on_171 = ['--data_root', str(coco_mini), '--device', 'cpu', '--num_workers', '0', '--coco_classes', '171']
    stored = evaluate_checkpoint(checkpoint, out, *on_171, '--flip')
    assert stored['evaluation']['label_set'] == 'COCO-Stuff-171'
    assert len(stored['per_class_iou']) == 171 and stored['flip']['thing_mIoU'] is not None
    assert stored['mIoU'] == pytest.approx(run_records(coco171_run)[-1]['view1']['mIoU'], abs=1e-6)
    fresh = evaluate_checkpoint(checkpoint, out, *on_171, '--recluster')
    assert fresh['K'] == 171 and fresh['evaluation']['protocol'] == 'fresh k-means'
    over = evaluate_checkpoint(checkpoint, out, *on_171, '--recluster', '--K_test', '200')
    assert over['K'] == 200 and over['majority']['matching'] == 'majority'  # many-to-one beside
    probe = evaluate_checkpoint(checkpoint, out, *on_171, '--linear_probe', '--probe_epochs', '1')
    assert probe['evaluation']['label_set'] == 'COCO-Stuff-171' and len(probe['per_class_iou']) == 171


def test_label_set_mismatch_is_one_line(coco171_run, coco_mini, capsys, original_checkpoints):
    """A checkpoint is not scored on the other label set: 171 on 27 (the default), and 27 on 171."""
    for checkpoint, flags, trained in ((coco171_run / 'checkpoint.pth', [], 171),
                                       (original_checkpoints(0),
                                        ['--coco_classes', '171'], 27)):
        capsys.readouterr()
        code = test_picie.cli(['--eval_path', str(checkpoint), '--data_root', str(coco_mini), '--device', 'cpu',
                               '--num_workers', '0', *flags])
        err = capsys.readouterr().err
        assert code == 2 and err.count('\n') == 1 and f'trained on COCO-Stuff-{trained}' in err
        assert f'--coco_classes {trained}' in err


def test_predict_names_171_classes(coco171_run, coco_mini, tmp_path):
    from PIL import Image

    import predict
    out = tmp_path / 'maps'
    images = sorted((coco_mini / 'images' / 'val2017').glob('*.jpg'))[:2]
    argv = ['--eval_path', str(coco171_run / 'checkpoint.pth'), '--input', *map(str, images), '--output', str(out),
            '--device', 'cpu', '--num_workers', '0', '--res', '64', '--no_overlay']
    assert predict.cli(argv) == 0
    summary = json.loads((out / 'predict.json').read_text())
    assert summary['index'] == 'class' and summary['names'] == list(FINE171_NAMES)
    assert len(set(summary['colours'])) == 171  # a colour per class
    assert max(np.unique(np.asarray(Image.open(out / f'{images[0].stem}.png')))) < 171
    assert Image.open(out / 'legend.png').size[1] > 171 * 18  # a row per class
