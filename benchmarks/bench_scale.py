"""How the cost grows with the dataset: a rehearsal at COCO-Stuff's file counts on one machine.

    python -m benchmarks.bench_scale                       # n = 1000, 10000, 49629 curated train images
    python -m benchmarks.bench_scale --sizes 200 2000 --total_train 5000 --total_val 500   # a quick look

It writes, under a temporary folder that it removes at the end, a COCO-Stuff tree with the real
dataset's file counts (118,287 train and 5,000 val image/label-map pairs, small images so that it
fits on a laptop's disk) whose curated lists hold the official ids (curated/ of this repository,
49,629 / 2,175) or, where they are not there, lists of the same length. For each n it lists the
first n curated train ids (and val ids in the same proportion, all 2,175 at full size) and runs
train_picie.py's own main() in a child process at the smallest resolution that keeps the paper's
code paths (--res 32 --res1 32 --res2 64: an 8x8 feature grid; the paper's batch sizes,
--num_init_batches, k-means and transforms), with a bounded number of training steps:

    setup       the data source: listing the folders, checking every curated file is there
    checks      the checks of every evaluation label map and every training image's header
    untrained   the untrained rows (--eval_init: fresh k-means on the train images, scored on val; the
                BatchNorm calibration and the same again)
    labels      the pseudo-label arrays of both views
    cluster     one epoch's clustering and labelling pass over both views
    train       --train_steps training steps (not the whole epoch: the network's rate is measured
                elsewhere, benchmarks/bench_epoch.py)
    eval        scoring both views' classifiers on val
    checkpoint  writing checkpoint.pth
    final       the final protocol: fresh k-means on the train images, scored on val
    restart     a second process: --restart from that checkpoint up to the start of the next epoch

Per step it prints seconds, peak resident memory (the process's own, reset at each step's start),
bytes written (the write calls' bytes, /proc/self/io wchar) and, between sizes, the growth exponent a of
time ~ n^a. Run it on an idle machine; everything runs in one process per size (--num_workers 0), so the
memory is all counted.
docs/measurements.md ("A rehearsal at COCO-Stuff's size") holds its output and the arithmetic.
"""
import argparse
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.bench_epoch import _reset_peak_rss, _status_mb  # one reader of the peak memory
from utils.files import write_text
from utils.runtime import script_main

REPO = Path(__file__).resolve().parents[1]
CURATED_NAME = "Coco164kFull_Stuff_Coarse_7.txt"
#: COCO 2017's image counts and the official curated lists' lengths (IIC, version 7).
COCO_TRAIN, COCO_VAL, CURATED_TRAIN, CURATED_VAL = 118_287, 5_000, 49_629, 2_175
STEPS = ("setup", "checks", "untrained", "labels", "cluster", "train", "eval", "checkpoint", "final", "restart")
#: The flags of every size's run: the paper's (--preset paper) at an 8x8 feature grid, CPU, float32, on
#: the narrow ResNet-18 (the same code paths; what the network costs per image is measured elsewhere, and
#: at ResNet-18's width the network would take hours of the rehearsal's time on a 2-core machine).
RUN_FLAGS = ["--preset", "paper", "--no-pretrain", "--res", "32", "--res1", "32", "--res2", "64",
             "--device", "cpu", "--precision", "fp32", "--num_workers", "0", "--eval_init", "--num_epoch", "1",
             "--seed", "1", "--arch", "resnet18_tiny"]


# --- the tree ---------------------------------------------------------------------------------------

def official_ids(split: str, n: int) -> list[str]:
    """The curated ids of `split` from this repository's curated/ when it holds the official list
    (n ids), else n made-up 12-digit ids."""
    path = REPO / "curated" / split / CURATED_NAME
    ids = path.read_text().split() if path.is_file() else []
    return ids if len(ids) == n else [f"{900_000_000_000 + i:012d}" for i in range(n)]


