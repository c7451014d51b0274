"""How long tools/get_coco.py takes on this machine, the network left out: it writes synthetic archives in
the published layout (N train + M val "images" of random bytes, their label maps), serves them from
127.0.0.1 with the standard library's HTTP server, and times a fresh preparation (download, unpack,
checks) and a second run (checks only). What it measures is the tool's own cost per byte and per file
(loopback download, CRC-checked unpacking, counting), not a download from the official servers.

    python -m benchmarks.bench_get_coco --n_train 2000 --n_val 200 --image_kb 100 --work /tmp/bench_get_coco
"""
import argparse
import functools
import http.server
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

from data.cocostuff import CURATED_NAME
from tools import get_coco
from utils.fetch import human_bytes


def write_archives(folder: Path, n_images: dict, image_kb: int) -> int:
    """The three archives and a curated/ folder listing every id; returns the archives' bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = {split: [f"{i:012d}" for i in range(start, start + n)]
           for (split, n), start in zip(n_images.items(), (1, 10 ** 9), strict=True)}
    with zipfile.ZipFile(folder / "stuffthingmaps_trainval2017.zip", "w", zipfile.ZIP_STORED) as maps:
        for split, split_ids in ids.items():
            with zipfile.ZipFile(folder / f"{split}.zip", "w", zipfile.ZIP_STORED) as images:
                for image_id in split_ids:
                    images.writestr(f"{split}/{image_id}.jpg", os.urandom(image_kb * 1000))
                    maps.writestr(f"{split}/{image_id}.png", os.urandom(image_kb * 100))
            (folder / "curated" / split).mkdir(parents=True, exist_ok=True)
            (folder / "curated" / split / CURATED_NAME).write_text("".join(f"{i}\n" for i in split_ids))
    return sum(p.stat().st_size for p in folder.glob("*.zip"))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_train", type=int, default=2000, help="train2017 images (default: %(default)s)")
    parser.add_argument("--n_val", type=int, default=200, help="val2017 images (default: %(default)s)")
    parser.add_argument("--image_kb", type=int, default=100,
                        help="kB per image; label maps a tenth (default: %(default)s)")
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (emptied first, removed after)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    served, root = args.work / "served", args.work / "coco"
    archive_bytes = write_archives(served, {"train2017": args.n_train, "val2017": args.n_val}, args.image_kb)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    flags = ["--root", str(root), "--curated", str(served / "curated"), "--base_url",
             f"http://127.0.0.1:{server.server_address[1]}/", "--expect_counts", f"train2017={args.n_train}",
             f"val2017={args.n_val}"]
    try:
        seconds = {}
        for run in ("fresh", "second"):
            started = time.perf_counter()
            assert get_coco.main(flags) == 0
            seconds[run] = time.perf_counter() - started
    finally:
        server.shutdown()
        shutil.rmtree(args.work, ignore_errors=True)
    files = 2 * (args.n_train + args.n_val)
    print(f"archives {human_bytes(archive_bytes)}, {files} files: fresh preparation {seconds['fresh']:.1f} s "
          f"({human_bytes(archive_bytes / seconds['fresh'])}/s of archive), second run {seconds['second']:.2f} s")
    return {"archive_bytes": archive_bytes, "files": files, **{f"{k}_s": v for k, v in seconds.items()}}


if __name__ == "__main__":
    main()
