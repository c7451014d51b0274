"""How close each phase of a PiCIE run comes to what the machine can do: the FLOPs of its network
passes, the FLOP/s achieved and that as a fraction of the machine's matrix-multiply rate measured
in the same process. The fraction holds across machines; seconds do not.

    python -m benchmarks.bench_efficiency --data_root ../shared/data/cocostuff_mini --fullcoco \
        --res 320 --res1 320 --res2 640 --batch_size_cluster 16 --batch_size_train 8 \
        --batch_size_test 16 --num_init_batches 4 --num_batches 1 --kmeans_n_iter 20 \
        --K_train 27 --K_test 27 --augment --jitter --blur --grey --equiv --random_crop --h_flip \
        --num_workers 2 --seed 1 --num_epoch 2 --repeats 3

Every flag of train_picie.py is accepted (benchmarks/bench_epoch.py runs it). What is measured:

1. The machine's rate: a square float32 matrix multiply (--gemm_size), a 1x1 and a 3x3
   convolution (conv_flops_per_s, RATE_CONVS) on the threads the run uses, the best of several
   timings each, as FLOP/s; the same in bfloat16 where the run's autocast is bf16 (a CPU with
   bf16 units, or CUDA). A phase's share is of the largest ("fraction_of_peak"; "fraction_of_gemm"
   too).
2. The run, with every call of the network recorded (a forward pre-hook): the input's shape,
   whether gradients were on, the autocast dtype, and the phase it ran in (k-means, label, train,
   eval of each epoch, as metrics.jsonl's phase_s; the untrained evaluations and BatchNorm
   calibration before the first epoch; the final evaluation after the last).
3. FLOPs: torch.utils.flop_counter counts one call of each recorded shape (forward only, or
   forward and backward where gradients were on) once; a phase's FLOPs are the sum over its calls.
   Only the network is counted: k-means distances, losses, data loading and augmentation are
   work that the FLOP/s figure charges to the phase's time without counting.
4. The floor: the run's counted FLOPs at the machine's rate ("arithmetic_floor_s"): the phases
   cannot take less time without computing less, in a faster dtype, or with kernels faster than
   the best measured in step 1.
"""
import argparse
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

import train_picie
from benchmarks.bench_epoch import PhaseMemory
from benchmarks.bench_epoch import main as bench_epoch_main
from utils.cli import run_cli
from utils.runtime import best_seconds, script_main

Call = tuple[tuple[int, ...], bool, str | None]  # (input shape, gradients on, autocast dtype or None)


