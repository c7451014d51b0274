"""predict.py: arbitrary images in, one full-resolution class-index PNG per image out, in agreement
with test_picie.py's evaluation; --flip, --crf, stored matchings, and every bad input."""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

import predict
import test_picie
from config import data_settings, get_test_parser, parse_args
from data.build import build_source, val_dataset
from data.datasets import load_rgb, pil_to_uint8_tensor
from helpers import (
    assert_one_error_line,
    error_lines,
    original_state_key,
    run_records,
    run_with_file_size_limit,
    write_checkpoint,
)
from modules.crf import crf_refine
from modules.evaluation import cluster_ids, eval_features, upsampled_logits
from modules.networks import build_model, model_from_checkpoint
from modules.segment import UNMATCHED, network_size
from utils.checkpoint import load_checkpoint
from utils.runtime import make_runtime

CPU = ['--device', 'cpu', '--precision', 'fp32', '--num_workers', '0']


@pytest.fixture(scope='module')
def trained(tiny_run):
    """The checkpoint of the session's shared tiny run (res 64, 15 clusters, the 15 stuff classes)."""
    return tiny_run / 'checkpoint.pth'


def _predict(capsys, *argv):
    code = predict.cli([*argv, *CPU])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _random_image(path, size, mode='RGB', seed=0, **save):
    rng = np.random.default_rng(seed)
    width, height = size
    channels = {'RGB': 3, 'RGBA': 4, 'L': 1}[mode]
    # Smooth blobs rather than noise, so that the network sees regions (and the CRF has edges to follow).
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), channels), dtype=np.uint8)
    image = Image.fromarray(small.squeeze(-1) if mode == 'L' else small, mode).resize((width, height), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def _map(path):
    with Image.open(path) as image:
        return image.mode, image.size, np.asarray(image)


def test_checkpoint_stores_the_matching_of_its_evaluation(trained, tiny_demo, tmp_path):
    """train_picie.py stores each scored head's cluster -> class matching; test_picie.py finds the same one."""
    ckpt = load_checkpoint(trained)
    entry = ckpt['classifiers']['view1']
    assert len(entry['cluster_to_class']) == 15 and entry['matching'] == 'hungarian'
    assert len(entry['class_names']) == 15
    last = run_records(trained.parent)[-1]
    assert entry['cluster_to_class'] == last['view1']['cluster_to_class']
    out = tmp_path / 'm.json'
    assert test_picie.cli(['--eval_path', str(trained), '--data_root', str(tiny_demo), '--res', '64', *CPU,
                           '--out', str(out)]) == 0
    assert json.loads(out.read_text())['cluster_to_class'] == entry['cluster_to_class']


def test_folder_of_arbitrary_images(trained, tmp_path, capsys):
    """Different sizes, greyscale, RGBA, an EXIF-rotated photo, same names in two subfolders, a
    broken file and a non-image: one full-resolution class map per readable image."""
    src = tmp_path / 'photos'
    sizes = {'a/x.jpg': (97, 61), 'b/x.jpg': (40, 130), 'grey.png': (33, 50), 'rgba.png': (64, 64),
             'deep/er/wide.jpeg': (300, 20)}
    for i, (name, size) in enumerate(sizes.items()):
        mode = 'L' if name == 'grey.png' else 'RGBA' if name == 'rgba.png' else 'RGB'
        _random_image(src / name, size, mode, seed=i)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it by 90 degrees
    _random_image(src / 'rotated.jpg', (80, 40), seed=9, exif=exif.tobytes())
    (src / 'broken.jpg').write_bytes(b'this is not a JPEG')
    (src / 'notes.md').write_text('not an image and not named like one')
    out = tmp_path / 'maps'
    code, stdout, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(src), '--output', str(out))
    assert code == 0
    expected = {**{name.rsplit('.', 1)[0]: size for name, size in sizes.items()}, 'rotated': (40, 80)}
    for stem, size in expected.items():
        mode, map_size, values = _map(out / f'{stem}.png')
        assert (mode, map_size) == ('L', size), stem
        assert ((values < 15) | (values == UNMATCHED)).all()
        with Image.open(out / f'{stem}_overlay.jpg') as overlay:
            assert overlay.size == size
    summary = json.loads((out / 'predict.json').read_text())
    assert summary['index'] == 'class' and summary['matching'] == 'hungarian' and len(summary['names']) == 15
    assert summary['n_written'] == 6 and summary['n_ignored_files'] == 1 and summary['settings']['res'] == 64
    assert [s['input'] for s in summary['skipped']] == [str(src / 'broken.jpg')]
    assert 'skipped 1 unreadable file(s)' in stdout and 'broken.jpg' in stdout
    assert (out / 'legend.png').is_file()


