"""Does torch.compile pay back? One training step of the network (both views forward, backward,
SGD step) and one forward-only batch, eager against torch.compile, with the compile time counted.

    python -m benchmarks.bench_compile                      # the CPU benchmark settings' shapes
    python -m benchmarks.bench_compile --device cuda --batch 32 --precision bf16

Prints per step the eager and compiled seconds (median of --steps after the first call), the
compile time (the first compiled call less an eager step) and the number of steps after which
compiling is ahead: the epoch length it needs to pay back. The loss is a stand-in (squared
features): the network's cost is what is timed.
"""
import argparse
import statistics
import time
from functools import partial

import torch

from modules.networks import build_model
from utils.cli import run_cli
from utils.runtime import make_runtime, script_main


def timed(step, device: torch.device, steps: int):
    """(seconds of the first call, median seconds of the next `steps` calls)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(steps + 1):
        sync()
        started = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - started)
    return times[0], statistics.median(times[1:])


def train_step(model, net, optimizer, views, runtime) -> None:
    """One SGD step of `net` (model, eager or compiled) on both views."""
    model.train()
    with runtime.autocast():
        loss = sum(net(view).float().pow(2).mean() for view in views)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def forward_step(model, net, views, runtime) -> None:
    """One forward pass of `net` in inference mode."""
    model.eval()
    with torch.inference_mode(), runtime.autocast():
        net(views[0])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"], help="the ResNet-FPN")
    parser.add_argument("--res", type=int, default=320, choices=[128, 224, 320, 448, 640], help="view size, px")
    parser.add_argument("--batch", type=int, default=8, choices=[4, 8, 16, 32, 64], help="images per view")
    parser.add_argument("--steps", type=int, default=5, choices=range(2, 51), metavar="2..50",
                        help="timed steps after the first")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="autocast")
    parser.add_argument("--mode", default="default", choices=["default", "max-autotune-no-cudagraphs"],
                        help="torch.compile mode")
    args = parser.parse_args(argv)
    runtime = make_runtime(args.device, args.precision, deterministic=False)
    torch.manual_seed(0)
    views = [torch.randn(args.batch, 3, args.res, args.res, device=runtime.device).contiguous(
        memory_format=torch.channels_last) for _ in range(2)]
    results = {}
    for name in ("eager", "compiled"):
        model = build_model(args.arch).to(runtime.device).to(memory_format=torch.channels_last)
        net = torch.compile(model, mode=args.mode) if name == "compiled" else model
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        results[name] = {"train": timed(partial(train_step, model, net, optimizer, views, runtime), runtime.device,
                                        args.steps),
                         "forward": timed(partial(forward_step, model, net, views, runtime), runtime.device,
                                          args.steps)}
    print(f"{args.arch}, {args.batch} x {args.res} px per view, {runtime.device}, autocast {runtime.amp_dtype}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for kind in ("train", "forward"):
        eager_first, eager = results["eager"][kind]
        compiled_first, compiled = results["compiled"][kind]
        compile_s = compiled_first - eager
        saved = eager - compiled
        pays = f"pays back after {compile_s / saved:.0f} steps" if saved > 0 else "never pays back"
        print(f"{kind:8s} eager {eager:.3f} s/step, compiled {compiled:.3f} s/step ({eager / compiled:.2f}x), "
              f"compile {compile_s:.1f} s: {pays}")
    return results


if __name__ == "__main__":
    script_main(lambda: run_cli(main))  # bad input: one error line
