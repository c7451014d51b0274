"""Run folder, logging, device selection and data loaders shared by the entry points."""
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from data.datasets import collate_skip_bad
from utils import dist

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


def make_loader(dataset, batch_size: int, sampler, num_workers: int, device: torch.device) -> DataLoader:
    """DataLoader with the toolkit's collate, pinned memory on CUDA, and persistent workers.

    Workers are capped at the CPUs this process may use: more only adds memory and switching.
    """
    num_workers = min(num_workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_skip_bad, pin_memory=device.type == "cuda",
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)
