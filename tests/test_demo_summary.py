"""tools/demo_summary.py: the end of `make demo` names the kind of CPU and precision the run trained in,
and the scores measured on that kind (docs/measurements/demo_expected.json, shown in docs/demo.md)."""
import json
import re

import pytest

from helpers import REPO_ROOT
from tools import demo_summary

EXPECTED = demo_summary.load_expected()


def _run(tmp_path, autocast, seed=1, epochs=8, miou=23.91):
    run = tmp_path / 'demo'
    run.mkdir()
    score = {'acc': 40.0, 'mIoU': miou}
    (run / 'final_metrics.json').write_text(json.dumps({
        'n_val_images': 40, 'repeats': 3, 'epochs': epochs, 'acc': 37.96, 'mIoU': miou, 'mIoU_std': 0.27,
        'untrained': score, 'untrained_bn_calibrated': score}))
    (run / 'config.json').write_text(json.dumps({'autocast': autocast, 'seed': seed}))
    (run / 'train.log').write_text(f'PiCIE run {run} (git abc) on cpu, autocast None\n')
    return run


@pytest.mark.parametrize('autocast, has_bf16, kind', [
    ('bf16', True, 'a CPU with bf16 units, trained in bf16 autocast'),
    ('fp32', False, 'a float32-only CPU (no bf16 units), trained in float32 (--precision auto)'),
    ('fp32', True, 'a CPU with bf16 units, trained in float32'),
])
def test_the_summary_names_the_kind_and_its_measured_scores(autocast, has_bf16, kind, tmp_path):
    text = demo_summary.summary(_run(tmp_path, autocast), EXPECTED, has_bf16)
    assert f'ran on: {kind}' in text
    seeds = EXPECTED['kinds'][autocast]['seeds']
    if seeds.get('1', {}).get('epochs_8'):
        assert f"seed 1 {seeds['1']['epochs_8'][1]:.2f}" in text and 'this run is seed 1' in text
    for report in EXPECTED['kinds'][autocast].get('reported', []):  # other machines of the kind, said as such
        assert f"reported on {report['where'].split(':')[0]}: seed {report['seed']} {report['mIoU']:.2f}" in text
        if report['seed'] == 1 and report['epochs'] == 8:  # how far apart machines of the kind land, measured
            apart = abs(report['mIoU'] - seeds['1']['epochs_8'][1])
            assert f"gave {report['mIoU']:.2f}, up to {apart:.1f} apart" in text
    other = 'fp32' if autocast == 'bf16' else 'bf16'
    other_seed1 = EXPECTED['kinds'][other]['seeds'].get('1', {}).get('epochs_8')
    if other_seed1:  # the other kind's numbers are not offered as this kind's
        assert f'seed 1 {other_seed1[1]:.2f}' not in text


def test_a_length_or_precision_not_measured_says_so(tmp_path):
    text = demo_summary.summary(_run(tmp_path, 'bf16', epochs=3), EXPECTED, True)
    assert 'no 3-epoch demo measured in bf16' in text


def test_a_folder_that_is_not_a_finished_run_is_one_line(tmp_path, capsys):
    assert demo_summary.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'final_metrics.json' in err[0]


def test_docs_demo_table_shows_the_measured_numbers():
    """docs/demo.md's table per kind of CPU holds every number the summary may print, row for row."""
    text = (REPO_ROOT / 'docs' / 'demo.md').read_text()
    rows = {'untrained': 'untrained as initialised', 'untrained_bn_calibrated': 'untrained, BatchNorm set',
            'epochs_1': 'PiCIE after 1 epoch', 'epochs_8': 'PiCIE after 8 epochs'}
    for kind, measured in EXPECTED['kinds'].items():
        for seed, scores in measured['seeds'].items():
            for key, (acc, miou) in scores.items():
                line = f'| {kind} | {seed} | {rows[key]} | {acc:.2f} / {miou:.2f} |'
                assert line in text, f'docs/demo.md lacks the row {line}'
    for kind in EXPECTED['kinds'].values():
        for report in kind.get('reported', []):
            assert f"{report['acc']:.2f} / {report['mIoU']:.2f}" in text
    assert len(re.findall(r'^\| (bf16|fp32) \| \d \|', text, re.M)) == sum(
        len(scores) for kind in EXPECTED['kinds'].values() for scores in kind['seeds'].values())
