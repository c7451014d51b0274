"""utils/runtime.py: how the entry scripts start and end."""
import ast
import gc
import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO_ROOT
from utils import runtime
from utils.runtime import MALLOC_ENV, keep_freed_memory, script_main

SCRIPTS = ('train_picie.py', 'test_picie.py', 'predict.py', 'config/__main__.py', 'tools/invariance.py',
           'tools/visualize.py', 'tools/make_figures.py', 'tools/make_holdout.py', 'tools/compare_runs.py',
           'tools/seed_summary.py',
           'benchmarks/fingerprint.py', 'benchmarks/bench_epoch.py', 'benchmarks/bench_efficiency.py',
           'benchmarks/bench_compile.py', 'benchmarks/bench_conv_kernels.py')


def test_script_main_freezes_what_was_imported_and_exits_with_the_code():
    seen = {}

    def main():
        seen['frozen'] = gc.get_freeze_count()
        return 3
    try:
        with pytest.raises(SystemExit) as stop:
            script_main(main)
    finally:
        gc.unfreeze()  # give this test process its collector back
    assert stop.value.code == 3
    assert seen['frozen'] > 1000  # the imports' objects (torch alone makes tens of thousands)
    try:
        with pytest.raises(SystemExit) as stop:
            script_main(lambda: {'whole_run_s': 1.0})  # a benchmark's main returns its results
    finally:
        gc.unfreeze()
    assert stop.value.code == 0


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_that_import_torch_start_through_script_main(script):
    """Each script's `if __name__ == "__main__":` block calls script_main: ~1.2 s less per command."""
    tree = ast.parse((REPO_ROOT / script).read_text())
    guard = [node for node in tree.body if isinstance(node, ast.If) and 'script_main' in ast.unparse(node)
             and '__main__' in ast.unparse(node.test)]
    assert guard, f'{script} does not end with `if __name__ == "__main__": script_main(...)`'


# Training steps of two conv-BatchNorm-ReLU layers (forward and backward, 4 images of 128 px): page faults counted by
# the kernel for this process (ru_minflt) over 5 steps after 3 warm-up steps. Prints
# "<keep_freed_memory() ran and returned> <faults>"; argv[1] says whether to call it.
_STEPS = """
import resource, sys, torch
from torch import nn
from utils.runtime import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == 'keep' else None
torch.set_num_threads(1)
net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
images = torch.randn(4, 3, 128, 128)
for step in range(8):
    if step == 3:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(images).sum().backward()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc and ru_minflt: Linux')
def test_keep_freed_memory_removes_the_page_faults_of_training_steps_unless_malloc_is_set():
    """glibc's defaults unmap and trim freed activations, so every step faults its memory in anew
    (~100,000 faults here); kept, the steps reuse it."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}

    def run(mode, **extra):
        out = subprocess.run([sys.executable, '-c', _STEPS, mode], cwd=REPO_ROOT, env={**env, **extra},
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], int(out[1])
    (ran, kept_faults), (_, default_faults) = run('keep'), run('defaults')
    assert ran == 'True'
    assert default_faults > 10_000
    assert kept_faults < default_faults / 3


def test_keep_freed_memory_leaves_malloc_alone_when_the_user_set_it(monkeypatch):
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '65536')  # as benchmarks/bench_epoch.py's memory mode
    assert keep_freed_memory() is False


@pytest.mark.parametrize('speedup, chosen', [(0.8, None), (1.2, None), (1.9, torch.bfloat16)])
def test_precision_auto_on_a_cpu_trains_in_bf16_only_where_it_measures_faster(monkeypatch, speedup, chosen):
    """The avx512_bf16 flag alone is not enough: one such machine ran bf16 slower than float32."""
    monkeypatch.setattr(runtime, 'cpu_has_bf16', lambda: True)
    monkeypatch.setattr(runtime, 'bf16_speedup', lambda: speedup)
    assert runtime.select_amp_dtype('auto', torch.device('cpu'), deterministic=False) is chosen
    assert runtime.select_amp_dtype('bf16', torch.device('cpu'), deterministic=False) is torch.bfloat16
    assert runtime.select_amp_dtype('auto', torch.device('cpu'), deterministic=True) is None


def test_bf16_speedup_is_a_positive_ratio_measured_once():
    runtime.bf16_speedup.cache_clear()
    first = runtime.bf16_speedup()
    assert first > 0 and runtime.bf16_speedup() == first  # cached: one measurement per process
