"""Exact resume, crash-safe run-folder writes, and clear messages when a run stops early.

Why a resumed run can be exact: every epoch is a pure function of (model and optimiser state
at its start, --seed, epoch): transform parameters are drawn per (seed, epoch, image), the
sampler order per (seed, epoch) and the k-means seeds per (seed, epoch, view). The epoch
checkpoint holds that state, so a run killed at any point redoes the interrupted epoch from the
last checkpoint. What else could carry state is handled here: the global RNG states (saved
and restored), the CPU thread counts (results depend on them; with --deterministic a resumed
run takes the original counts), metrics.jsonl (rewritten from the checkpoint's history, so a
redone epoch leaves no duplicate line) and temporary files of an interrupted save (removed).
"""
import json
import logging
import os
import random
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from data.validation import DataError
from utils.checkpoint import atomic_save
from utils.kmeans import faiss_threads, set_faiss_threads
from utils.run import RunFolderError
from utils.signals import signal_name

log = logging.getLogger("picie")

# Flags that do not change what a run computes: they may differ between a run and its resume
# without a warning. Every other flag of the checkpoint's run is compared (see differing_flags).
RESUME_FREE_FLAGS = frozenset({
    "restart", "overwrite", "num_epoch", "num_workers", "comment", "save_root", "run_name", "data_root",
    "keep_checkpoints", "eval_init", "out", "eval_only", "eval_path", "recluster", "git_commit",
    "max_bad_fraction", "skip_nonfinite", "bad_labels", "repeats"})


# -- RNG and thread state -------------------------------------------------------------------
def capture_rng() -> Dict:
    """The global RNG states (torch CPU and CUDA, numpy, python) in a weights_only-loadable form."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Optional[Dict]) -> None:
    """Set the global RNGs to a capture_rng() state (older checkpoints: torch only)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    numpy_state = state.get("numpy")
    if isinstance(numpy_state, dict):
        np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state.get("python")
    if isinstance(python_state, dict):
        random.setstate((python_state["version"], tuple(python_state["internal"].tolist()),
                         python_state["gauss_next"]))
    cuda_state = state.get("cuda")
    if cuda_state is not None and torch.cuda.is_available() and len(cuda_state) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_state)


def thread_counts() -> Dict[str, Optional[int]]:
    """CPU threads of torch and faiss: CPU results depend on them (reduction order)."""
    return {"torch": torch.get_num_threads(), "faiss": faiss_threads()}


def match_thread_counts(saved: Optional[Dict], deterministic: bool) -> None:
    """With --deterministic, use the thread counts of the run being resumed, so that the resumed
    epochs compute exactly what the uninterrupted run would have; otherwise only say so."""
    if not saved:
        return
    now = thread_counts()
    if now == saved:
        return
    if deterministic:
        torch.set_num_threads(int(saved["torch"]))
        if saved.get("faiss"):
            set_faiss_threads(saved["faiss"])
        log.info("--deterministic: using the thread counts of the resumed run (torch %s, faiss %s; this machine "
                 "had %s, %s) so that its results are reproduced", saved["torch"], saved.get("faiss"),
                 now["torch"], now["faiss"])
    else:
        log.info("thread counts differ from the resumed run's (%s now, %s then): CPU results may differ in the "
                 "last bits; --deterministic makes them match", now, saved)


