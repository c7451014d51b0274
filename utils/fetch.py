"""Getting a dataset's zip archives into place: resumable downloads, free-space checks, zip checks,
unpacking that is either complete or redone, and byte progress bars.

An archive (`Archive`) owns folders of the data root: the members under each of its prefixes land in
one target folder (`train2017/x.jpg` of train2017.zip -> `images/train2017/x.jpg`); members under no
prefix (a README, a licence) are not unpacked. What each step leaves on disk:

- download: bytes go to `<archive>.part`; an interrupted download goes on from its size with an HTTP
  Range request, and the file takes its final name only when it holds every byte the server announced.
- unpack: members go to a staging folder `<root>/.unpack-<archive>` (same disk, so the moves are
  renames), every member's CRC is checked as it is read, then the staging folders are renamed onto the
  targets and a marker `<root>/.prepared/<archive>.json` records the files of each target. A staging
  folder found later is an interrupted unpack: it is removed and the archive unpacked again. A
  `<archive>.moving` journal covers the renames themselves.
- a re-run: an archive whose marker matches the file counts of its targets is complete and skipped,
  without reading or downloading it.
"""
import http.client
import json
import logging
import re
import shutil
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from utils.errors import UserError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PLAIN_PROGRESS_S = 30.0  # at most one progress line per this many seconds when stderr is a file (nohup)
MARKER_DIR = ".prepared"
STAGING_PREFIX = ".unpack-"


class FetchError(UserError):
    """A download, an archive or the disk space stops the preparation; one line naming it and the fix."""


@dataclass(frozen=True)
class Archive:
    """One zip archive of a dataset: its file name, where to download it from (None: the user brings
    it) and the folders it fills, as (member prefix, target folder relative to the root)."""

    name: str
    url: str | None
    folders: tuple[tuple[str, str], ...]
    where_to_get: str = ""          # said when the archive is missing and cannot be downloaded

    def target(self, member: str) -> str | None:
        """Relative path under the root that `member` unpacks to; None for members outside the folders."""
        for prefix, folder in self.folders:
            if member.startswith(prefix) and len(member) > len(prefix):
                return f"{folder}/{member[len(prefix):]}"
        return None