def gemm_flops_per_s(dtype: torch.dtype, size: int, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of a [size, size] @ [size, size] multiply in `dtype`: the best of `repeats` timings
    (each long enough to be timed), 2 * size^3 FLOPs a multiply."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):  # warm-up: thread pools, oneDNN kernels
        a @ b
    sync()
    start = time.perf_counter()
    a @ b
    sync()
    inner = max(1, int(0.2 / max(time.perf_counter() - start, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * size ** 3 / best


# The convolutions the machine rate is measured on, by kernel size: (input [B, C, H, W], output channels).
# A 1x1 convolution is oneDNN's / cuDNN's matrix multiply; the 3x3 one is ResNet-18's first stage at the
# benchmark's 320 px, the shape most of the network's FLOPs have. On AMD Zen 2 (AVX2) the 3x3 runs
# faster than either the 1x1 or MKL's matrix multiply, so a rate without it overstates every share.
RATE_CONVS = {1: ((16, 256, 64, 64), 256), 3: ((8, 64, 80, 80), 64)}


def conv_flops_per_s(dtype: torch.dtype, device: torch.device, repeats: int = 5, kernel: int = 1) -> float:
    """FLOP/s of the RATE_CONVS convolution with this `kernel` size (channels-last, as the network's
    layers run), in `dtype` (bf16 under autocast, so the conversion of the input is counted as the
    network's is). torch's CPU matrix multiply goes through MKL, which on some CPUs (AMD EPYC here)
    runs well below oneDNN: the machine's rate is the largest of the matrix multiply and these."""
    shape, out_channels = RATE_CONVS[kernel]
    batch, channels, height, width = shape
    conv = torch.nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2, bias=False)
    conv = conv.to(device).to(memory_format=torch.channels_last)
    images = torch.randn(*shape, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        seconds = best_seconds(lambda: conv(images), device, repeats)
    return 2 * batch * height * width * channels * out_channels * kernel * kernel / seconds


def autocast_dtype(device_type: str) -> str | None:
    if not torch.is_autocast_enabled(device_type):
        return None
    return str(torch.get_autocast_dtype(device_type)).replace("torch.", "")


@dataclass
class NetworkCalls(PhaseMemory):
    """PhaseMemory that also files every network call under its phase: calls[(epoch, phase)] =
    [Call, ...]; epoch 0 holds what ran before the first epoch (phase "untrained evaluations"),
    epoch num_epoch + 1 what ran after the last (phase "final evaluation"). seconds[(epoch, phase)]
    is the phase's wall time."""

    calls: dict[tuple[int, str], list[Call]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[tuple[int, str], float] = field(default_factory=dict)
    _pending: list[Call] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    def record(self, module, inputs) -> None:
        x = inputs[0]
        self._pending.append((tuple(x.shape), torch.is_grad_enabled(), autocast_dtype(x.device.type)))

    def _file(self, key: tuple[int, str], seconds: float) -> None:
        self.calls[key].extend(self._pending)
        self._pending = []
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def start_epoch(self, epoch: int, num_epoch: int) -> None:
        if not self.seconds:  # the run's first epoch: what ran before it
            self._file((0, "untrained evaluations"), time.perf_counter() - self._started)
        super().start_epoch(epoch, num_epoch)

    def lap(self, name: str) -> None:
        started = self._tick
        super().lap(name)
        self._file((self.epoch, name), self._tick - started)

    def finish(self) -> None:
        """After the run: what ran since the last lap (the last checkpoint, the final evaluation)."""
        self._file((self.num_epoch + 1, "final evaluation"), time.perf_counter() - self._tick)


def call_flops(model: torch.nn.Module, call: Call, device: torch.device) -> float:
    """FLOPs of one network call of this shape: the forward, plus the backward where gradients were
    on (counted on one image and scaled: every op here is linear in the batch)."""
    shape, grad, _ = call
    x = torch.zeros((1, *shape[1:]), device=device)
    was_training = model.training
    model.train(grad)
    with FlopCounterMode(display=False) as counter:
        with torch.set_grad_enabled(grad):
            out = model(x)
            if grad:
                out.float().sum().backward()
    model.train(was_training)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * shape[0]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser("bench_efficiency", add_help=False)
    parser.add_argument("--gemm_size", type=int, default=1024, choices=[512, 1024, 2048],
                        help="side of the square matrices of the machine-rate measurement")
    own, rest = parser.parse_known_args(argv)

    progress = NetworkCalls()
    built = {}
    real_build = train_picie.build_model

    def recording_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(progress.record)
        built["model"] = model
        return model

    train_picie.build_model = recording_build
    try:
        result = bench_epoch_main(rest, progress=progress)
    finally:
        train_picie.build_model = real_build
    progress.finish()
    model = built["model"]
    device = next(model.parameters()).device

    dtypes = {"float32": torch.float32}
    if any(dtype == "bfloat16" for calls in progress.calls.values() for _, _, dtype in calls):
        dtypes["bfloat16"] = torch.bfloat16
    rates = {name: gemm_flops_per_s(dtype, own.gemm_size, device) for name, dtype in dtypes.items()}
    conv_rates = {name: conv_flops_per_s(dtype, device) for name, dtype in dtypes.items()}
    conv3_rates = {name: conv_flops_per_s(dtype, device, kernel=3) for name, dtype in dtypes.items()}
    peaks = {name: max(rates[name], conv_rates[name], conv3_rates[name]) for name in dtypes}

    cache: dict[Call, float] = {}
    rows = []
    for (epoch, phase), calls in progress.calls.items():  # in the order the run went through them
        flops = 0.0
        for shape, grad, dtype in calls:
            one_image = ((1, *shape[1:]), grad, dtype)  # counted once per shape, scaled by the batch
            if one_image not in cache:
                cache[one_image] = call_flops(model, one_image, device)
            flops += cache[one_image] * shape[0]
        seconds = progress.seconds.get((epoch, phase), 0.0)
        dtypes = {dtype or "float32" for _, _, dtype in calls} or {"float32"}
        achieved = flops / seconds if seconds else 0.0
        rows.append({"epoch": epoch, "phase": phase, "s": seconds, "images": sum(c[0][0] for c in calls),
                     "gflop": flops / 1e9, "gflop_per_s": achieved / 1e9, "dtype": "/".join(sorted(dtypes)),
                     "fraction_of_gemm": {name: achieved / rate for name, rate in rates.items()},
                     "fraction_of_peak": {name: achieved / rate for name, rate in peaks.items()}})
    result["efficiency"] = {"gemm_gflop_per_s": {k: v / 1e9 for k, v in rates.items()}, "gemm_size": own.gemm_size,
                            "conv_gflop_per_s": {k: v / 1e9 for k, v in conv_rates.items()},
                            "conv3x3_gflop_per_s": {k: v / 1e9 for k, v in conv3_rates.items()},
                            "threads": torch.get_num_threads(), "phases": rows}
    # What the counted arithmetic alone would take at the machine's rate: the floor of the phases'
    # time (at the fastest dtype the run used, as if every FLOP ran at the best measured kernel's rate).
    total = sum(row["gflop"] for row in rows)
    fastest = max(peaks[name] for name in dtypes) / 1e9
    result["efficiency"].update(total_gflop=total, phases_s=sum(row["s"] for row in rows),
                                arithmetic_floor_s=total / fastest)
    print_efficiency(result["efficiency"])
    return result


def print_efficiency(eff: dict) -> None:
    gemm = ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in eff["gemm_gflop_per_s"].items())
    conv = ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in eff["conv_gflop_per_s"].items())
    conv3 = ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in eff["conv3x3_gflop_per_s"].items())
    print(f"\nmachine rate ({eff['threads']} threads): {eff['gemm_size']}^2 matrix multiply {gemm}; "
          f"1x1 convolution {conv}; 3x3 convolution {conv3}; a phase's share is of the largest")
    names = list(eff["gemm_gflop_per_s"])
    print(f"{'epoch':>5} {'phase':<22} {'s':>6} {'images':>6} {'GFLOP':>7} {'GFLOP/s':>7} {'autocast':>16} "
          + " ".join(f"{'of ' + name:>11}" for name in names))
    for row in eff["phases"]:
        shares = " ".join(f"{100 * row['fraction_of_peak'][name]:>9.0f} %" for name in names)
        print(f"{row['epoch']:>5} {row['phase']:<22} {row['s']:>6.1f} {row['images']:>6} {row['gflop']:>7.0f} "
              f"{row['gflop_per_s']:>7.1f} {row['dtype']:>16} {shares}")
    print(f"network arithmetic of the run: {eff['total_gflop']:,.0f} GFLOP; at the machine's rate it alone takes "
          f"{eff['arithmetic_floor_s']:.1f} s, the phases took {eff['phases_s']:.1f} s "
          f"({100 * eff['arithmetic_floor_s'] / eff['phases_s']:.0f} % of it is that floor)")


if __name__ == "__main__":
    script_main(lambda: run_cli(main))  # set up as train_picie.py is; bad input: one error line
