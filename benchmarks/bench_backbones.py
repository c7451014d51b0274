"""Time and memory of one training step per backbone on the CPU: frozen DINO ViT-S/8 + head vs ResNet-18 FPN.

    python -m benchmarks.bench_backbones                       # 112 px, batch 8, 2 threads
    python -m benchmarks.bench_backbones --res 224 --batch 4 --models vit_s8_frozen resnet18_fpn

Each model runs in its own subprocess (so that one's memory does not hide the other's), randomly
initialised (speed and memory do not depend on the weights), on random ImageNet-sized inputs
[batch, 3, res, res]. Per model it prints the medians (and, in brackets, the minimum: the least disturbed by other
processes on a shared machine) over --repeats steps (after --warmup) of:
  fwd+bwd   forward + backward of loss = mean(features^2), the training step without the optimiser
  fwd, bwd  the two parts of it
  no_grad   forward in eval mode under torch.no_grad(), what k-means, labelling and evaluation run
  cpu       the process's CPU time (all threads) for the same work: less sensitive than wall time to
            other processes on a shared machine
and two memory figures for one training step:
  saved     bytes autograd keeps for backward (sum over distinct tensors saved, exact)
  peak      peak RSS during the step minus RSS just before it, sampled every ms; the child runs with
            glibc's mmap threshold fixed at 64 KiB so that freed tensors go back to the OS and RSS
            follows the live tensors (an estimate: it includes allocator and thread-pool effects)
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

import torch

from utils.files import write_text

MODELS = {
    "vit_s8_frozen": "DINO ViT-S/8, frozen, + linear head (1x1 conv 384 -> out_dim)",
    "vit_s8_frozen_nonlinear": "DINO ViT-S/8, frozen, + linear and nonlinear (STEGO) head",
    "vit_s8_finetune": "DINO ViT-S/8, trained end to end, + linear head",
    "resnet18_fpn": "ResNet-18 FPN (PiCIE's network), trained end to end",
}


def build(name: str, out_dim: int) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init warning: expected here
        if name == "resnet18_fpn":
            from modules.networks import build_model
            return build_model("resnet18", feat_dim=out_dim)
        from modules.vit import build_vit
        head = "nonlinear" if name.endswith("nonlinear") else "linear"
        return build_vit("dino_vits8", out_dim=out_dim, head=head, freeze_backbone="frozen" in name)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS every millisecond in a thread (torch releases the GIL while it computes)."""

    def __enter__(self):
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def saved_for_backward_bytes(model, images) -> int:
    """Bytes of the distinct tensors autograd saves in one forward pass."""
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(images)
    del out
    return sum(seen.values())


