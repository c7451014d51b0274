"""Run folder, logging, device selection and data loaders shared by the entry points."""
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import DataLoader

from data.datasets import Batch, DataError, collate_skip_bad
from utils import dist
from utils.signals import check_stop, ignore_interrupts

log = logging.getLogger("picie")
REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_NAME = "checkpoint.pth"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message says what to do."""


def setup_logging(log_file: Optional[Path] = None) -> logging.Logger:
    """Log to stdout (rank 0) and, if given, append to log_file."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if dist.is_main():
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(stream)
        if log_file is not None:
            file_handler = logging.FileHandler(log_file)
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            root.addHandler(file_handler)
    return log


def git_commit() -> str:
    """HEAD of the toolkit's repository (+ '-dirty' with uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.is_distributed():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast is ~2x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def select_amp_dtype(precision: str, device: torch.device, deterministic: bool) -> Optional[torch.dtype]:
    if precision == "fp32" or deterministic:
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return None


def prepare_run_folder(path: Path, restart: bool, overwrite: bool) -> Path:
    """Create or reuse a run folder without ever losing what it holds.

    A folder with a checkpoint needs --restart (continue) or --overwrite (old files are moved
    into <folder>/previous_<time>/, not deleted). Checks that the folder is writable and has
    some free space before any training starts.
    """
    path = Path(path)
    has_checkpoint = (path / CHECKPOINT_NAME).is_file()
    if has_checkpoint and not restart and not overwrite:
        raise RunFolderError(f"{path} already holds a run ({CHECKPOINT_NAME}); pass --restart to continue it, "
                             "--overwrite to start afresh (old files are kept in previous_*/), or another --run_name")
    if not dist.is_main():
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_bytes(b"0" * 1024)
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"cannot write to run folder {path} ({exc.strerror}); choose a writable --save_root") from None
    free = shutil.disk_usage(path).free
    if free < 200 * 2 ** 20:
        raise RunFolderError(f"only {free / 2 ** 20:.0f} MB free at {path}; free some space or choose another --save_root")
    if has_checkpoint and overwrite and not restart:
        backup = path / time.strftime("previous_%Y%m%d-%H%M%S")
        backup.mkdir()
        for item in path.iterdir():
            if item != backup and not item.name.startswith("previous_"):
                item.rename(backup / item.name)
    return path


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: Path, record: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


class ChunkedBatchSampler:
    """Splits the sampler's order into batches of `batch_size`, and each batch into chunks of at
    most `chunk` images, so that workers load small pieces (see PassLoader)."""

    def __init__(self, sampler, batch_size: int, chunk: int):
        self.sampler, self.batch_size, self.chunk = sampler, batch_size, chunk

    def batches(self) -> List[List[int]]:
        order = list(self.sampler)
        return [order[start: start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def __iter__(self):
        for batch in self.batches():
            for start in range(0, len(batch), self.chunk):
                yield batch[start: start + self.chunk]

    def __len__(self) -> int:
        return sum(-(-len(b) // self.chunk) for b in self.batches())


class PassLoader:
    """One pass over a dataset in batches of `batch_size`, loaded by workers in chunks of at most
    `chunk` images and joined on the device.

    Memory in flight is workers x prefetch x chunk images instead of workers x prefetch x batch
    (at batch 256 and 640x640 base images, 14 workers held ~18 GB of prefetched batches), and
    each worker's piece is ready sooner, so the device starts earlier.

    Reliability: before each batch it checks for a stop request (utils/signals.py); it records
    the indices of unreadable images it skipped in `skipped` (cleared by the caller); a
    DataError raised in a worker reaches the caller as the worker's one-line message.
    """

    def __init__(self, dataset, batch_size: int, sampler, num_workers: int, device: torch.device, chunk: int = 32):
        self.sampler = sampler
        self.batch_size = batch_size
        self.device = device
        self.chunk = min(chunk, batch_size)
        self.batch_sampler = ChunkedBatchSampler(sampler, batch_size, self.chunk)
        self.skipped = set()  # dataset indices of unreadable images skipped since the caller cleared it
        self.loader = DataLoader(dataset, batch_sampler=self.batch_sampler, num_workers=num_workers,
                                 collate_fn=collate_skip_bad, pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers > 0 else None,
                                 worker_init_fn=ignore_interrupts if num_workers > 0 else None)

    def __len__(self) -> int:
        return len(self.batch_sampler.batches())

    def __iter__(self):
        sizes = [len(b) for b in self.batch_sampler.batches()]
        pieces, expected, batch_number = [], 0, 0
        check_stop()
        for piece in _unwrapped_errors(self.loader):
            if not pieces:
                expected = -(-sizes[batch_number] // self.chunk)
            pieces.append(piece)
            self.skipped.update(piece.skipped)
            if len(pieces) == expected:
                yield self._join(pieces)
                pieces, batch_number = [], batch_number + 1
                check_stop()

    def _join(self, pieces: List[Batch]) -> Batch:
        if len(pieces) == 1:
            return pieces[0]
        kept = [p for p in pieces if p.indices.numel() > 0]
        n_skipped = sum(p.n_skipped for p in pieces)
        skipped = tuple(i for p in pieces for i in p.skipped)
        if not kept:
            return Batch(torch.empty(0, dtype=torch.long), pieces[0].images, None, n_skipped, skipped)
        # Move each (pinned) piece to the device and join there: no extra host copy.
        images = torch.cat([p.images.to(self.device, non_blocking=True) for p in kept])
        labels = (torch.cat([p.labels.to(self.device, non_blocking=True) for p in kept])
                  if kept[0].labels is not None else None)
        return Batch(torch.cat([p.indices for p in kept]), images, labels, n_skipped, skipped)


def _unwrapped_errors(loader):
    """Iterate a DataLoader; a DataError from a worker is re-raised with its own message.

    DataLoader re-raises a worker's exception as 'Caught DataError in DataLoader worker
    process 0. Original Traceback ...'; the user should see the one line naming the file.
    """
    try:
        yield from loader
    except DataError as exc:
        raise DataError(worker_error_message(exc)) from None


def worker_error_message(exc: BaseException) -> str:
    """The original message of an exception re-raised by a DataLoader worker (else str(exc))."""
    text = str(exc)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1]
    name = type(exc).__name__
    for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def make_loader(dataset, batch_size: int, sampler, num_workers: int, device: torch.device) -> PassLoader:
    """Loader of the toolkit: chunked loading, pinned memory on CUDA, persistent workers.

    Workers are capped at the CPUs this process may use: more only adds memory and switching.
    """
    num_workers = min(num_workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return PassLoader(dataset, batch_size, sampler, num_workers, device)
