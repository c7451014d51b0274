"""One process at a time writes into a run folder or an output: an OS advisory lock held while it runs.

A run holds its target (a run folder, predict.py's --output folder, test_picie.py's metrics file)
with fcntl.flock on a hidden lock file *beside* it: <parent>/.<name>.lock. A second process that
wants the same target finds the lock taken and stops with one line naming the holder (pid, host,
start time and command, which the holder writes into the lock file). The kernel drops the lock
when the holding process ends, however it ends (kill -9 included), so a crashed run never leaves
a hold behind: the next start takes the lock file over.

Beside, not inside: a refused or failed start must leave no folder behind, and the run folder
itself is only created once every check of the run has passed. The lock file's folder (the
--save_root) is created for the hold if it does not exist and removed again, when still empty, as
the hold ends; the lock file is removed as the hold ends too (a kill -9 leaves it, unlocked).
Where the file system offers no locks (ENOLCK on some network mounts) the run goes on with a
warning; where the lock file cannot be created at all, nothing can be written there either, and
the run's own checks say so.
"""
import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
import time
import weakref
from pathlib import Path

from utils.errors import UserError

log = logging.getLogger("picie")


class HeldError(UserError):
    """Another process holds the run folder or output this one would write to."""


def lock_file(target: Path) -> Path:
    """The lock file of `target`: <parent>/.<name>.lock."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def holder_of(path: Path) -> str:
    """What the holder wrote into the lock file (one line), or a note that it wrote nothing yet."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "a process that has not written its details yet"


_HELD: "weakref.WeakSet[Hold]" = weakref.WeakSet()


def _forget_in_child() -> None:
    """In a forked child (a DataLoader worker): close its copies of the lock descriptors. flock
    locks belong to the open file, which lives until its last descriptor closes: a worker still
    running after its run was killed would otherwise keep the folder held. The parent's own
    descriptor keeps the lock; the child never removes the lock file."""
    for hold in list(_HELD):
        if hold._fd is not None:
            try:
                os.close(hold._fd)
            except OSError:
                pass
        hold._fd, hold._created = None, []
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class Hold:
    """The lock on `target` while this process writes to it (a context manager).

    target: the run folder or output (None: nothing is written, nothing held); flag: the flag that
    chose it (named in the message); enabled=False holds nothing (DDP ranks other than 0: one hold
    per run).
    """

    def __init__(self, target: Path | None, flag: str, enabled: bool = True):
        self.target, self.flag = (Path(target) if target is not None else None), flag
        self.enabled = enabled and target is not None
        self.path = lock_file(self.target) if self.target is not None else None
        self._fd: int | None = None
        self._created: list[Path] = []   # folders made for the lock file, removed again when left empty

    def __enter__(self) -> "Hold":
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise HeldError naming the holder; writes pid, host, time and command."""
        for _ in range(5):  # retried when a releasing holder removed the file between our open and lock
            fd = self._open()
            if fd is None:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    self._remove_created()
                    raise HeldError(f"{self.target} is in use by another run: {holder_of(self.path)}; wait for it to "
                                    f"finish or stop it, or choose another {self.flag}") from None
                log.warning("cannot lock %s (%s): a second run into %s at the same time would not be stopped",
                            self.path, exc.strerror, self.target)
                return
            if self._same_file(fd):
                self._fd = fd
                _HELD.add(self)
                self._write_holder()
                return
            os.close(fd)  # the holder we waited on removed this file: lock the new one
        raise HeldError(f"{self.target}: could not take {self.path} (other runs keep replacing it); try again")

    def release(self) -> None:
        """Remove the lock file and drop the lock (and remove the folders made for it, if empty)."""
        if self._fd is not None:
            try:
                if self._same_file(self._fd):
                    self.path.unlink()
            except OSError:
                pass
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None
            _HELD.discard(self)
        self._remove_created()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int | None:
        """A descriptor of the lock file, created with its folder if needed; None where it cannot be
        created (an unwritable or missing place: the run's own checks name it)."""
        try:
            missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                    self._created.append(folder)
                except FileExistsError:
                    pass
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            self._remove_created()
            return None

    def _same_file(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def _write_holder(self) -> None:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = shlex.join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
        text = f"pid {os.getpid()} on {socket.gethostname()}, started {started} ({command})\n"
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)
        except OSError:
            pass  # the lock holds without the details; a refused run then says so

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            try:
                folder.rmdir()   # only if still empty: a run folder or another run's lock keeps it
            except OSError:
                break
        self._created = []