def measure_one(name: str, res: int, batch: int, repeats: int, warmup: int, out_dim: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, out_dim).train()
    images = torch.randn(batch, 3, res, res)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def step():
        for p in trainable:
            p.grad = None
        c0, t0 = time.process_time(), time.perf_counter()
        out = model(images)
        loss = out.float().square().mean()
        t1 = time.perf_counter()
        loss.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        return t1 - t0, t2 - t1, c2 - c0, tuple(out.shape)

    for _ in range(warmup):
        step()
    fwd, bwd, cpu = [], [], []
    for _ in range(repeats):
        f, b, c, shape = step()
        fwd.append(f)
        bwd.append(b)
        cpu.append(c)
    for p in trainable:
        p.grad = None
    saved = saved_for_backward_bytes(model, images)
    with PeakRSS() as rss:
        step()
    model.eval()
    no_grad, no_grad_cpu = [], []
    with torch.no_grad():
        for i in range(warmup + repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            model(images)
            if i >= warmup:
                no_grad.append(time.perf_counter() - t0)
                no_grad_cpu.append(time.process_time() - c0)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    fastest = lambda xs: round(1000 * min(xs), 1)  # noqa: E731 - least disturbed by other processes
    fwd_bwd = [f + b for f, b in zip(fwd, bwd, strict=True)]
    return {
        "model": name, "description": MODELS[name], "res": res, "batch": batch, "threads": threads,
        "features": list(shape[1:]),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "trainable_params_m": round(sum(p.numel() for p in trainable) / 1e6, 3),
        "fwd_bwd_ms": ms(fwd_bwd), "fwd_ms": ms(fwd), "bwd_ms": ms(bwd),
        "no_grad_fwd_ms": ms(no_grad),
        "min_fwd_bwd_ms": fastest(fwd_bwd), "min_no_grad_fwd_ms": fastest(no_grad),
        "fwd_bwd_cpu_ms": ms(cpu), "no_grad_fwd_cpu_ms": ms(no_grad_cpu),
        "saved_for_backward_mb": round(saved / 2**20, 1),
        "peak_rss_step_mb": round((rss.peak - rss.start) / 2**20, 1),
        "max_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None) -> list:
    parser = argparse.ArgumentParser("bench_backbones", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--res", type=int, default=112, help="input side (a multiple of 8 and 4)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (medians reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out_dim", type=int, default=128, help="feature size (head output / FPN width)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["vit_s8_frozen", "vit_s8_frozen_nonlinear",
                                                        "vit_s8_finetune", "resnet18_fpn"], choices=list(MODELS))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_one", help=argparse.SUPPRESS)  # child mode: measure one model, print JSON
    args = parser.parse_args(argv)
    if args.res % 8:
        parser.error(f"--res {args.res} must be a multiple of 8 (ViT-S/8 patches, FPN stride 4)")
    if args._one:
        print(json.dumps(measure_one(args._one, args.res, args.batch, args.repeats, args.warmup, args.out_dim,
                                     args.threads)))
        return []
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    load_before = os.getloadavg()[0]
    results = []
    for name in args.models:
        cmd = [sys.executable, "-m", "benchmarks.bench_backbones", "--_one", name, "--res", str(args.res), "--batch",
               str(args.batch), "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--out_dim",
               str(args.out_dim), "--threads", str(args.threads)]
        done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            raise SystemExit(f"bench_backbones: measuring {name} failed: {lines[-1]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for r in results:
        r["load_average_1min"] = [round(x, 2) for x in (load_before, os.getloadavg()[0])]
    load = (load_before, os.getloadavg()[0])
    print(f"{args.batch} x 3 x {args.res} x {args.res}, {args.threads} threads, median (min) of {args.repeats} steps; "
          f"times in ms per batch, memory in MiB; 1-min load average {load[0]:.1f} before, {load[1]:.1f} after")
    header = (f"{'model':24s} {'features':>10s} {'params M':>8s} {'trainable':>9s} {'fwd+bwd':>15s} {'fwd':>6s} "
              f"{'bwd':>6s} {'cpu':>6s} {'no_grad':>13s} {'cpu':>6s} {'saved':>6s} {'peak':>6s}")
    print(header)
    print("-" * len(header))
    for r in results:
        feats = "x".join(map(str, r["features"]))
        both = f"{r['fwd_bwd_ms']:.0f} ({r['min_fwd_bwd_ms']:.0f})"
        no_grad = f"{r['no_grad_fwd_ms']:.0f} ({r['min_no_grad_fwd_ms']:.0f})"
        print(f"{r['model']:24s} {feats:>10s} {r['params_m']:8.2f} {r['trainable_params_m']:9.3f} {both:>15s} "
              f"{r['fwd_ms']:6.0f} {r['bwd_ms']:6.0f} {r['fwd_bwd_cpu_ms']:6.0f} {no_grad:>13s} "
              f"{r['no_grad_fwd_cpu_ms']:6.0f} {r['saved_for_backward_mb']:6.1f} {r['peak_rss_step_mb']:6.1f}")
    if args.json:
        write_text(Path(args.json), json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
