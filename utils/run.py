"""The run folder: creating it safely, logging into it, its JSON files, and where a run stands.

A run folder (<save_root>/<run_name>/) holds config.json, train.log, metrics.jsonl,
checkpoint.pth and final_metrics.json. Nothing in it is ever lost: a folder holding a run
needs --restart (continue) or --overwrite (old files moved to previous_<time>/), every file is
replaced atomically, and a killed run leaves at most temporary files, removed on the next start.
"""
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from utils import dist
from utils.errors import UserError
from utils.files import remove_stale_temp_files, write_json_file, write_text
from utils.signals import signal_name

log = logging.getLogger("picie")
REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_NAME = "checkpoint.pth"


class RunFolderError(UserError):
    """The run folder cannot be used as asked; the message says what to do."""


class _Buffer(logging.Handler):
    """Keeps the records logged before the run folder exists, so that train.log starts with them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _ConsoleFormatter(logging.Formatter):
    """Plain messages; warnings and errors prefixed 'warning:' / 'error:' (they go to stderr)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def setup_logging(log_file: Path | None = None) -> logging.Logger:
    """Log INFO to stdout and warnings and errors to stderr (rank 0), each message on its own line;
    with `log_file`, also append to it. Without one, records are kept until attach_log_file."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if dist.is_main():
        info = logging.StreamHandler(sys.stdout)
        info.addFilter(lambda record: record.levelno < logging.WARNING)
        problems = logging.StreamHandler(sys.stderr)
        problems.setLevel(logging.WARNING)
        for handler in (info, problems):
            handler.setFormatter(_ConsoleFormatter("%(message)s"))
            root.addHandler(handler)
        if log_file is not None:
            attach_log_file(log_file)
        else:
            root.addHandler(_Buffer())
    return log


def attach_log_file(log_file: Path) -> None:
    """Append every later record to log_file, starting with those logged before it existed."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for handler in [h for h in root.handlers if isinstance(h, _Buffer)]:
        for record in handler.records:
            file_handler.handle(record)
        root.removeHandler(handler)
    root.addHandler(file_handler)


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


def check_run_folder(path: Path, restart: bool, overwrite: bool) -> None:
    """Every check of the run folder that can fail, writing nothing: a folder with a checkpoint
    needs --restart or --overwrite; the folder (or its nearest existing parent, for a new one)
    must be writable and have some free space."""
    path = Path(path)
    if (path / CHECKPOINT_NAME).is_file() and not restart and not overwrite:
        raise RunFolderError(f"{path} already holds a run ({CHECKPOINT_NAME}); pass --restart to continue it, "
                             "--overwrite to start afresh (old files are kept in previous_*/), or another --run_name")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"run folder {path} exists and is not a folder; choose another --run_name or --save_root")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write to run folder {path} ({existing} is not writable); choose a writable "
                             "--save_root")
    free = shutil.disk_usage(existing).free
    if free < 200 * 2 ** 20:
        raise RunFolderError(f"only {free / 2 ** 20:.0f} MB free at {path}; "
                             "free some space or choose another --save_root")


def prepare_run_folder(path: Path, restart: bool, overwrite: bool) -> Path:
    """Create or reuse a run folder without ever losing what it holds (call once every check of
    the run has passed: before, nothing may be written). --overwrite moves the old files into
    <folder>/previous_<time>/ instead of deleting them."""
    path = Path(path)
    check_run_folder(path, restart, overwrite)
    if not dist.is_main():
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_bytes(b"0" * 1024)
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"cannot write to run folder {path} ({exc.strerror}); "
                             "choose a writable --save_root") from None
    if (path / CHECKPOINT_NAME).is_file() and overwrite and not restart:
        backup = path / time.strftime("previous_%Y%m%d-%H%M%S")
        backup.mkdir()
        for item in path.iterdir():
            if item != backup and not item.name.startswith("previous_"):
                item.rename(backup / item.name)
    return path