def test_maps_agree_with_test_picie(trained, tiny_demo, tmp_path, capsys):
    """On the demo's val images, already at the evaluation crop (64 x 64) so that both paths see the
    same input: predict.py's class maps equal test_picie.py's clusters mapped through its matching,
    pixel for pixel, and score test_picie.py's accuracy."""
    args = parse_args(get_test_parser(), ['--data_root', str(tiny_demo), '--stuff'])
    dataset = val_dataset(build_source(data_settings(args)), 64)
    crops = tmp_path / 'crops'
    crops.mkdir()
    images, labels = [], []
    for i in range(len(dataset)):
        _, image, label = dataset[i]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(crops / f'{i}.png')  # lossless
        images.append(image)
        labels.append(label.numpy().astype(np.int64))
    metrics = tmp_path / 'm.json'
    assert test_picie.cli(['--eval_path', str(trained), '--data_root', str(tiny_demo), '--res', '64', *CPU,
                           '--out', str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    out = tmp_path / 'maps'
    code, _, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(crops), '--output', str(out),
                          '--res', '64', '--no_overlay')
    assert code == 0
    ckpt = load_checkpoint(trained)
    model = model_from_checkpoint(ckpt)
    runtime = make_runtime('cpu', 'fp32', False)
    entry = ckpt['classifiers']['view1']
    clusters = cluster_ids(model, torch.stack(images), entry['weight'], entry['bias'], runtime, True).numpy()
    lut = np.array([c if c >= 0 else UNMATCHED for c in result['cluster_to_class']])
    correct = labelled = 0
    for i, label in enumerate(labels):
        _, _, values = _map(out / f'{i}.png')
        np.testing.assert_array_equal(values, lut[clusters[i]])
        correct += int((values[label >= 0] == label[label >= 0]).sum())
        labelled += int((label >= 0).sum())
    assert 100 * correct / labelled == pytest.approx(result['acc'], abs=1e-9)
    assert not list(out.glob('*_overlay.jpg'))


def _expected_logits(ckpt, path, res, flip):
    """The logits predict.py should take the argmax of, recomputed from the evaluation functions."""
    model = model_from_checkpoint(ckpt)
    model.eval()
    runtime = make_runtime('cpu', 'fp32', False)
    entry = ckpt['classifiers']['view1']
    image = load_rgb(path)
    width, height = network_size(*image.size, res, model.stride)
    x = pil_to_uint8_tensor(TF.resize(image, [height, width]))[None]
    with torch.inference_mode():
        logits = upsampled_logits(eval_features(model, x, runtime, True), entry['weight'], entry['bias'],
                                  image.size[::-1])
        if flip:
            mirrored = upsampled_logits(eval_features(model, x.flip(-1), runtime, True), entry['weight'],
                                        entry['bias'], image.size[::-1]).flip(-1)
            logits = (logits + mirrored) / 2
    return logits[0], image, np.array([c if c >= 0 else UNMATCHED for c in entry['cluster_to_class']])


def test_flip_is_the_mean_of_the_two_passes(trained, tmp_path, capsys):
    path = _random_image(tmp_path / 'in' / 'photo.png', (90, 70), seed=3)
    ckpt = load_checkpoint(trained)
    maps = {}
    for name, extra in (('plain', []), ('flip', ['--flip'])):
        code, _, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(path), '--output',
                              str(tmp_path / name), '--no_overlay', *extra)
        assert code == 0
        maps[name] = _map(tmp_path / name / 'photo.png')[2]
    logits, _, lut = _expected_logits(ckpt, path, 64, flip=True)
    expected = lut[logits.argmax(0).numpy()]
    assert (maps['flip'] == expected).mean() > 0.999  # equal up to ties of float rounding
    assert (maps['flip'] != maps['plain']).any()       # the mirrored pass did change the map
    plain_logits, _, _ = _expected_logits(ckpt, path, 64, flip=False)
    np.testing.assert_array_equal(maps['plain'], lut[plain_logits.argmax(0).numpy()])