def _variants(n_variants: int, size: tuple, seed: int = 0) -> list[tuple]:
    """(JPEG bytes, PNG bytes) of `n_variants` small images and stuffthingmaps: blocks of colour with
    fine-class labels (stuff 91..181 and things 0..90, a few 255), so k-means has something to find."""
    rng = np.random.default_rng(seed)
    out = []
    width, height = size
    for _ in range(n_variants):
        cells = rng.integers(0, 182, size=(4, 4))
        label = np.kron(cells, np.ones((height // 4, width // 4), dtype=np.int64)).astype(np.uint8)
        label[rng.random(label.shape) < 0.02] = 255
        colours = rng.integers(0, 256, size=(182, 3))
        image = (colours[label.clip(0, 181)] + rng.normal(0, 12, size=(height, width, 3))).clip(0, 255)
        jpeg, png = io.BytesIO(), io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(jpeg, format="JPEG", quality=85)
        Image.fromarray(label).save(png, format="PNG")
        out.append((jpeg.getvalue(), png.getvalue()))
    return out


def write_tree(root: Path, total_train: int, total_val: int, image_size=(80, 64)) -> dict[str, list[str]]:
    """images/ and annotations/ with COCO's file counts under `root`; returns {split: curated ids}.
    Each file is one of 256 small variants, so writing 246,574 files takes a minute, not an hour."""
    variants = _variants(256, image_size)
    curated = {"train2017": official_ids("train2017", min(CURATED_TRAIN, total_train)),
               "val2017": official_ids("val2017", min(CURATED_VAL, total_val))}
    for split, total in (("train2017", total_train), ("val2017", total_val)):
        ids = list(curated[split])
        taken, filler = set(ids), 0
        while len(ids) < total:  # the folder's other images: ids that no curated list names
            candidate = f"{800_000_000_000 + filler:012d}"
            filler += 1
            if candidate not in taken:
                ids.append(candidate)
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for index, image_id in enumerate(ids):
            jpeg, png = variants[index % len(variants)]
            (root / "images" / split / f"{image_id}.jpg").write_bytes(jpeg)
            (root / "annotations" / split / f"{image_id}.png").write_bytes(png)
    return curated


def root_of_size(tree: Path, curated: dict[str, list[str]], n_train: int, n_val: int, out: Path) -> Path:
    """A data root reading the whole tree's folders (links) with curated lists of the first ids."""
    out.mkdir(parents=True)
    for sub in ("images", "annotations"):
        (out / sub).symlink_to(tree / sub)
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        (out / "curated" / split).mkdir(parents=True)
        (out / "curated" / split / CURATED_NAME).write_text("\n".join(curated[split][:n]) + "\n")
    return out


# --- one size, in a child process -------------------------------------------------------------------

def _written_bytes() -> int | None:
    """Bytes this process has passed to write calls (/proc/self/io wchar); None off Linux."""
    try:
        with open("/proc/self/io") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("wchar:"))
    except (OSError, StopIteration):
        return None


class StepMeter:
    """Seconds, CPU seconds, peak resident memory and bytes written of each named step of this
    process (Linux: /proc/self/status VmHWM reset through /proc/self/clear_refs; /proc/self/io)."""

    def __init__(self):
        self.steps: dict[str, dict[str, float]] = {}

    def wrap(self, name: str, function: Callable) -> Callable:
        def measured(*args, **kwargs):
            _reset_peak_rss()
            written, started, cpu = _written_bytes(), time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                step = self.steps.setdefault(name, {"s": 0.0, "cpu_s": 0.0, "peak_mb": 0.0, "written_mb": 0.0})
                step["s"] += time.perf_counter() - started
                step["cpu_s"] += time.process_time() - cpu
                step["peak_mb"] = max(step["peak_mb"], _status_mb("VmHWM") or 0.0)
                after = _written_bytes()
                if written is not None and after is not None:
                    step["written_mb"] += (after - written) / 2 ** 20
        return measured


class _Resumed(Exception):
    """Raised when a --restart reaches its next epoch: what the restart costs has been measured."""


def measure_one(argv: Sequence[str], train_steps: int, restart: bool) -> dict:
    """Run train_picie.main with `argv`, every step measured; with `restart`, stop when the next
    epoch's clustering begins."""
    import train_picie
    from config import get_args_parser, parse_args, resolve_restart, settings_from_args

    meter, trained = StepMeter(), {}
    if restart:
        def reached(*args, **kwargs):
            raise _Resumed()
        train_picie.cluster_and_label = reached
        train_picie.build_or_resume = meter.wrap("restart", train_picie.build_or_resume)
        train_picie.load_data = meter.wrap("restart_data", train_picie.load_data)
    else:
        original_epoch = train_picie.train_one_epoch

        def bounded_epoch(training, epoch, clusters, should_stop=lambda: False):
            steps = iter(range(train_steps - 1))
            averages = original_epoch(training, epoch, clusters, should_stop=lambda: next(steps, None) is None)
            trained["steps"] = averages["n_steps"]
            return averages

        # load_data builds the data source, then checks every label map and image: two steps.
        train_picie.build_source = meter.wrap("setup", train_picie.build_source)
        train_picie.load_data = meter.wrap("checks", train_picie.load_data)
        for name, attribute in (("untrained", "prepare_untrained"), ("labels", "allocate_labels"),
                                ("cluster", "cluster_and_label"), ("eval", "score_epoch"),
                                ("checkpoint", "save_checkpoint"), ("final", "final_evaluation")):
            setattr(train_picie, attribute, meter.wrap(name, getattr(train_picie, attribute)))
        train_picie.train_one_epoch = meter.wrap("train", bounded_epoch)
    args = resolve_restart(parse_args(get_args_parser(), list(argv)), list(argv), logging.getLogger("picie"))
    started = time.perf_counter()
    try:
        train_picie.main(settings_from_args(args))
    except _Resumed:
        pass
    steps = meter.steps
    if "checks" in steps and "setup" in steps:  # the checks step holds the setup step: take it out
        steps["checks"]["s"] -= steps["setup"]["s"]
        steps["checks"]["cpu_s"] -= steps["setup"]["cpu_s"]
        steps["checks"]["written_mb"] -= steps["setup"]["written_mb"]
    if restart:  # loading the data and the checkpoint again: one step
        data, resumed = steps.pop("restart_data"), steps["restart"]
        steps["restart"] = {key: max(data[key], resumed[key]) if key == "peak_mb" else data[key] + resumed[key]
                            for key in data}
    if trained:
        steps["train"]["n_steps"] = trained["steps"]
    return {"steps": steps, "whole_s": time.perf_counter() - started,
            "peak_mb": _status_mb("VmHWM") or 0.0}


def run_size(root: Path, save_root: Path, train_steps: int, extra: Sequence[str]) -> dict:
    """Both child processes of one size: the run, then its --restart."""
    argv = [*RUN_FLAGS, "--data_root", str(root), "--save_root", str(save_root), "--run_name", "run", *extra]
    result = {}
    for restart in (False, True):
        flags = argv + (["--restart", "--num_epoch", "2"] if restart else [])
        command = [sys.executable, "-m", "benchmarks.bench_scale", "--_child", json.dumps(flags),
                   "--train_steps", str(train_steps)] + (["--_restart"] if restart else [])
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            log = save_root / f"child_{'restart' if restart else 'run'}.log"
            log.write_text(done.stdout + done.stderr)
            raise SystemExit(f"error: the run at {root} failed (exit {done.returncode}); its output: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        result["steps"] = {**result.get("steps", {}), **child["steps"]}
        result["restart_peak_mb" if restart else "run_peak_mb"] = child["peak_mb"]
    run = save_root / "run"
    result["files_mb"] = {p.name: round(p.stat().st_size / 2 ** 20, 2) for p in sorted(run.iterdir()) if p.is_file()}
    return result


# --- the report ---------------------------------------------------------------------------------------

def exponent(t_small: float, t_large: float, n_small: int, n_large: int) -> float | None:
    """a of time ~ n^a between two sizes (None when a time is too short to say: under 0.05 s)."""
    if min(t_small, t_large) < 0.05:
        return None
    return math.log(t_large / t_small) / math.log(n_large / n_small)


def report(results: dict[int, dict], header: str) -> str:
    """The table: per step and size wall s, CPU s, peak RSS MB, MB written; the growth exponent of
    the CPU time between neighbouring sizes (less disturbed by other processes than the wall time;
    the training step's per step, since its steps are bounded)."""
    sizes = sorted(results)
    lines = [header, "", f"{'step':<11}" + "".join(f"{f'n={n}: s / CPU s / peak MB / written MB':>44}" for n in sizes)
             + "".join(f"{f'a {a}->{b}':>14}" for a, b in pairwise(sizes))]
    for step in STEPS:
        row = f"{step:<11}"
        for n in sizes:
            m = results[n]["steps"].get(step)
            row += (f"{m['s']:>14.2f}{m['cpu_s']:>10.2f}{m['peak_mb']:>10.0f}{m['written_mb']:>10.1f}" if m
                    else f"{'-':>44}")
        for a, b in pairwise(sizes):
            ma, mb = results[a]["steps"].get(step), results[b]["steps"].get(step)
            growth = None
            if ma and mb:
                per = ((lambda m: m["cpu_s"] / max(m.get("n_steps", 1), 1)) if step == "train"
                       else (lambda m: m["cpu_s"]))
                growth = exponent(per(ma), per(mb), a, b)
            row += f"{growth:>14.2f}" if growth is not None else f"{'-':>14}"
        lines.append(row)
    lines.append("")
    for n in sizes:
        r = results[n]
        lines.append(f"n={n}: {r['n_val']} val images, {r['steps']['train'].get('n_steps')} training steps; peak RSS "
                     f"of the run {r['run_peak_mb']:.0f} MB, of the restart {r['restart_peak_mb']:.0f} MB; run folder: "
                     + ", ".join(f"{k} {v} MB" for k, v in r["files_mb"].items()))
    lines.append("a: growth exponent of the CPU time, time ~ n^a (train: per step); '-': under 0.05 s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser("bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, CURATED_TRAIN],
                        help="numbers of curated train images to run at (at most --total_train)")
    parser.add_argument("--total_train", type=int, default=COCO_TRAIN, help="train2017 images in the tree")
    parser.add_argument("--total_val", type=int, default=COCO_VAL, help="val2017 images in the tree")
    parser.add_argument("--train_steps", type=int, default=20, help="training steps of the one epoch")
    parser.add_argument("--work_dir", type=str, default=None,
                        help="where the temporary tree goes (default: the system's temporary folder)")
    parser.add_argument("--out", type=str, default=None, help="also write the report and the JSON here (.txt/.json)")
    parser.add_argument("--extra", type=str, default="", help="more train_picie.py flags, as one string")
    parser.add_argument("--_child", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_restart", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child is not None:
        from utils.runtime import keep_freed_memory  # noqa: PLC0415 - as train_picie.py's start does
        keep_freed_memory()  # the memory figures are then those of a run of train_picie.py
        print(json.dumps(measure_one(json.loads(args._child), args.train_steps, args._restart)))
        return 0
    n_curated_train, n_curated_val = min(CURATED_TRAIN, args.total_train), min(CURATED_VAL, args.total_val)
    bad = [n for n in args.sizes if not 0 < n <= n_curated_train]
    if bad:
        print(f"error: --sizes {bad[0]} is outside 1..{n_curated_train} (the curated train images of the tree); "
              "give smaller sizes or a larger --total_train", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="picie_scale_", dir=args.work_dir))
    try:
        started = time.perf_counter()
        curated = write_tree(work / "tree", args.total_train, args.total_val)
        tree_s = time.perf_counter() - started
        tree_mb = sum(f.stat().st_size for f in (work / "tree").rglob("*") if f.is_file()) / 2 ** 20
        print(f"tree: {args.total_train} + {args.total_val} image/label pairs, {tree_mb:.0f} MB, written in "
              f"{tree_s:.0f} s", flush=True)
        results = {}
        for n in sorted(args.sizes):
            n_val = max(1, round(n_curated_val * n / n_curated_train))
            root = root_of_size(work / "tree", curated, n, n_val, work / f"root_{n}")
            results[n] = dict(run_size(root, work / f"runs_{n}", args.train_steps, args.extra.split()), n_val=n_val)
            print(f"n={n} done ({sum(m['s'] for m in results[n]['steps'].values()):.0f} s): "
                  + json.dumps(results[n]), flush=True)  # a stopped rehearsal keeps what it measured
            shutil.rmtree(work / f"runs_{n}")
        import torch
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        header = (f"bench_scale at commit {commit}: {os.cpu_count()} CPUs, torch {torch.__version__}, "
                  f"{torch.get_num_threads()} threads; tree {args.total_train} + {args.total_val} pairs "
                  f"({tree_mb:.0f} MB, {tree_s:.0f} s to write); flags: {' '.join(RUN_FLAGS)} {args.extra}; "
                  f"{args.train_steps} training steps")
        text = report(results, header)
        print(text)
        if args.out:
            write_text(Path(args.out).with_suffix(".txt"), text + "\n")
            write_text(Path(args.out).with_suffix(".json"),
                       json.dumps({"header": header, "results": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    script_main(main)