def strict_json(value, where: str = ""):
    """`value` with every non-finite float (NaN, inf) replaced by None, which strict JSON readers
    accept; each replacement is logged with the key path where it was, so nothing is silent."""
    if isinstance(value, float) and not math.isfinite(value):
        log.warning("%s is %s (no defined value: e.g. a class with no pixel); written as null", where or "a value",
                    value)
        return None
    if isinstance(value, dict):
        return {k: strict_json(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def jsonl_line(record: dict, where: str = "") -> str:
    """One record as a strict JSON line (non-finite numbers as null, each one logged with `where`)."""
    return json.dumps(strict_json(record, where), allow_nan=False)


def write_json(path: Path, record: dict) -> None:
    """Strict JSON (non-finite numbers as null), written whole or not at all (utils/files.py)."""
    write_json_file(path, strict_json(record, Path(path).name))


def rewrite_metrics(path: Path, history: Sequence[dict], lines: Sequence[str] | None = None) -> int:
    """Make metrics.jsonl hold exactly the checkpoint's history (one line per record; `lines`:
    the history's records already as jsonl_line made them), written whole or not at all.

    A run killed after an epoch but before its checkpoint redoes that epoch; rewriting from the
    history keeps one line per epoch. Returns how many lines were dropped.
    """
    path = Path(path)
    old = path.read_text().splitlines() if path.is_file() else []
    new = list(lines) if lines is not None else [jsonl_line(record, path.name) for record in history]
    if old == new:
        return 0
    write_text(path, "".join(line + "\n" for line in new))
    return max(len(old) - len(new), 0)


class RunLog:
    """The run's history: every record goes to the in-memory history (saved in checkpoints) and,
    once the checkpoint holding it is written (commit), on rank 0 to metrics.jsonl, so that
    metrics.jsonl never lists an epoch the checkpoint does not hold (e.g. when its save failed)."""

    def __init__(self, folder: Path, history: list[dict] | None = None):
        self.path = Path(folder) / "metrics.jsonl"
        self.history: list[dict] = list(history or [])
        self._lines: list[str] = [jsonl_line(record, self.path.name) for record in self.history]
        if dist.is_main():  # one line per record of the checkpoint's history: a redone epoch is not listed twice
            dropped = rewrite_metrics(self.path, self.history, self._lines)
            if dropped:
                log.info("metrics.jsonl: dropped %d line(s) of work the interrupted run had not checkpointed",
                         dropped)

    def add(self, record: dict) -> None:
        """A record of the history; metrics.jsonl lists it from the next commit on."""
        self.history.append(record)

    def commit(self) -> None:
        """metrics.jsonl := the history (call once the checkpoint holding it is saved); rank 0 writes."""
        self._lines += [jsonl_line(record, self.path.name) for record in self.history[len(self._lines):]]
        if dist.is_main():
            rewrite_metrics(self.path, self.history, self._lines)

    def stage(self, name: str) -> dict | None:
        """The last record of a stage ('init', 'init_bn', 'train'), or None."""
        return next((r for r in reversed(self.history) if r.get("stage") == name), None)


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this run: the same arguments plus --restart."""
    args = [a for a in argv if a != "--overwrite"]
    if "--restart" not in args:
        args.append("--restart")
    # The script as it was started when that was train_picie.py (any folder), else its plain name.
    program = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "train_picie.py" else "train_picie.py"
    return shlex.join(["python", program, *args])


@dataclass
class RunProgress:
    """Where a run stands, for the message when it stops early, and how long each phase of the
    current epoch took: the run folder's checkpoint, the last epoch saved, the epoch (1-based, as
    in metrics.jsonl) and phase in progress."""

    resume_with: str = "python train_picie.py <same arguments> --restart"
    checkpoint: Path | None = None
    saved_epoch: int | None = None
    epoch: int | None = None
    num_epoch: int | None = None
    phase: str = "set-up"
    phase_s: dict[str, float] = field(default_factory=dict)
    _tick: float = 0.0

    def start_epoch(self, epoch: int, num_epoch: int) -> None:
        """Epoch `epoch` (0-based) begins: phase times restart."""
        self.epoch, self.num_epoch, self.phase_s = epoch + 1, num_epoch, {}
        self._tick = time.perf_counter()

    def enter(self, phase: str) -> None:
        """The run moves on to `phase` (named in the stop message)."""
        self.phase = phase

    def lap(self, name: str) -> None:
        """Time since the last lap (or the epoch's start) is recorded as phase `name`."""
        now = time.perf_counter()
        self.phase_s[name] = now - self._tick
        self._tick = now

    def rounded_phases(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.phase_s.items()}

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


def config_to_json(record: dict) -> str:
    """A run's record (resolved flags, git commit) as config.json holds it: keys sorted, indented."""
    return json.dumps({k: v for k, v in sorted(record.items())}, indent=2, default=str)


def open_run(run_folder: Path, record: dict, restart: bool, overwrite: bool, fresh: bool, where: str) -> dict:
    """The run record (`record`, the resolved flags, + git commit), once every check has passed: the
    folder created or reused (never losing what it holds), logging into its train.log, and for a
    fresh run its config.json (a restart never rewrites the record of the run it continues; one
    broken or gone is restored from the checkpoint's record first: repair_config).
    `where`: the device and autocast, for the first log line."""
    prepare_run_folder(run_folder, restart, overwrite)
    if dist.is_main():
        attach_log_file(run_folder / "train.log")
        remove_stale_temp_files(run_folder)
    record = dict(record, git_commit=git_commit())
    log.info("PiCIE run %s (git %s) on %s", run_folder, record["git_commit"], where)
    log.info("config: %s", config_to_json(record))
    if fresh and dist.is_main():
        write_text(run_folder / "config.json", config_to_json(record))
    return record


def repair_config(path: Path, recorded: dict) -> Path | None:
    """On --restart: a config.json that is gone, not a JSON object, or lacks keys of the run's record
    (`recorded`: the checkpoint's) is rewritten from that record, and said; what was there is kept
    beside it as config.json.broken-<time>, whose path is returned (None when nothing was wrong)."""
    problem = config_problem(path, recorded)
    if problem is None:
        return None
    aside = None
    try:
        if path.exists() or path.is_symlink():
            aside = path.with_name(time.strftime(f"{path.name}.broken-%Y%m%d-%H%M%S"))
            path.rename(aside)
        write_text(path, config_to_json(recorded))
    except OSError as exc:
        raise RunFolderError(f"{path} {problem} and cannot be rewritten ({exc.strerror or exc}); fix the run "
                             "folder's permissions or space, then --restart again") from None
    log.warning("--restart: %s %s; rewritten from the run's record in %s%s", path, problem, CHECKPOINT_NAME,
                f" (what was there is kept as {aside})" if aside else "")
    return aside


def config_problem(path: Path, recorded: dict) -> str | None:
    """What is wrong with a run's config.json against its record `recorded`, or None."""
    if not path.is_file():
        return "is missing" if not path.exists() else "is not a file"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return f"cannot be read as JSON ({exc.__class__.__name__}: {exc})"
    if not isinstance(config, dict):
        return f"holds a JSON {type(config).__name__}, not the run's settings"
    missing = sorted(set(recorded) - set(config))
    if missing:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        return f"lacks {len(missing)} setting(s) of the run ({listed})"
    return None


def finished(run_folder: Path, ckpt: dict | None, num_epoch: int) -> bool:
    """True (and said) when --restart finds the run done: its last epoch checkpointed and scored."""
    if ckpt is None or ckpt["epoch"] < num_epoch or not (run_folder / "final_metrics.json").is_file():
        return False
    log.info("%s is finished (epoch %d of %d, final_metrics.json): nothing to do; pass --num_epoch N to train further",
             run_folder, ckpt["epoch"], num_epoch)
    return True


def brief_metrics(metrics: dict) -> dict:
    """The scores of a classifier as an epoch's record keeps them (no per-image or per-repeat detail)."""
    keep = ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "per_class_iou", "matching", "cluster_to_class")
    brief = {k: metrics[k] for k in keep if k in metrics}
    if "majority" in metrics:  # K_train > classes: many-to-one matching, labelled by its "matching" key
        brief["majority"] = {k: metrics["majority"][k] for k in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "matching",
                                                                 "cluster_to_class") if k in metrics["majority"]}
    return brief


def loggable(record: dict) -> str:
    """The record as one JSON line without the long per-class lists (nested ones included)."""
    def short(value):
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items() if k not in ("per_class_iou", "cluster_to_class")}
        return value
    return json.dumps(short(record))
