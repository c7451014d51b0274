"""tools/invariance.py: per-transform cluster agreement of a checkpoint (invariance to photometric
transforms, equivariance to geometric ones)."""
import json

import pytest
import torch
from torch import nn

from data.transforms import GEOMETRIC_OPS, PHOTOMETRIC_OPS
from tools import invariance
from utils.runtime import Runtime

CPU_FP32 = Runtime(device=torch.device('cpu'), amp_dtype=None, channels_last=False)
PROBES = invariance.probe_configs({})


class PooledColour(nn.Module):
    """A pointwise colour feature pooled over aligned 4x4 blocks: exactly equivariant to flips,
    not invariant to colour changes. [B, 3, H, W] -> [B, 8, H/4, W/4]."""

    stride = 4  # input pixels per feature cell, as every network of the toolkit declares

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(8, 3, 1, 1, generator=torch.Generator().manual_seed(0)))
            self.conv.bias.zero_()

    def forward(self, x):
        return nn.functional.avg_pool2d(self.conv(x), 4)


class Constant(nn.Module):
    stride = 4

    def forward(self, x):
        return torch.ones(x.shape[0], 8, x.shape[2] // 4, x.shape[3] // 4)


def _batches(n=4, side=64):
    g = torch.Generator().manual_seed(1)
    # Smooth random images (coarse noise upsampled), so colour varies across the picture.
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    images = nn.functional.interpolate(coarse, size=(side, side), mode='bilinear', align_corners=False)
    return [(torch.arange(n), (images * 255).round().to(torch.uint8))]


def test_probes_are_one_transform_each_always_applied_plus_the_paper_views():
    assert list(PROBES) == [*PHOTOMETRIC_OPS, *GEOMETRIC_OPS, invariance.PAPER_VIEWS]
    assert PROBES['grey'].inv_list == ('grey',) and PROBES['grey'].grey_p == 1.0 and PROBES['grey'].eqv_list == ()
    assert PROBES['h_flip'].eqv_list == ('h_flip',) and PROBES['h_flip'].flip_p == 1.0
    paper = PROBES[invariance.PAPER_VIEWS]
    assert (paper.grey_p, paper.jitter_p, paper.eqv_list) == (0.2, 0.8, ('random_crop', 'h_flip'))
    # The checkpoint's strengths carry over (a JSON list becomes the config's tuple).
    weaker = invariance.probe_configs({'jitter_strength': 0.1, 'blur_sigma': [0.5, 1.0], 'min_scale': 0.8})
    assert (weaker['brightness'].jitter_strength, weaker['blur'].blur_sigma, weaker['random_crop'].min_scale) == \
        (0.1, (0.5, 1.0), 0.8)


def test_constant_features_agree_everywhere():
    centroids = torch.randn(5, 8, generator=torch.Generator().manual_seed(2))
    scores = invariance.cluster_agreement(Constant(), centroids, _batches(), PROBES, 64, 1, CPU_FP32)
    assert all(value == pytest.approx(100.0) for value in scores.values())  # chance too: one cluster


def test_flip_equivariant_network_scores_100_on_flips_and_less_on_colour():
    model = PooledColour().eval()
    centroids = nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(3)), dim=1)
    scores = invariance.cluster_agreement(model, centroids, _batches(), PROBES, 64, 1, CPU_FP32)
    assert scores['h_flip'] == pytest.approx(100.0) and scores['v_flip'] == pytest.approx(100.0)
    assert scores['brightness'] < 100.0 and scores['hue'] < 100.0 and scores['grey'] < 100.0
    assert 0 < scores['chance'] < 100.0
    assert all(0.0 <= value <= 100.0 for value in scores.values())


def test_cli_compares_run_folders_and_writes_the_table(tmp_path, tiny_demo, tiny_ablation, capsys):
    """On the runs the tiny ablation script makes (conftest's tiny_ablation): a folder and a checkpoint file."""
    runs = tiny_ablation[0] / 'runs'
    out = tmp_path / 'inv' / 'table'
    argv = [str(runs / 'none'), str(runs / 'jitter+random_crop' / 'checkpoint.pth'), '--data_root', str(tiny_demo),
            '--device', 'cpu', '--n_images', '3', '--out', str(out)]
    assert invariance.main(argv) == 0
    printed = capsys.readouterr().out
    assert '| transform | none | jitter+random_crop |' in printed and '| paper views |' in printed
    assert out.with_suffix('.md').read_text() in printed
    saved = json.loads(out.with_suffix('.json').read_text())
    assert set(saved['results']) == {'none', 'jitter+random_crop'} and saved['n_images'] == 3
    assert saved['trained_with']['none'] == 'none / none'
    assert set(saved['results']['jitter+random_crop']) == {*PROBES, 'chance'}


def test_cli_missing_checkpoint_is_one_line(tmp_path, capsys):
    missing = tmp_path / 'nope.pth'
    assert invariance.main([str(missing), '--data_root', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]

