"""The image files predict.py is given (files, folders searched recursively, .txt lists) and the
names of its outputs: one per distinct file, below the --output folder, never two alike.

Outputs are named after the input: for an image given directly or listed in a .txt file its
stem, for an image found in a folder its path below that folder (so a/x.jpg and b/x.jpg of one
folder give a/x.png and b/x.png). Names that would still collide (x.jpg and x.png, or two x.jpg
given from different folders) get "-" and 8 hex digits of a hash of the image's absolute path.
Existing outputs are never replaced without --overwrite: the run stops before writing anything
and names the first one.
"""
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError
from utils.files import remove_stale_temp_files

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
RUN_FILES = ("legend.png", "predict.json")   # per run, beside the per-image outputs
OVERLAY_SUFFIX = "_overlay.jpg"
log = logging.getLogger("picie")


class PredictError(UserError):
    """Bad --input / --output / --matching for predict.py; the message names the path or flag."""



@dataclass(frozen=True)
class InputImage:
    """An image to segment and its output name (posix path below the output folder, no suffix)."""

    path: Path
    name: str



# -- inputs and output names ----------------------------------------------------------------------
def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(paths: Sequence[str], exclude: Path | None = None) -> tuple[list[InputImage], int]:
    """The images of --input (files, folders searched recursively, .txt lists) with unique output
    names, and the number of files in folders skipped for not having an image suffix. A path
    given on the command line that does not exist is an error; a listed one that does not exist
    is kept, to be reported as unreadable with the rest. `exclude`: the --output folder, whose
    files (predict.py's own outputs) a searched folder holding it does not yield (own_outputs)."""
    entries: list[tuple[Path, str]] = []   # (image path, wanted name)
    ignored = 0
    for text in paths:
        path = Path(text)
        if path.is_dir():
            skip = own_outputs(path, exclude) if exclude is not None else (lambda file: False)
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if skip(file):
                    continue
                if _is_image_name(file):
                    entries.append((file, file.relative_to(path).with_suffix("").as_posix()))
                else:
                    ignored += 1
        elif path.is_file() and path.suffix.lower() == ".txt":
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    listed = Path(line) if Path(line).is_absolute() else path.parent / line
                    entries.append((listed, listed.stem))
        elif path.is_file():
            entries.append((path, path.stem))
        else:
            raise PredictError(f"--input {text}: no such file or folder; pass image files, folders or .txt lists")
    return unique_names(entries), ignored


def own_outputs(folder: Path, out_dir: Path) -> Callable[[Path], bool]:
    """file -> whether it is one of predict.py's outputs, for a searched --input `folder` and the
    --output `out_dir`: every file below out_dir when it lies inside the folder; when it is the
    folder itself, the run files, the overlays and the maps listed in its predict.json. Said in
    one line when a file is skipped, so that a second run never segments its own maps."""
    folder, out_dir = folder.resolve(), Path(out_dir).resolve()
    if out_dir != folder and folder not in out_dir.parents:
        return lambda file: False
    listed = set(RUN_FILES)
    if out_dir == folder and (out_dir / "predict.json").is_file():
        try:
            record = json.loads((out_dir / "predict.json").read_text())
            listed |= {entry.get(key) for entry in record.get("images", []) for key in ("map", "overlay")}
        except (ValueError, AttributeError, TypeError):
            pass  # an unreadable predict.json lists nothing more
    skipped: list[Path] = []

    def skip(file: Path) -> bool:
        below = file.resolve().relative_to(folder) if out_dir == folder else None
        own = (out_dir in file.resolve().parents) if below is None else (
            below.as_posix() in listed or file.name.endswith(OVERLAY_SUFFIX))
        if own:
            if not skipped:
                log.info("--output %s is inside --input %s: its files (predict.py's own outputs) are not segmented",
                         out_dir, folder)
            skipped.append(file)
        return own

    return skip


def unique_names(entries: Sequence[tuple[Path, str]]) -> list[InputImage]:
    """One InputImage per distinct file (a file given twice is segmented once). A wanted name
    shared by several files (compared without case, for case-insensitive file systems) or equal
    to a run file's stem gets "-<8 hex digits of the path's hash>", so no output overwrites another."""
    seen, kept = set(), []
    for path, name in entries:
        key = str(path.resolve())
        if key not in seen:
            seen.add(key)
            kept.append((path, name))
    counts: dict[str, int] = {}
    for _, name in kept:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    reserved = {Path(f).stem for f in RUN_FILES}
    out = []
    for path, name in kept:
        if counts[name.lower()] > 1 or name.lower() in reserved:
            name = f"{name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        out.append(InputImage(path, name))
    return out


def output_files(image: InputImage, out_dir: Path, overlay: bool) -> list[Path]:
    """The files predict.py writes for one image: <name>.png and, with overlays, <name>_overlay.jpg."""
    files = [out_dir / f"{image.name}.png"]
    if overlay:
        files.append(out_dir / f"{image.name}{OVERLAY_SUFFIX}")
    return files


def check_output_folder(out_dir: Path) -> None:
    """--output must be a folder (or a path where one can be made): an existing file is named as one."""
    for path in (out_dir, *out_dir.parents):
        if path.exists():
            if not path.is_dir():
                where = f"--output {out_dir}" if path == out_dir else f"--output {out_dir} cannot be written: {path}"
                raise PredictError(f"{where} is a file, not a folder; choose a folder for the maps (it is created "
                                   "if missing)")
            return


def prepare_output(out_dir: Path, images: Sequence[InputImage], overwrite: bool, overlay: bool) -> None:
    """Create --output and check that it can be written and that no output exists (unless --overwrite)."""
    check_output_folder(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".predict_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PredictError(f"--output {out_dir} cannot be written ({exc.strerror or exc}); "
                           "choose a folder you can write to") from None
    remove_stale_temp_files(out_dir, recursive=True)  # one run at a time writes here (utils/hold.py)
    if overwrite:
        return
    planned = [out_dir / f for f in RUN_FILES] + [f for image in images for f in output_files(image, out_dir, overlay)]
    existing = [path for path in planned if path.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise PredictError(f"{existing[0]} exists{more}; nothing was written: pass --overwrite to replace them, "
                           "or choose another --output")
