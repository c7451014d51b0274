"""utils/loaders.py: how many DataLoader workers a pass gets."""
import logging

import pytest
import torch

from utils import loaders


@pytest.fixture
def machine(monkeypatch):
    """(cpus, torch threads) of a pretend machine."""
    def set_machine(cpus, threads):
        monkeypatch.setattr(loaders.os, 'sched_getaffinity', lambda pid: set(range(cpus)), raising=False)
        monkeypatch.setattr(loaders.torch, 'get_num_threads', lambda: threads)
        monkeypatch.setitem(loaders._SAID, 'workers', False)
    return set_machine


def test_on_the_cpu_workers_get_only_the_cpus_torch_leaves_free(machine, caplog):
    """2 cores running 2 threads: decoding in the main process measured faster than 1 or 2 workers."""
    machine(2, 2)
    with caplog.at_level(logging.INFO, logger='picie'):
        assert loaders.usable_workers(2, torch.device('cpu')) == 0
        assert loaders.usable_workers(2, torch.device('cpu')) == 0
    assert sum('--num_workers 2: 0 DataLoader worker(s)' in r.getMessage() for r in caplog.records) == 1
    machine(16, 8)  # 8 physical cores with SMT: torch takes 8 threads
    assert loaders.usable_workers(4, torch.device('cpu')) == 4
    assert loaders.usable_workers(12, torch.device('cpu')) == 8
    machine(2, 1)  # OMP_NUM_THREADS=1 frees a core
    assert loaders.usable_workers(2, torch.device('cpu')) == 1


def test_with_a_gpu_the_workers_are_capped_at_the_cpus_only(machine):
    machine(2, 2)
    assert loaders.usable_workers(2, torch.device('cuda', 0)) == 2
    assert loaders.usable_workers(8, torch.device('cuda', 0)) == 2
    assert loaders.usable_workers(0, torch.device('cuda', 0)) == 0