@dataclass(frozen=True)
class FetchSettings:
    """Where the data root and the archives are, and how downloads behave."""

    root: Path
    archive_dir: Path                  # downloads land here
    from_dir: Path | None = None    # archives the user already has (read in place)
    base_url: str | None = None     # a mirror holding every archive under its file name
    retries: int = 5                   # a dropped connection is resumed this many times
    retry_wait_s: float = 5.0
    free_bytes: int | None = None   # act as if only this much disk were free (tests the checks)
    delete_archives: bool = False      # remove an archive once it is unpacked and checked


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class ByteProgress:
    """Bytes done, rate and time left: a tqdm bar on a terminal; in a file (nohup, a scheduler's log)
    plain lines at most every PLAIN_PROGRESS_S seconds and one at the end, as training writes them."""

    def __init__(self, desc: str, total: int | None, done: int = 0, interval_s: float = PLAIN_PROGRESS_S):
        self.desc, self.total, self.done, self.interval_s = desc, total, done, interval_s
        self.started = self.last = time.perf_counter()
        self.new = 0  # bytes of this session, for the rate
        self.bar = (tqdm(total=total, initial=done, desc=desc, unit="B", unit_scale=True, dynamic_ncols=True,
                         leave=False) if sys.stderr.isatty() else None)

    def update(self, n: int) -> None:
        self.done += n
        self.new += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= self.interval_s:
            self.last = now
            rate = self.new / (now - self.started)
            of = f" of {human_bytes(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
            left = f", {(self.total - self.done) / rate:.0f} s left" if self.total and rate > 0 else ""
            sys.stderr.write(f"{self.desc}: {human_bytes(self.done)}{of}, {human_bytes(rate)}/s{left}\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        seconds = time.perf_counter() - self.started
        of = f" of {human_bytes(self.total)}" if self.total else ""
        sys.stderr.write(f"{self.desc}: {human_bytes(self.done)}{of} on disk; "
                         f"{human_bytes(self.new)} in {seconds:.1f} s\n")
        sys.stderr.flush()


def free_space(path: Path, settings: FetchSettings) -> int:
    """Free bytes on the disk that holds `path` (its nearest existing folder)."""
    existing = Path(path).resolve()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    return free if settings.free_bytes is None else min(free, settings.free_bytes)


def require_space(path: Path, need: int, step: str, settings: FetchSettings) -> None:
    free = free_space(path, settings)
    log.info("%s needs %s on the disk of %s (%s free)", step, human_bytes(need), path, human_bytes(free))
    if need > free:
        raise FetchError(f"not enough disk space to {step}: it needs {human_bytes(need)}, {path} has "
                         f"{human_bytes(free)} free; free some space or choose another --root / --archive_dir")


# ---------------------------------------------------------------------------------------------- download

def _total_size(response, have: int) -> int | None:
    """The whole file's size from a 206's Content-Range or a 200's Content-Length (None: not said)."""
    if response.status == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def download(url: str, dest: Path, settings: FetchSettings) -> Path:
    """Download `url` to `dest`, going on from `dest.part` if an earlier download stopped; a dropped
    connection is resumed up to settings.retries times. Returns dest."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        request = Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        total = None
        try:
            with urlopen(request, timeout=60) as response:
                if have and response.status != 206:
                    log.warning("%s: the server does not resume downloads; starting %s again", url, dest.name)
                    have = 0
                total = _total_size(response, have)
                if have:
                    log.info("%s: going on from %s of %s", dest.name, human_bytes(have),
                             human_bytes(total) if total else "?")
                if total is not None:
                    require_space(dest.parent, total - have, f"download {dest.name}", settings)
                progress = ByteProgress(f"download {dest.name}", total, have)
                try:
                    with open(part, "ab" if have else "wb") as out:
                        while True:
                            chunk = response.read1(CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            out.flush()  # what arrived is on disk when the process is killed
                            progress.update(len(chunk))
                finally:
                    progress.close()
            size = part.stat().st_size
            if total is not None and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            part.rename(dest)
            return dest
        except HTTPError as exc:
            if exc.code == 416 and have:  # the range starts at or past the end: the .part is not this file
                log.warning("%s: %s does not fit the file on the server; downloading it again", url, part.name)
                part.unlink()
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check the address (--base_url) "
                             f"or put {dest.name} in a folder given with --from") from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            failures += 1
            size = part.stat().st_size if part.exists() else 0
            stopped = f"stopped at {human_bytes(size)}" + (f" of {human_bytes(total)}" if total else "")
            if failures > settings.retries:
                raise FetchError(f"download of {url} {stopped} ({_reason(exc)}); run the same command again "
                                 f"to go on from there ({part})") from None
            log.warning("download of %s %s (%s); resuming (try %d of %d)", dest.name, stopped, _reason(exc),
                        failures, settings.retries)
            time.sleep(settings.retry_wait_s)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed the connection early"
    if isinstance(exc, URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def locate(archive: Archive, settings: FetchSettings) -> Path:
    """The archive's file: in --from, else already downloaded, else downloaded now."""
    if settings.from_dir is not None and (settings.from_dir / archive.name).is_file():
        return settings.from_dir / archive.name
    if (settings.archive_dir / archive.name).is_file():
        return settings.archive_dir / archive.name
    if archive.url is None:
        where = settings.from_dir if settings.from_dir is not None else settings.archive_dir
        raise FetchError(f"{archive.name} not found in {where}; {archive.where_to_get}")
    base = settings.base_url.rstrip("/") + "/" if settings.base_url else archive.url.rsplit("/", 1)[0] + "/"
    return download(base + archive.name, settings.archive_dir / archive.name, settings)


# ------------------------------------------------------------------------------------------------ unpack

def _marker(archive: Archive, root: Path) -> Path:
    return root / MARKER_DIR / f"{archive.name}.json"


def _journal(archive: Archive, root: Path) -> Path:
    return root / MARKER_DIR / f"{archive.name}.moving"


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else -1


def is_unpacked(archive: Archive, root: Path) -> bool:
    """The marker is there and every target folder holds the number of files it records."""
    marker = _marker(archive, root)
    if not marker.is_file():
        return False
    try:
        counts = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return False
    return all(_count_files(root / folder) == counts.get(folder) for _, folder in archive.folders)


def _members(archive: Archive, zf: zipfile.ZipFile, path: Path) -> list[tuple[zipfile.ZipInfo, str]]:
    """(member, relative target) of every file the archive unpacks; a path leaving the root is refused."""
    out = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        target = archive.target(info.filename)
        if target is None:
            continue
        parts = PurePosixPath(target).parts
        if PurePosixPath(info.filename).is_absolute() or ".." in parts:
            raise FetchError(f"{path}: member {info.filename!r} would unpack outside the data root; "
                             "this is not the official archive, replace it")
        out.append((info, target))
    if not out:
        raise FetchError(f"{path} holds nothing under {', '.join(p for p, _ in archive.folders)}; "
                         f"it is not {archive.name} as published, replace it")
    return out


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, progress: ByteProgress) -> None:
    """Copy one member to dest; zipfile checks its CRC-32 when the last byte is read."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(dest, "wb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            out.write(chunk)
            progress.update(len(chunk))


def _corrupt(archive: Archive, path: Path, settings: FetchSettings, why: str) -> FetchError:
    theirs = archive.url is None or (settings.from_dir is not None and path.parent == settings.from_dir)
    fix = ("delete it and run the same command again to download it anew" if not theirs
           else "replace it with a complete copy and run the same command again")
    return FetchError(f"archive {path} is damaged ({why}); nothing of it was unpacked; {fix}")


def _clear_interrupted(archive: Archive, root: Path) -> None:
    """Remove what an interrupted unpack of `archive` left: its staging folder, and the targets a
    rename journal names."""
    staging = root / f"{STAGING_PREFIX}{archive.name}"
    if staging.exists():
        log.warning("%s: an interrupted unpack was found (%s); unpacking it again", archive.name, staging)
        shutil.rmtree(staging)
    journal = _journal(archive, root)
    if journal.exists():
        log.warning("%s: an unpack was interrupted while moving its folders; unpacking it again", archive.name)
        for _, folder in archive.folders:
            if (root / folder).exists():
                shutil.rmtree(root / folder)
        journal.unlink()


def _existing_matches(archive: Archive, root: Path, members: list[tuple[zipfile.ZipInfo, str]]) -> bool:
    """Targets already on disk (laid out by hand): True if they hold every member at its size; a
    target folder holding something else stops with one line."""
    present = [folder for _, folder in archive.folders if (root / folder).exists()]
    if not present:
        return False
    missing = [target for info, target in members
               if not (root / target).is_file() or (root / target).stat().st_size != info.file_size]
    if missing:
        raise FetchError(f"{root / present[0]} already exists but lacks {len(missing)} of the {len(members)} "
                         f"files {archive.name} holds (e.g. {root / missing[0]}); move it away and run again")
    return True


def _write_marker(archive: Archive, root: Path, path: Path) -> None:
    counts = {folder: _count_files(root / folder) for _, folder in archive.folders}
    marker = _marker(archive, root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"archive": archive.name, "bytes": path.stat().st_size, "files": counts}, indent=1))
    tmp.rename(marker)


def unpack(archive: Archive, path: Path, settings: FetchSettings) -> dict[str, int]:
    """Unpack `path` into its target folders under the root, all or nothing; returns the files per folder."""
    root = settings.root
    _clear_interrupted(archive, root)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _corrupt(archive, path, settings, str(exc)) from None
    with zf:
        members = _members(archive, zf, path)
        if _existing_matches(archive, root, members):
            log.info("%s: its folders are already in place (every file at its size); recorded as unpacked",
                     archive.name)
            _write_marker(archive, root, path)
            return json.loads(_marker(archive, root).read_text())["files"]
        need = sum(info.file_size for info, _ in members)
        require_space(root, need, f"unpack {archive.name}", settings)
        staging = root / f"{STAGING_PREFIX}{archive.name}"
        progress = ByteProgress(f"unpack {archive.name}", need)
        try:
            for info, target in members:
                _extract_member(zf, info, staging / target, progress)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _corrupt(archive, path, settings, str(exc)) from None
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise FetchError(f"unpacking {path} into {staging} failed ({exc}); fix that and run again") from None
        finally:
            progress.close()
    journal = _journal(archive, root)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(archive.name)
    for _, folder in archive.folders:
        (root / folder).parent.mkdir(parents=True, exist_ok=True)
        (staging / folder).rename(root / folder)
    shutil.rmtree(staging)
    _write_marker(archive, root, path)
    journal.unlink()
    return json.loads(_marker(archive, root).read_text())["files"]


def prepare_archives(archives: tuple[Archive, ...], settings: FetchSettings
                     ) -> Iterator[tuple[Archive, dict[str, int]]]:
    """For each archive in turn: skip it if unpacked, else find or download it, unpack it (and delete
    it with settings.delete_archives); yields (archive, files per target folder)."""
    for archive in archives:
        if is_unpacked(archive, settings.root):
            counts = json.loads(_marker(archive, settings.root).read_text())["files"]
            log.info("%s: already unpacked (%s), skipped", archive.name,
                     ", ".join(f"{folder} {n} files" for folder, n in counts.items()))
            yield archive, counts
            continue
        path = locate(archive, settings)
        counts = unpack(archive, path, settings)
        log.info("%s: unpacked (%s)", archive.name, ", ".join(f"{folder} {n} files" for folder, n in counts.items()))
        if settings.delete_archives and path.parent == settings.archive_dir:
            path.unlink()
        yield archive, counts
