"""Output files written whole or not at all, and checked.

Every file a script or tool of this toolkit writes goes through write_atomic: the bytes go to a
temporary file in the target's folder (".<name>.<random>.tmp", so the rename stays on one file
system and remove_stale_temp_files finds what a killed run left), are flushed and
fsync'ed, the file is checked (its size against the bytes written; an image is decoded again),
and only then renamed over the target. A failure at any point (full disk, a file-size limit, a
lost mount, a file that does not read back) removes the temporary file, leaves whatever the
target held before untouched, and raises WriteError: one line naming the target and the fix.
torch.save reports a failed write as a RuntimeError ("PytorchStreamWriter failed ... file write
failed"), not an OSError; both become the same WriteError.
"""
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from utils.errors import UserError

log = logging.getLogger("picie")
FREE_SPACE_HINT = "it is as it was before: free disk space or choose another folder"


class WriteError(UserError):
    """An output file could not be written whole; the message names it. Whatever the target held
    before is intact and no partial file is left."""


class UnreadableOutput(Exception):
    """A written file does not read back as what was written (raised by the checks)."""


def _write_failure(exc: BaseException) -> BaseException | None:
    """The OSError behind `exc` (itself, or one it was raised while handling), or `exc` when it is
    torch's report of a failed write; None for anything else (a bug keeps its traceback). torch's
    C++ stream writer turns a failed Python write into a RuntimeError ("PytorchStreamWriter failed
    ... file write failed", or "unexpected pos" when it notices later), raised from the OSError."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if isinstance(exc, RuntimeError) and any(marker in text for marker in TORCH_WRITE_FAILURES):
        return exc
    return None


TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "file write failed", "unexpected pos")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.__class__.__name__
    return text if len(text) < 120 else text[:117] + "..."


def new_file_mode() -> int:
    """The mode open() gives a new file: 0666 less the process's umask (read from /proc where it is
    there: os.umask can only read it by setting it, which other threads would see)."""
    try:
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask

def write_atomic(path, write: Callable[[BinaryIO], None], check: Callable[[Path], None] | None = None,
                 hint: str = FREE_SPACE_HINT) -> Path:
    """Write `path` whole or not at all: write(handle) fills a temporary file in the same folder,
    which is flushed, fsync'ed, checked (its size is the number of bytes written; then
    check(temporary path), which raises on a bad file) and renamed over `path`. Any failure
    removes the temporary file and raises WriteError naming `path`, then `hint` (what is kept, what
    to do). Returns `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would hide the file from those who read the others
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            written = handle.tell()
            os.fsync(handle.fileno())
        size = os.path.getsize(tmp)
        if size != written:
            raise OSError(0, f"{size} of {written} bytes reached the disk")
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
        tmp = None
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        cause = None if isinstance(exc, (KeyboardInterrupt, SystemExit, WriteError)) else (
            exc if isinstance(exc, UnreadableOutput) else _write_failure(exc))
        if cause is None:
            raise
        raise WriteError(f"could not write {path} ({_reason(cause)}); {hint}") from None
    try:  # the rename itself survives a power cut only once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the file itself is complete
    return path


def write_bytes(path, data: bytes, hint: str = FREE_SPACE_HINT) -> Path:
    return write_atomic(path, lambda handle: handle.write(data), hint=hint)


def write_text(path, text: str, hint: str = FREE_SPACE_HINT) -> Path:
    """A text file (UTF-8), whole or not at all."""
    return write_bytes(path, text.encode("utf-8"), hint=hint)


def write_json_file(path, value, indent: int | None = 2, hint: str = FREE_SPACE_HINT) -> Path:
    """json.dumps(value) (strict: no NaN) as a file, whole or not at all, checked by parsing it back."""
    text = json.dumps(value, indent=indent, allow_nan=False)

    def check(tmp: Path) -> None:
        try:
            json.loads(tmp.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UnreadableOutput(f"the written JSON does not parse ({exc})") from None

    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")), check, hint)


def save_image(image, path, hint: str = FREE_SPACE_HINT, **params) -> Path:
    """A PIL image saved (format from the suffix of `path`; params as PIL's save takes them), whole
    or not at all, checked by decoding the written file again."""
    from PIL import Image  # noqa: PLC0415 - only the drawing scripts need Pillow here

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise WriteError(f"{path}: no image format for the suffix {path.suffix!r}; name the file .png or .jpg")

    def check(tmp: Path) -> None:
        try:
            with Image.open(tmp) as written:
                written.load()
                size = written.size
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
            raise UnreadableOutput(f"the written image does not decode: {exc.__class__.__name__}") from None
        if size != image.size:
            raise UnreadableOutput(f"the written image is {size}, not {image.size}")

    return write_atomic(path, lambda handle: image.save(handle, format=image_format, **params), check, hint)


def save_figure(fig, path, hint: str = FREE_SPACE_HINT, **params) -> Path:
    """A matplotlib figure saved (format from the suffix), whole or not at all; a PNG is decoded again."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    check = _png_check if fmt == "png" else None
    return write_atomic(path, lambda handle: fig.savefig(handle, format=fmt, **params), check, hint)


def _png_check(tmp: Path) -> None:
    from PIL import Image  # noqa: PLC0415

    try:
        with Image.open(tmp) as written:
            written.load()
    except Exception as exc:  # noqa: BLE001
        raise UnreadableOutput(f"the written image does not decode: {exc.__class__.__name__}") from None


def remove_stale_temp_files(folder, recursive: bool = False) -> list[Path]:
    """Remove the temporary files of writes a killed run left unfinished in `folder` (and below it
    when `recursive`); never complete files: write_atomic only renames a temporary file into place
    once it is complete. Call it only where one run at a time writes (utils/hold.py)."""
    folder = Path(folder)
    pattern = "**/" if recursive else ""
    # "*.json*.tmp": the name older versions gave a JSON file's temporary file
    stale = sorted({p for glob in (".*.tmp", "*.json*.tmp") for p in folder.glob(pattern + glob) if p.is_file()})
    for path in stale:
        path.unlink()
        log.info("removed %s, left by an interrupted write", path)
    return stale
