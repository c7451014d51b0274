"""How fast torch's own convolution kernels run the network's layers, and how much of a training
step is convolution: the floor a float32 CPU sets under this toolkit's speed.

    python -m benchmarks.bench_conv_kernels                     # ResNet-18 FPN, 8 x 320 px, channels-last
    python -m benchmarks.bench_conv_kernels --memory_format contiguous

For each distinct convolution of the network (input shape, weight shape, stride), measured alone
(the best of --repeats timings after a warm-up): the forward, the gradient of its input (none for
the first layer: the image needs none) and the gradient of its weights, each in GFLOP/s. Then one
view's training step (forward, a stand-in loss, backward) and one forward pass in eval mode are
timed whole, and set against the sum of their convolutions' own times: what is left is the rest
of the network (BatchNorm, ReLU, the FPN's upsampling and adds; no optimiser step is timed).
On a CPU that has no faster dtype, a training step cannot take less than its convolutions' time
with these kernels, and no code outside the kernels changes it.
"""
import argparse
from collections import Counter

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from modules.networks import build_model
from utils.cli import run_cli
from utils.runtime import best_seconds, make_runtime, script_main

# (input shape, weight shape, stride, padding, has bias): one kind of convolution call
ConvKey = tuple[tuple[int, ...], tuple[int, ...], tuple[int, int], tuple[int, int], bool]


def conv_calls(model: nn.Module, images: torch.Tensor) -> list[ConvKey]:
    """The convolution calls of one forward pass of `images`, in order."""
    calls: list[ConvKey] = []

    def record(conv: nn.Conv2d, inputs) -> None:
        calls.append((tuple(inputs[0].shape), tuple(conv.weight.shape), tuple(conv.stride), tuple(conv.padding),
                      conv.bias is not None))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return calls


def conv_flops(key: ConvKey) -> float:
    """FLOPs of the forward of one call (each of the two gradients costs the same)."""
    (batch, _, height, width), (out_channels, in_channels, kh, kw), (sh, sw), (ph, pw), _ = key
    out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    return 2.0 * batch * out_channels * out_h * out_w * in_channels * kh * kw


def kernel_seconds(key: ConvKey, memory_format: torch.memory_format, device: torch.device,
                   repeats: int) -> dict[str, float]:
    """Best seconds of the forward, the input gradient and the weight (and bias) gradient of one call."""
    shape, weight_shape, stride, padding, has_bias = key
    x = torch.randn(shape, device=device).contiguous(memory_format=memory_format)
    weight = (torch.randn(weight_shape, device=device) * 0.05).contiguous(memory_format=memory_format)
    bias = torch.zeros(weight_shape[0], device=device) if has_bias else None
    out = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
    grad_out = torch.randn_like(out)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad_out, x, weight, [weight_shape[0]] if has_bias else None,
                                                           list(stride), list(padding), [1, 1], False, [0, 0], 1, mask)
    return {"forward": best_seconds(lambda: torch.nn.functional.conv2d(x, weight, bias, stride, padding), device,
                                    repeats),
            "grad_input": best_seconds(backward([True, False, False]), device, repeats),
            "grad_weight": best_seconds(backward([False, True, has_bias]), device, repeats)}


