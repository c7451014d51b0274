"""What a test run costs: wall and CPU time, bytes written to disk, and what it leaves in pytest's
temporary folder. `make test` runs the suite through this, so the cost is printed (and bounded) at
every run; benchmarks/bench_suite.sh uses it to compare the suite at two commits.

    python -m benchmarks.suite_cost [--max_written_mb N] [--max_left_mb N] [--cwd DIR] -- PYTEST_ARGS...

The pytest process and everything it starts (training subprocesses, DataLoader workers) are one
child of this process, so resource.getrusage(RUSAGE_CHILDREN) after it exits holds their summed
CPU time and block output (ru_oublock, in 512-byte blocks: what the kernel charged them for
writing to storage, including files deleted before they reached the disk). "Left" is the growth of
pytest's temporary root (<tmp>/pytest-of-<user>) over the run.

Exit status: pytest's, or 1 when it passed but a --max_* bound was exceeded (one line says which).
"""
import argparse
import getpass
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils.files import write_text


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (0 if it does not exist); links are not followed."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walked: another session's cleanup
                pass
    return total


def pytest_temp_root() -> Path:
    """pytest's default temporary root, as pytest computes it (PYTEST_DEBUG_TEMPROOT or the system's)."""
    base = os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()
    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):
        user = "unknown"
    return Path(base) / f"pytest-of-{user}"


def run_suite(pytest_args, cwd=None) -> dict:
    """Run `python -m pytest PYTEST_ARGS` in a child process; its cost as a dict."""
    temp_root = pytest_temp_root()
    before_left = folder_bytes(temp_root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"exit_code": code, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "written_mb": round((after.ru_oublock - before.ru_oublock) * 512 / 2 ** 20, 1),
            "left_mb": round(max(0, folder_bytes(temp_root) - before_left) / 2 ** 20, 1),
            "temp_root": str(temp_root)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_written_mb", type=float, default=None,
                        help="exit 1 if the run wrote more than this many MB to disk (make test: 1024)")
    parser.add_argument("--max_left_mb", type=float, default=None,
                        help="exit 1 if pytest's temporary folder grew by more than this many MB (make test: 200)")
    parser.add_argument("--cwd", default=None, help="run pytest in this folder (default: the current one)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest, after --")
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    cost = run_suite(pytest_args, cwd=args.cwd)
    print(f"suite cost: {cost['wall_s']:.0f} s wall, {cost['cpu_s']:.0f} s CPU, {cost['written_mb']:.0f} MB "
          f"written to disk, {cost['left_mb']:.0f} MB left in {cost['temp_root']}", flush=True)
    if args.json:
        write_text(Path(args.json), json.dumps(cost, indent=2) + "\n")
    if cost["exit_code"] != 0:
        return cost["exit_code"]
    for key, bound, what in (("written_mb", args.max_written_mb, "wrote"),
                             ("left_mb", args.max_left_mb, "left behind")):
        if bound is not None and cost[key] > bound:
            print(f"error: the test run {what} {cost[key]:.0f} MB, over the bound of {bound:.0f} MB "
                  f"(--max_{key}); find the test with pytest --durations and share or shrink its runs", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
