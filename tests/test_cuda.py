"""GPU paths: the same results as the CPU within float tolerance, and a short run end to end.

Skipped where no CUDA device is visible (CI); benchmarks/gpu_check.sh runs them on a lent GPU.
"""
import json

import pytest
import torch

import test_picie
import train_picie
from data.transforms import AugmentConfig, ViewMaker
from helpers import TINY_FLAGS
from modules.kmeans import MiniBatchKMeans

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
CUDA = torch.device("cuda")


def test_views_on_gpu_equal_cpu():
    cfg = AugmentConfig(inv_list=("brightness", "contrast", "saturation", "hue", "grey", "blur"),
                        eqv_list=("random_crop", "h_flip"), grey_p=0.5)
    maker = ViewMaker(cfg, 64, seed=3)
    base = torch.randint(0, 256, (8, 3, 128, 128), dtype=torch.uint8)
    indices = list(range(8))
    cpu = maker.views(base, maker.params(0, indices, torch.device("cpu")))
    gpu = maker.views(base.to(CUDA), maker.params(0, indices, CUDA))
    for a, b in zip(cpu, gpu, strict=True):
        assert (a - b.cpu()).abs().max() < 1e-3


def test_torch_kmeans_on_gpu_equals_cpu():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=generator) * 5
    points = (centres.repeat_interleave(200, 0) + torch.randn(1200, 16, generator=generator))
    results = []
    for device in (torch.device("cpu"), CUDA):
        km = MiniBatchKMeans(6, n_iter=10, seed=1, backend="torch", device=device)
        km.fit_init(points.to(device))
        km.partial_fit(points[:300].to(device))
        labels, _ = km.assign(points.to(device))
        results.append((km.centroids.cpu(), labels.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-4, rtol=1e-4)
    assert (results[0][1] == results[1][1]).float().mean() > 0.999


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_short_run_on_gpu(tiny_demo, tmp_path, precision):
    flags = [f for f in TINY_FLAGS]
    flags[flags.index("--device") + 1] = "cuda"
    flags[flags.index("--precision") + 1] = precision
    argv = ["--data_root", str(tiny_demo), "--save_root", str(tmp_path), "--run_name", "gpu", "--stuff",
            "--K_train", "15", "--K_test", "15", "--num_epoch", "2", *flags]
    assert train_picie.cli(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["loss"] == r["loss"] for r in records)
    out = tmp_path / "m.json"
    assert test_picie.cli(["--eval_path", str(tmp_path / "gpu" / "checkpoint.pth"), "--data_root", str(tiny_demo),
                           "--res", "64", "--device", "cuda", "--num_workers", "0", "--out", str(out)]) == 0
    assert 0 <= json.loads(out.read_text())["mIoU"] <= 100