def counted_flops(model: nn.Module, images: torch.Tensor, train: bool) -> float:
    """torch.utils.flop_counter's count of one pass (forward, plus backward when `train`)."""
    model.train(train)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(train):
        out = model(images)
        if train:
            out.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50", "resnet18_tiny"],
                        help="the ResNet-FPN")
    parser.add_argument("--res", type=int, default=320, choices=[64, 128, 224, 320, 448, 640], help="view size, px")
    parser.add_argument("--batch", type=int, default=8, choices=[1, 2, 4, 8, 16, 32], help="images per view")
    parser.add_argument("--repeats", type=int, default=5, choices=range(1, 21), metavar="1..20",
                        help="timings per kernel and per pass; the best counts")
    parser.add_argument("--memory_format", default="channels_last", choices=["channels_last", "contiguous"],
                        help="layout of the activations and weights (the toolkit runs channels-last)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where it runs (float32)")
    args = parser.parse_args(argv)
    device = make_runtime(args.device, "fp32", deterministic=False).device  # no GPU: one error line
    memory_format = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    model = build_model(args.arch).to(device).to(memory_format=memory_format)
    images = torch.randn(args.batch, 3, args.res, args.res, device=device).contiguous(memory_format=memory_format)

    calls = conv_calls(model, images)
    first = calls[0]  # the stem: its input is the image, which needs no gradient
    rows = []
    train_s = forward_s = 0.0
    for key, count in Counter(calls).items():
        seconds = kernel_seconds(key, memory_format, device, args.repeats)
        flops = conv_flops(key)
        needs_input_grad = key != first
        train_s += count * (seconds["forward"] + seconds["grad_weight"] + needs_input_grad * seconds["grad_input"])
        forward_s += count * seconds["forward"]
        rows.append({"input": key[0], "weight": key[1], "stride": key[2][0], "count": count, "gflop": flops / 1e9,
                     **{f"{name}_gflop_per_s": flops / s / 1e9 for name, s in seconds.items()},
                     "input_gradient": needs_input_grad})

    def training_step():  # forward, a stand-in loss, backward; no optimiser step
        model(images).float().pow(2).mean().backward()

    model.train()
    step_s = best_seconds(training_step, device, args.repeats)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        eval_s = best_seconds(lambda: model(images), device, args.repeats)
    result = {"arch": args.arch, "res": args.res, "batch": args.batch, "memory_format": args.memory_format,
              "threads": torch.get_num_threads(), "convolutions": rows,
              "conv_gflop": {"forward": sum(r["gflop"] * r["count"] for r in rows),
                             "train": sum(r["gflop"] * r["count"] * (2 + r["input_gradient"]) for r in rows)},
              "counted_gflop": {"forward": counted_flops(model, images, False) / 1e9,
                                "train": counted_flops(model, images, True) / 1e9},
              "train_step": {"measured_s": step_s, "convolutions_s": train_s},
              "eval_forward": {"measured_s": eval_s, "convolutions_s": forward_s}}
    print_kernels(result)
    return result


def print_kernels(result: dict) -> None:
    print(f"{result['arch']}, {result['batch']} x {result['res']} px, {result['memory_format']}, float32, "
          f"{result['threads']} threads, torch {torch.__version__}; GFLOP/s of each kernel alone")
    print(f"{'input':>20} {'weight':>18} {'stride':>6} {'calls':>5} {'GFLOP':>6} {'forward':>8} "
          f"{'grad in':>8} {'grad w':>8}")
    for r in result["convolutions"]:
        grad_in = f"{r['grad_input_gflop_per_s']:8.0f}" if r["input_gradient"] else f"{'-':>8}"
        print(f"{str(list(r['input'])):>20} {str(list(r['weight'])):>18} {r['stride']:>6} {r['count']:>5} "
              f"{r['gflop']:6.2f} {r['forward_gflop_per_s']:8.0f} {grad_in} {r['grad_weight_gflop_per_s']:8.0f}")
    for name, label in (("train_step", "training step of one view (forward + backward)"),
                        ("eval_forward", "forward pass in eval mode")):
        part = result[name]
        gflop = result["conv_gflop"]["train" if name == "train_step" else "forward"]
        print(f"{label}: {gflop:.1f} GFLOP of convolution; the kernels alone {part['convolutions_s']:.3f} s "
              f"({gflop / part['convolutions_s']:.0f} GFLOP/s), the whole pass {part['measured_s']:.3f} s: "
              f"convolution {100 * part['convolutions_s'] / part['measured_s']:.0f} % of it")


if __name__ == "__main__":
    script_main(lambda: run_cli(main))  # bad input: one error line
