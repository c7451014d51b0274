"""Time PiCIE epochs phase by phase: k-means (both views, one pass), labelling, training,
evaluation, and the fresh-cluster evaluations; report images/s, peak memory and the metrics.

    python -m benchmarks.bench_epoch --data_root ../shared/data/cocostuff_mini --fullcoco \
        --res 320 --res1 320 --res2 640 --batch_size_cluster 16 --batch_size_train 8 \
        --batch_size_test 16 --num_init_batches 4 --num_batches 1 --kmeans_n_iter 20 \
        --K_train 27 --K_test 27 --augment --jitter --blur --grey --equiv --random_crop --h_flip \
        --num_workers 2 --seed 1 --num_epoch 2 --repeats 3 --bench_json bench.json

Every flag of train_picie.py is accepted (the run goes to a temporary folder unless
--save_root is given). --project_images N projects the measured per-phase rates to an epoch
of N training images (49,629 for COCO-Stuff curated) with labels recomputed (no feature cache).

Memory per phase (Linux): the process's peak resident memory during each phase of an epoch
(k-means, labelling, training, evaluation) and its rise over the resident memory at the phase's
start; the peak is reset at every phase start (/proc/self/clear_refs). Run with
MALLOC_MMAP_THRESHOLD_=65536 so that freed tensors go back to the OS and resident memory follows
the live tensors, and with --num_workers 0 so that the data loading is counted in this process.
"""
import argparse
import json
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import train_picie
from config import get_args_parser, parse_args, settings_from_args
from utils.cli import run_cli
from utils.files import write_text
from utils.run import RunProgress
from utils.runtime import script_main


def peak_rss_mb(progress: "PhaseMemory") -> dict:
    """Peak resident memory of this process and of its largest child (DataLoader worker), MB."""
    # getrusage's peak restarts with the per-phase resets: the run's own record keeps the maximum.
    return {"self": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, progress.run_peak_mb()),
            "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _status_mb(key: str) -> float | None:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), MB; None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM) of this process; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class PhaseMemory(RunProgress):
    """RunProgress that also records, for every phase of every epoch, the peak resident memory of
    the process during the phase, its rise over the resident memory at the phase's start and the
    process's CPU time in the phase (all threads; on a shared machine less disturbed by other
    processes than the wall time): peaks[epoch][phase] = {"peak_mb", "rise_mb", "cpu_s"} (epoch
    1-based, as metrics.jsonl)."""

    peaks: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    _start_rss: float = 0.0
    _start_cpu: float = 0.0
    _run_peak: float = 0.0

    def _restart(self) -> None:
        self.run_peak_mb()  # the reset below also restarts what getrusage reports as the peak
        _reset_peak_rss()
        self._start_rss = _status_mb("VmRSS") or 0.0
        self._start_cpu = time.process_time()

    def run_peak_mb(self) -> float:
        """Peak resident memory of the whole run so far (across the per-phase resets), MB."""
        self._run_peak = max(self._run_peak, _status_mb("VmHWM") or 0.0)
        return self._run_peak

    def start_epoch(self, epoch: int, num_epoch: int) -> None:
        super().start_epoch(epoch, num_epoch)
        self._restart()

    def lap(self, name: str) -> None:
        super().lap(name)
        cpu_s = time.process_time() - self._start_cpu
        peak = _status_mb("VmHWM")
        if peak is not None:
            self.peaks.setdefault(self.epoch, {})[name] = {"peak_mb": round(peak, 1),
                                                           "rise_mb": round(max(0.0, peak - self._start_rss), 1),
                                                           "cpu_s": round(cpu_s, 3)}
        self._restart()


def kmeans_working_set_mb(batch: int, init_batches: int, grid: int, dim: int, pixels_per_image: int,
                          all_pixels: bool) -> dict:
    """k-means-owned feature memory, from the algorithm's sizes (float32): the initial sample of
    each view (init batches x images x pixels kept) and one online-update batch of one view.
    Each view's k-means holds at most its initial sample plus the ordered copy its initial k-means
    runs on, or one update batch; both views' k-means run side by side in one pass, so their
    peaks add up (what `kmeans_peak_mb` in metrics.jsonl measures on the run's own sizes)."""
    kept = grid * grid if all_pixels else min(pixels_per_image, grid * grid)
    init = init_batches * batch * kept * dim * 4
    online = batch * grid * grid * dim * 4
    return {"init_sample_mb": init / 2 ** 20, "online_batch_mb": online / 2 ** 20,
            "both_views_peak_mb": 2 * max(2 * init, online) / 2 ** 20}


