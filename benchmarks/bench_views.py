"""Time the two views' construction per transform set: what adding transforms costs in the input pipeline.

    python -m benchmarks.bench_views                        # paper sizes: 640 -> 320, batch 16
    python -m benchmarks.bench_views --res2 192 --res1 96 --batch 64

Prints, per transform set, the median wall ms per batch of ViewMaker.views (both views: P1, P2
and G on the image for view 1; the resize for view 2) over --repeats batches of random images,
and images/s. The network's forward and backward passes do not depend on the transforms, so
this is the whole per-step cost of choosing more of them.
"""
import argparse
import statistics
import time

import torch

from data.transforms import PHOTOMETRIC_OPS, AugmentConfig, ViewMaker

SETS = {
    "none": ((), ()),
    "jitter + random_crop (2aug default)": (("brightness", "contrast", "saturation", "hue"), ("random_crop",)),
    "grey + h_flip": (("grey",), ("h_flip",)),
    "blur + random_crop": (("blur",), ("random_crop",)),
    "all (paper)": (PHOTOMETRIC_OPS, ("random_crop", "h_flip")),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser("bench_views", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--res1", type=int, default=320, help="network input side (views)")
    parser.add_argument("--res2", type=int, default=640, help="base image side")
    parser.add_argument("--batch", type=int, default=16, help="images per batch")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per transform set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        _time_sets(args)
    finally:
        torch.set_num_threads(threads_before)  # main() may run inside another process (tests)


def _time_sets(args) -> None:
    base = torch.randint(0, 256, (args.batch, 3, args.res2, args.res2), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    print(f"views of {args.batch} images {args.res2} -> {args.res1}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} batches")
    print(f"{'transforms':40s} {'ms/batch':>9s} {'img/s':>8s}")
    for name, (inv, eqv) in SETS.items():
        maker = ViewMaker(AugmentConfig(inv_list=inv, eqv_list=eqv), args.res1, seed=1)
        times = []
        for step in range(args.repeats + 1):  # the first batch warms up
            indices = list(range(step * args.batch, (step + 1) * args.batch))
            start = time.perf_counter()
            params = maker.params(0, indices, torch.device("cpu"))
            maker.views(base, params)
            times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times[1:])
        print(f"{name:40s} {ms:9.1f} {1000 * args.batch / ms:8.1f}")


if __name__ == "__main__":
    main()