def test_crf_refines_the_full_resolution_map(trained, tmp_path, capsys):
    pytest.importorskip('pydensecrf.densecrf')
    path = _random_image(tmp_path / 'in' / 'photo.jpg', (120, 72), seed=4)
    maps = {}
    for name, extra in (('plain', []), ('crf', ['--crf'])):
        code, _, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(path), '--output',
                              str(tmp_path / name), '--no_overlay', *extra)
        assert code == 0
        maps[name] = _map(tmp_path / name / 'photo.png')[2]
    logits, image, lut = _expected_logits(load_checkpoint(trained), path, 64, flip=False)
    refined = crf_refine(logits, pil_to_uint8_tensor(image)).argmax(0).numpy()
    np.testing.assert_array_equal(maps['crf'], lut[refined])
    assert (maps['crf'] != maps['plain']).any()
    assert json.loads((tmp_path / 'crf' / 'predict.json').read_text())['settings']['crf']['bilateral_sxy'] == 67


def test_crf_without_the_package_is_one_line(trained, tiny_demo, tmp_path, capsys, monkeypatch):
    # None in sys.modules makes `import pydensecrf.densecrf` fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, 'pydensecrf', None)
    monkeypatch.setitem(sys.modules, 'pydensecrf.densecrf', None)
    path = _random_image(tmp_path / 'photo.png', (40, 40))
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(path), '--output',
                            str(tmp_path / 'out'), '--crf')
    assert_one_error_line(code, err, '--crf', 'pydensecrf2', 'pip install')
    assert not (tmp_path / 'out').exists()
    code = test_picie.cli(['--eval_path', str(trained), '--data_root', str(tiny_demo), *CPU, '--crf'])
    assert_one_error_line(code, capsys.readouterr().err, 'pydensecrf2')


def test_same_names_from_different_folders_and_a_list(trained, tmp_path, capsys):
    one = _random_image(tmp_path / 'a' / 'x.jpg', (50, 40), seed=1)
    two = _random_image(tmp_path / 'b' / 'x.jpg', (44, 60), seed=2)
    listed = _random_image(tmp_path / 'c' / 'listed.png', (36, 36), seed=3)
    paths = tmp_path / 'c' / 'paths.txt'
    paths.write_text('# images to segment\nlisted.png\n\nmissing.png\n')
    out = tmp_path / 'out'
    code, _, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(one), str(two), str(paths),
                          '--output', str(out), '--no_overlay')
    assert code == 0
    summary = json.loads((out / 'predict.json').read_text())
    written = {item['input']: item['map'] for item in summary['images']}
    assert set(written) == {str(one), str(two), str(listed)}
    assert written[str(one)] != written[str(two)] and written[str(listed)] == 'listed.png'
    assert _map(out / written[str(one)])[1] == (50, 40) and _map(out / written[str(two)])[1] == (44, 60)
    assert [s['input'] for s in summary['skipped']] == [str(tmp_path / 'c' / 'missing.png')]


def test_existing_output_is_not_overwritten(trained, tmp_path, capsys):
    path = _random_image(tmp_path / 'photo.png', (40, 48))
    out = tmp_path / 'out'
    argv = ['--eval_path', str(trained), '--input', str(path), '--output', str(out)]
    assert _predict(capsys, *argv)[0] == 0
    before = {p: p.read_bytes() for p in out.iterdir()}
    _random_image(path, (40, 48), seed=7)  # a different image under the same name
    code, _, err = _predict(capsys, *argv)
    assert_one_error_line(code, err, str(out), 'exists', '--overwrite')
    assert {p: p.read_bytes() for p in out.iterdir()} == before
    assert _predict(capsys, *argv, '--overwrite')[0] == 0
    assert (out / 'photo.png').read_bytes() != before[out / 'photo.png'] or \
        (out / 'photo_overlay.jpg').read_bytes() != before[out / 'photo_overlay.jpg']