def configure_determinism(deterministic: bool) -> None:
    """Settings that must precede the first CUDA call: cuBLAS needs a fixed workspace to be
    deterministic (torch.use_deterministic_algorithms, set in make_runtime, checks for it)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def differing_flags(args, saved_args: Dict) -> List[Tuple[str, object, object]]:
    """(flag, now, in the checkpoint) for each flag that changes results and differs."""
    now = vars(args)
    differ = []
    for key, then in sorted(saved_args.items()):
        if key in RESUME_FREE_FLAGS or key not in now:
            continue
        value = now[key]
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(then, tuple):
            then = list(then)
        if value != then:
            differ.append((key, now[key], then))
    return differ


# -- run-folder files -----------------------------------------------------------------------
def save_checkpoint(state: Dict, path: Path) -> None:
    """atomic_save; a write error (full disk, lost mount) becomes one clear line, and the
    previous file at `path` is intact (atomic_save only ever renames a complete file over it)."""
    try:
        atomic_save(state, path)
    except OSError as exc:
        raise RunFolderError(f"could not write {path} ({exc.strerror or exc}); the previous checkpoint is "
                             "intact: free space or fix the folder, then resume with --restart") from None


def rewrite_metrics(path: Path, history: Sequence[Dict]) -> int:
    """Make metrics.jsonl hold exactly the checkpoint's history (one line per record).

    A run killed after appending an epoch's line but before its checkpoint redoes that epoch;
    rewriting from the history keeps one line per epoch. Returns how many lines were dropped.
    """
    path = Path(path)
    old = path.read_text().splitlines() if path.is_file() else []
    new = [json.dumps(record) for record in history]
    if old == new:
        return 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in new))
    os.replace(tmp, path)
    return max(len(old) - len(new), 0)


def remove_stale_temp_files(folder: Path) -> List[Path]:
    """Remove the temporary files of writes a killed run left unfinished (never complete files:
    atomic writes only rename a temporary file into place once it is complete)."""
    folder = Path(folder)
    stale = [p for p in list(folder.glob(".*.tmp")) + list(folder.glob("*.json*.tmp")) if p.is_file()]
    for path in stale:
        path.unlink()
        log.info("removed %s, left by an interrupted write", path)
    return stale


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this run: the same arguments plus --restart."""
    args = [a for a in argv if a != "--overwrite"]
    if "--restart" not in args:
        args.append("--restart")
    # The script as it was started when that was train_picie.py (any folder), else its plain name.
    program = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "train_picie.py" else "train_picie.py"
    return shlex.join(["python", program, *args])


# -- training data that cannot be read --------------------------------------------------------
def check_bad_images(bad_paths: Sequence[str], n_total: int, max_fraction: float) -> None:
    """DataError when more than max_fraction of the training images could not be read."""
    if bad_paths and len(bad_paths) > max_fraction * n_total:
        shown = ", ".join(str(p) for p in bad_paths[:3]) + (", ..." if len(bad_paths) > 3 else "")
        raise DataError(f"{len(bad_paths)} of {n_total} training images could not be read ({shown}), more than "
                        f"--max_bad_fraction {max_fraction}; replace or remove them, or raise --max_bad_fraction")


# -- where a run is, for the messages when it stops ----------------------------------------------
@dataclass
class RunProgress:
    """What train_picie.main has reached: the run folder, the last checkpoint written, the epoch
    (1-based, as in metrics.jsonl) and phase in progress."""

    resume_with: str = "python train_picie.py <same arguments> --restart"
    checkpoint: Optional[Path] = None
    saved_epoch: Optional[int] = None
    epoch: Optional[int] = None
    num_epoch: Optional[int] = None
    phase: str = "set-up"
    notes: List[str] = field(default_factory=list)

    def kept(self) -> str:
        if self.saved_epoch is None:
            return "no checkpoint was written yet, so --restart starts the run from its beginning"
        return f"the checkpoint after epoch {self.saved_epoch} ({self.checkpoint}) is kept"

    def redo(self) -> str:
        if self.phase == "final evaluation":
            return "the final evaluation will be redone"
        if self.epoch is not None and self.saved_epoch is not None:
            return f"epoch {self.epoch} will be redone from its start"
        return ""

    def stop_message(self, signum: int) -> str:
        where = f"in epoch {self.epoch} of {self.num_epoch} ({self.phase})" if self.epoch else f"during {self.phase}"
        redo = self.redo()
        return (f"stopped by {signal_name(signum)} {where}; {self.kept()}" + (f", and {redo}" if redo else "")
                + f".\nresume with: {self.resume_with}")