def main(argv=None, progress: PhaseMemory | None = None) -> dict:
    """Run, print and return the benchmark; `progress` (default a PhaseMemory) receives the run's
    phases (benchmarks/bench_efficiency.py passes one that also files the network's calls)."""
    parser = argparse.ArgumentParser("bench_epoch", parents=[get_args_parser(add_help=False)])
    parser.add_argument("--bench_json", type=str, default=None, help="write the results as JSON here")
    parser.add_argument("--project_images", type=int, default=49629,
                        help="project an epoch of this many training images from the measured rates")
    parser.add_argument("--project_val_images", type=int, default=2175, help="val images of the projection")
    parsed = parse_args(parser, argv)
    # The run goes to a temporary folder unless --save_root is given; the untrained network is scored too.
    save_root = parsed.save_root if parsed.save_root != "results" else tempfile.mkdtemp(prefix="picie_bench_")
    args = argparse.Namespace(**dict(vars(parsed), save_root=save_root, eval_init=True, overwrite=True))
    settings = settings_from_args(args)

    started = time.perf_counter()
    progress = progress if progress is not None else PhaseMemory()
    final = train_picie.main(settings, progress)
    total_s = time.perf_counter() - started
    run = Path(settings.save_root) / settings.run_name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    n_train, n_val = final["n_train_images"], final["n_val_images"]

    epochs = []
    for record in records:
        if record["stage"] != "train":
            continue
        phases = record["phase_s"]
        row = {"epoch": record["epoch"], "epoch_s": sum(phases.values()), **{f"{k}_s": v for k, v in phases.items()},
               "kmeans_img_per_s": n_train / phases["kmeans"], "train_img_per_s": n_train / phases["train"],
               "label_img_per_s": (n_train / phases["label"]) if not record["reused_features"] else None,
               "labels_from_cached_features": record["reused_features"],
               "kmeans_peak_mb": record.get("kmeans_peak_mb"),
               "phase_memory_mb": progress.peaks.get(record["epoch"], {}),
               "view1_acc": record.get("view1", {}).get("acc"), "view1_mIoU": record.get("view1", {}).get("mIoU")}
        epochs.append(row)
    init = next((r for r in records if r["stage"] == "init"), None)
    init_bn = next((r for r in records if r["stage"] == "init_bn"), None)
    result = {
        "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() and args.device != "cpu" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "settings": {k: getattr(args, k) for k in ("arch", "freeze_backbone", "vit_head", "in_dim", "res", "res1",
                                                    "res2", "batch_size_cluster", "batch_size_train",
                                                    "batch_size_test", "num_init_batches", "kmeans_n_iter", "K_train",
                                                    "precision", "kmeans_backend", "feature_cache_gb", "num_workers",
                                                    "seed", "num_epoch", "repeats", "train_list_repeats")},
        "n_train_images": n_train,
        "epochs": epochs,
        "untrained": {"acc": init["fresh"]["acc"], "mIoU": init["fresh"]["mIoU"],
                      "s": init["phase_s"]["final_eval"]} if init else None,
        "untrained_bn_calibrated": ({"acc": init_bn["fresh"]["acc"], "mIoU": init_bn["fresh"]["mIoU"]} if init_bn
                                    else None),
        "final": {k: final.get(k) for k in ("acc", "acc_std", "mIoU", "mIoU_std", "repeats", "seeds", "final_eval_s")},
        "final_runs": [{"acc": r["acc"], "mIoU": r["mIoU"]} for r in final.get("runs", [])],
        "whole_run_s": total_s,
        "peak_rss_mb": peak_rss_mb(progress),
        "cuda_peak_allocated_mb": (torch.cuda.max_memory_allocated() / 2 ** 20) if torch.cuda.is_available() else None,
        "kmeans_working_set_paper_settings": kmeans_working_set_mb(256, 20, 80, 128, args.kmeans_pixels_per_image,
                                                                   args.kmeans_init_all_pixels),
    }
    if epochs:
        last = epochs[-1]
        eval_rate = n_val / last["eval_s"] if last.get("eval_s") else None
        label_rate = last["label_img_per_s"] or last["kmeans_img_per_s"]  # recompute costs one more pass
        projected = (args.project_images * (1 / last["kmeans_img_per_s"] + 1 / label_rate + 1 / last["train_img_per_s"])
                     + (args.project_val_images / eval_rate if eval_rate else 0))
        result["projection"] = {"images": args.project_images, "val_images": args.project_val_images,
                                "eval_img_per_s": eval_rate, "epoch_s": projected, "epoch_min": projected / 60}
    print_table(result)
    if args.bench_json:
        write_text(Path(args.bench_json), json.dumps(result, indent=2))
    return result