def test_bad_inputs(trained, tmp_path, capsys):
    image = _random_image(tmp_path / 'photo.png', (40, 40))
    missing = tmp_path / 'nope.pth'
    code, _, err = _predict(capsys, '--eval_path', str(missing), '--input', str(image), '--output', str(tmp_path / 'o'))
    assert_one_error_line(code, err, str(missing), 'not found')
    blocker = tmp_path / 'a_file'
    blocker.write_text('a file where the output folder should be')
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(image), '--output',
                            str(blocker / 'out'))
    assert_one_error_line(code, err, str(blocker / 'out'), 'cannot be written')
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(tmp_path / 'gone.jpg'), '--output',
                            str(tmp_path / 'o'))
    assert_one_error_line(code, err, str(tmp_path / 'gone.jpg'), 'no such file')
    text = tmp_path / 'text.jpg'
    text.write_text('not an image')
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(text), '--output', str(tmp_path / 'o'))
    assert_one_error_line(code, err, str(text), 'none of the 1 input')
    code, _, err = _predict(capsys, '--input', str(image), '--output', str(tmp_path / 'o'))
    assert_one_error_line(code, err, '--eval_path')
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(image), '--output', str(tmp_path / 'o'),
                            '--matching', 'majority')
    assert_one_error_line(code, err, '--matching majority')


def test_checkpoints_without_a_matching_give_cluster_ids(tmp_path, capsys):
    """The original's checkpoints (and older ones of this toolkit) store no matching: cluster ids,
    at the original's evaluation resolution 320; more than 255 clusters need 16-bit PNGs."""
    torch.manual_seed(0)
    model = build_model('resnet18')
    state = {original_state_key(key): value for key, value in model.state_dict().items()}
    weight = torch.nn.functional.normalize(torch.randn(8, model.feat_dim), dim=1)
    classifier = {'module.weight': weight[:, :, None, None], 'module.bias': torch.zeros(8)}
    original = tmp_path / 'original.pth.tar'
    torch.save({'epoch': 10, 'args': argparse.Namespace(arch='resnet18', res=320), 'state_dict': state,
                'classifier1_state_dict': classifier, 'classifier2_state_dict': classifier}, original)
    image = _random_image(tmp_path / 'photo.png', (30, 20))
    code, _, _ = _predict(capsys, '--eval_path', str(original), '--input', str(image), '--output', str(tmp_path / 'o'))
    assert code == 0
    summary = json.loads((tmp_path / 'o' / 'predict.json').read_text())
    assert summary['index'] == 'cluster' and summary['settings']['res'] == 320 and summary['matching'] is None
    assert summary['images'][0]['network_size'] == [480, 320]
    mode, size, values = _map(tmp_path / 'o' / 'photo.png')
    assert (mode, size) == ('L', (30, 20)) and values.max() < 8
    tiny = build_model('resnet18_tiny')  # the number of clusters is what matters here (small files)
    many = write_checkpoint(tmp_path / 'many.pth', tiny, {'view1': torch.randn(300, tiny.feat_dim)}, {'res': 32})
    code, _, _ = _predict(capsys, '--eval_path', str(many), '--input', str(image), '--output', str(tmp_path / 'm'))
    assert code == 0
    mode, size, values = _map(tmp_path / 'm' / 'photo.png')
    assert mode.startswith('I') and size == (30, 20) and values.max() < 300


def test_an_output_that_is_a_file_is_named_as_one(trained, tmp_path, capsys):
    image = _random_image(tmp_path / 'photo.png', (40, 40))
    existing = tmp_path / 'maps.png'
    existing.write_bytes(b'a file the user meant to keep')
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(image), '--output', str(existing))
    assert_one_error_line(code, err, f'--output {existing} is a file, not a folder')
    assert existing.read_bytes() == b'a file the user meant to keep'


def test_default_workers_fit_the_machine(trained, tmp_path, monkeypatch):
    """On 2 usable CPUs the default --num_workers (4) is capped at 2: no torch warning about it."""
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    image = _random_image(tmp_path / 'photo.png', (40, 40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert predict.cli(['--eval_path', str(trained), '--input', str(image), '--output', str(tmp_path / 'o'),
                            '--device', 'cpu']) == 0
    assert not [w for w in caught if 'worker' in str(w.message)], [str(w.message) for w in caught]


def test_a_full_disk_leaves_no_truncated_file_and_names_the_file(trained, tmp_path):
    """Under a file-size limit (as `ulimit -f`, or a disk filling up) the overlay cannot be
    written: one line naming the overlay, exit 2, and every file in --output decodes whole."""
    src = tmp_path / 'photos'
    for i in range(3):
        _random_image(src / f'p{i}.jpg', (400, 300), seed=i, quality=95)
    out = tmp_path / 'maps'
    done = run_with_file_size_limit('predict.py', 20_000, '--eval_path', trained, '--input', src, '--output', out,
                                    *CPU)
    errors = error_lines(done.stderr)
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert '_overlay.jpg' in errors[0] and 'free disk space' in errors[0], errors[0]
    assert not list(out.glob('.*.tmp'))
    for path in out.iterdir():  # what is there is whole
        with Image.open(path) as image:
            image.load()


def test_output_inside_input_is_not_segmented_again(trained, tmp_path, capsys):
    """--output inside (or equal to) a searched --input folder: predict.py's own maps, overlays
    and legend are skipped, so a second run segments the same photos, no more."""
    for src, out in ((tmp_path / 'a', tmp_path / 'a' / 'maps'), (tmp_path / 'b', tmp_path / 'b')):
        for i in range(3):
            _random_image(src / f'p{i}.jpg', (40, 32), seed=i)
        for _ in range(2):
            code, stdout, _ = _predict(capsys, '--eval_path', str(trained), '--input', str(src), '--output', str(out),
                                       '--overwrite')
            assert code == 0
            summary = json.loads((out / 'predict.json').read_text())
            assert sorted(entry['map'] for entry in summary['images']) == ['p0.png', 'p1.png', 'p2.png']
        assert 'not segmented' in stdout
        assert not (out / 'maps').exists() and not list(out.rglob('*_overlay_overlay.jpg'))


def test_a_prediction_that_cannot_fit_stops_before_any_map(trained, tmp_path, capsys):
    """--res 40000 needs more memory than the machine has: one line naming --res and the largest
    value that fits, and no map."""
    path = _random_image(tmp_path / 'photo.png', (40, 48))
    out = tmp_path / 'out'
    code, _, err = _predict(capsys, '--eval_path', str(trained), '--input', str(path), '--output', str(out),
                            '--res', '40000')
    assert_one_error_line(code, err, 'prediction with --res 40000', 'the largest --res that fits is')
    assert not list(out.glob('*.png'))


def test_an_image_too_large_for_any_res_is_named(tmp_path):
    """When even the smallest --res cannot hold an image's full-resolution maps, the line names the
    image to downscale (no flag helps)."""
    from data.image_files import InputImage
    from modules.segment import PredictSettings, check_prediction_memory
    from utils.memory import Available, MemoryLimitError, NetworkCost
    net = NetworkCost(stride=4, feat_dim=128, n_params=10 ** 6, n_trained=10 ** 6, activation_bytes_per_pixel=300)
    settings = PredictSettings(res=320, flip=False, crf=None, matching='hungarian', overlay=True, overwrite=False,
                               batch_size=8, num_workers=0, l2_normalize=True)
    images = [InputImage(tmp_path / 'small.jpg', 'small'), InputImage(tmp_path / 'huge.tif', 'huge')]
    sizes = [(640, 480), (60000, 40000)]
    with pytest.raises(MemoryLimitError, match=r'huge\.tif \(60000x40000\) is too large .* downscale it'):
        check_prediction_memory(net, images, sizes, settings, 27, 'cpu', Available(host=8 * 2 ** 30, device=None))
    check_prediction_memory(net, images[:1], sizes[:1], settings, 27, 'cpu', Available(host=8 * 2 ** 30, device=None))


def test_temporary_files_of_a_killed_run_are_removed(trained, tmp_path, capsys):
    out = tmp_path / 'out'
    (out / 'a').mkdir(parents=True)
    for stale in (out / '.photo.png.x1y2.tmp', out / 'a' / '.b_overlay.jpg.z3.tmp'):
        stale.write_bytes(b'half an image')
    path = _random_image(tmp_path / 'photo.png', (40, 48))
    assert _predict(capsys, '--eval_path', str(trained), '--input', str(path), '--output', str(out))[0] == 0
    assert not list(out.rglob('*.tmp')) and (out / 'photo.png').is_file()