def print_table(result: dict) -> None:
    print(f"\nPiCIE epoch benchmark on {result['device']} (torch {result['torch']}, {result['threads']} threads), "
          f"{result['n_train_images']} training images")
    print(f"{'epoch':>5} {'total s':>8} {'k-means s':>9} {'label s':>8} {'train s':>8} {'eval s':>7} "
          f"{'kmeans img/s':>12} {'train img/s':>11} {'mIoU v1':>8}")
    for row in result["epochs"]:
        print(f"{row['epoch']:>5} {row['epoch_s']:>8.1f} {row['kmeans_s']:>9.1f} {row['label_s']:>8.2f} "
              f"{row['train_s']:>8.1f} {row.get('eval_s', 0):>7.1f} {row['kmeans_img_per_s']:>12.1f} "
              f"{row['train_img_per_s']:>11.1f} {row['view1_mIoU'] or 0:>8.2f}")
        if row.get("phase_memory_mb"):
            print("      peak RSS MB (rise in the phase), CPU s: " + ", ".join(
                f"{phase} {m['peak_mb']:.0f} (+{m['rise_mb']:.0f}), {m['cpu_s']:.1f}"
                for phase, m in row["phase_memory_mb"].items()))
    if result["untrained"]:
        print(f"untrained network as initialised: acc {result['untrained']['acc']:.2f} "
              f"mIoU {result['untrained']['mIoU']:.2f} ({result['untrained']['s']:.1f} s)")
    if result.get("untrained_bn_calibrated"):
        print(f"untrained network, BatchNorm statistics re-estimated: acc "
              f"{result['untrained_bn_calibrated']['acc']:.2f} mIoU {result['untrained_bn_calibrated']['mIoU']:.2f}")
    final = result["final"]
    if final.get("acc") is not None:
        runs = ", ".join(f"{r['acc']:.1f}/{r['mIoU']:.2f}" for r in result["final_runs"])
        print(f"final fresh k-means (seeds {final['seeds']}): acc {final['acc']:.2f} +- {final['acc_std']:.2f}, "
              f"mIoU {final['mIoU']:.2f} +- {final['mIoU_std']:.2f}  [acc/mIoU per seed: {runs}]")
    print(f"whole run {result['whole_run_s']:.1f} s; peak RSS {result['peak_rss_mb']['self']:.0f} MB "
          f"(largest worker {result['peak_rss_mb']['largest_child']:.0f} MB)"
          + (f"; CUDA peak {result['cuda_peak_allocated_mb']:.0f} MB" if result["cuda_peak_allocated_mb"] else ""))
    ws = result["kmeans_working_set_paper_settings"]
    print(f"k-means working set at paper settings: init sample {ws['init_sample_mb']:.0f} MB/view, online batch "
          f"{ws['online_batch_mb']:.0f} MB/view, both views peak {ws['both_views_peak_mb']:.0f} MB")
    if "projection" in result:
        p = result["projection"]
        print(f"projected epoch of {p['images']} images (+{p['val_images']} val), labels recomputed: "
              f"{p['epoch_s']:.0f} s = {p['epoch_min']:.1f} min")


if __name__ == "__main__":
    script_main(lambda: run_cli(main))  # set up as train_picie.py is; bad input: one error line
